"""Files that turn up where the catalog has no row: moved there, or new.

Events say where a file went, but not always in an order that can be trusted: in a rename storm a folder
has moved on (or back) before its event is read, and a file is first seen under a name the catalog never
had. Before such a file is read as new, the rows it may have come from are looked at: a row of the same
root, with the same file name, size and mtime, whose own file is gone, is that file moved. Its row follows
it (no read, no decode, the id and histogram kept), as the scan's diff pairs a renamed folder's files.

A pair is made only when it is the only one on both sides (two rows or two files of that name, size and
mtime are never paired), and never for a file modified within the racy window, whose stat cannot prove it
is the same file. Pure: the caller stats the files and looks the rows up.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Hashable, Mapping, Sequence

from chromatica_watch.core.paths import DiskFile
from chromatica_watch.core.records import LiveFile
from chromatica_watch.ingest.diff import RACY_WINDOW_NS


def _fingerprint(path: bytes, size: int, mtime_ns: int) -> Hashable:
    return posixpath.basename(path), size, mtime_ns


def pair_arrivals(arrivals: Mapping[bytes, DiskFile], candidates: Sequence[tuple[bytes, LiveFile]],
                  still_there: Collection[bytes], now_ns: int) -> dict[bytes, LiveFile]:
    """new path -> the row that moved there, for the files of `arrivals` (no row at their path) that a row
    of `candidates` (rows of the same root with a size and mtime among theirs) left: same name, size and
    mtime, the row's own file gone (not in `still_there`), each the only one of its kind on both sides."""
    files: dict[Hashable, list[bytes]] = {}
    for path, f in arrivals.items():
        if now_ns - f.mtime_ns >= RACY_WINDOW_NS:
            files.setdefault(_fingerprint(path, f.size, f.mtime_ns), []).append(path)
    rows: dict[Hashable, list[tuple[bytes, LiveFile]]] = {}
    for path, row in candidates:
        if path not in arrivals:
            rows.setdefault(_fingerprint(path, row.size, row.mtime_ns), []).append((path, row))
    pairs = {}
    for key, paths in files.items():
        found = rows.get(key, [])
        if len(paths) == 1 and len(found) == 1 and found[0][0] not in still_there:
            pairs[paths[0]] = found[0][1]
    return pairs
