"""The reconciler's diff: files on disk against the catalog, as a pure function of values.

Like `git status`: (size, mtime_ns) decide; no file is opened. A file whose mtime is within the racy
window of the scan is listed for a hash re-check, since a second write in the same timestamp tick
would otherwise go unseen. As git's index does, the inode change time (ctime, which no program can set
back) is compared too: a file replaced by another of the same size with its mtime set back (a restore, a
sync tool, `cp -p`) has a new ctime, and is listed for a hash re-check (its bytes decoded only when the
hash differs). A row whose ctime is not known (kept before the catalog stored it, or relocated) is
compared by size and mtime alone, and the scan's ctime is listed to be filled in: no re-hash at upgrade.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from chromatica_watch.core.paths import DiskFile
from chromatica_watch.core.records import Failure, LiveFile

RACY_WINDOW_NS = 2_000_000_000
MatchBy = Literal["path", "name"]


@dataclass
class Diff:
    new: list[bytes] = field(default_factory=list)  # not in the catalog
    changed: list[tuple[bytes, int]] = field(default_factory=list)  # (path, old id): size or mtime differ
    racy: list[tuple[bytes, int]] = field(default_factory=list)  # same stat, too recent to trust
    # (path, id): same size and mtime, another inode change time: hashed again, decoded only if it differs
    ctime_changed: list[tuple[bytes, int]] = field(default_factory=list)
    ctime_unknown: list[tuple[int, int]] = field(default_factory=list)  # (id, ctime_ns) of rows to fill in
    vanished: list[tuple[bytes, int]] = field(default_factory=list)  # in the catalog, gone from disk
    # (old path, new path, id): the file went elsewhere (same name, size and mtime): rewritten, not read
    moved: list[tuple[bytes, bytes, int]] = field(default_factory=list)
    ambiguous: list[bytes] = field(default_factory=list)  # names held by several candidates: never matched
    unchanged: int = 0
    failed_unchanged: int = 0  # recorded failures not retried until the file changes

    @property
    def to_ingest(self) -> list[bytes]:
        """Paths whose bytes must be read, sorted so ids are given in a stable order."""
        return sorted([*self.new, *(p for p, _ in self.changed), *(p for p, _ in self.rehash)])

    @property
    def rehash(self) -> list[tuple[bytes, int]]:
        """(path, id) of the files with the same size and mtime as their row whose bytes are hashed again."""
        return [*self.racy, *self.ctime_changed]


def diff(disk: Mapping[bytes, DiskFile], catalog: Mapping[bytes, LiveFile],
         failures: Mapping[bytes, Failure], scan_time_ns: int,
         racy_window_ns: int = RACY_WINDOW_NS, match_by: MatchBy = "path") -> Diff:
    """Compare by relative path; then pair what vanished with what is new by file name: always when
    name, size and mtime agree (a folder renamed or a file moved while nobody watched: the row follows
    it, nothing is read), and with `match_by="name"` also when only the name agrees (listed as changed:
    its bytes are read, and a file whose content is the same keeps its row without a decode)."""
    out = Diff()
    for path, f in disk.items():
        known = catalog.get(path)
        if known is None:
            failed = failures.get(path)
            if failed is not None and (failed.size, failed.mtime_ns) == (f.size, f.mtime_ns):
                out.failed_unchanged += 1
            else:
                out.new.append(path)
        elif (known.size, known.mtime_ns) != (f.size, f.mtime_ns):
            out.changed.append((path, known.image_id))
        elif scan_time_ns - f.mtime_ns < racy_window_ns:
            out.racy.append((path, known.image_id))
        elif known.ctime_ns is not None and f.ctime_ns is not None and known.ctime_ns != f.ctime_ns:
            out.ctime_changed.append((path, known.image_id))
        else:
            out.unchanged += 1
            if known.ctime_ns is None and f.ctime_ns is not None:
                out.ctime_unknown.append((known.image_id, f.ctime_ns))
    out.vanished = [(p, known.image_id) for p, known in catalog.items() if p not in disk]
    _pair_by_name(out, disk, catalog, lambda f: scan_time_ns - f.mtime_ns < racy_window_ns, match_by)
    out.new.sort()
    out.changed.sort()
    out.racy.sort()
    out.ctime_changed.sort()
    out.vanished.sort()
    return out


def _pair_by_name(out: Diff, disk: Mapping[bytes, DiskFile], catalog: Mapping[bytes, LiveFile],
                  racy: Callable[[DiskFile], bool], match_by: MatchBy) -> None:
    """Pair the new files with the vanished rows of the same name (see `diff`); a name held by more than
    one file or row on either side is never paired, and with match_by="name" it is listed as ambiguous."""
    def key(name: bytes, size: int, mtime_ns: int) -> Hashable:
        base = posixpath.basename(name)
        return base if match_by == "name" else (base, size, mtime_ns)

    new_by_key: dict[Hashable, list[bytes]] = {}
    for p in out.new:
        new_by_key.setdefault(key(p, disk[p].size, disk[p].mtime_ns), []).append(p)
    gone_by_key: dict[Hashable, list[tuple[bytes, int]]] = {}
    for p, image_id in out.vanished:
        row = catalog[p]
        gone_by_key.setdefault(key(p, row.size, row.mtime_ns), []).append((p, image_id))
    paired_new: set[bytes] = set()
    paired_gone: set[int] = set()
    for k, news in new_by_key.items():
        gone = gone_by_key.get(k, [])
        if not gone:
            continue
        if len(news) > 1 or len(gone) > 1:
            if match_by == "name":
                out.ambiguous.append(posixpath.basename(news[0]))
            continue
        (new_path,), ((old_path, image_id),) = news, gone
        f, row = disk[new_path], catalog[old_path]
        if (f.size, f.mtime_ns) == (row.size, row.mtime_ns) and not racy(f):
            out.moved.append((old_path, new_path, image_id))
        elif match_by == "name":
            out.changed.append((new_path, image_id))
        else:
            continue  # a recent file: read and hashed, so the content decides
        paired_new.add(new_path)
        paired_gone.add(image_id)
    out.new = [p for p in out.new if p not in paired_new]
    out.vanished = [(p, i) for p, i in out.vanished if i not in paired_gone]
    out.moved.sort()
    out.ambiguous.sort()
