"""The reconciler's diff: files on disk against the catalog, as a pure function of values.

Like `git status`: (size, mtime_ns) decide; no file is opened. A file whose mtime is within the racy
window of the scan is listed for a hash re-check, since a second write in the same timestamp tick
would otherwise go unseen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .catalog import Failure, LiveFile
from .paths import DiskFile

RACY_WINDOW_NS = 2_000_000_000


@dataclass
class Diff:
    new: list[bytes] = field(default_factory=list)  # not in the catalog
    changed: list[tuple[bytes, int]] = field(default_factory=list)  # (path, old id): size or mtime differ
    racy: list[tuple[bytes, int]] = field(default_factory=list)  # same stat, too recent to trust
    vanished: list[tuple[bytes, int]] = field(default_factory=list)  # in the catalog, gone from disk
    unchanged: int = 0
    failed_unchanged: int = 0  # recorded failures not retried until the file changes

    @property
    def to_ingest(self) -> list[bytes]:
        """Paths whose bytes must be read, sorted so ids are given in a stable order."""
        return sorted([*self.new, *(p for p, _ in self.changed), *(p for p, _ in self.racy)])


def diff(disk: Mapping[bytes, DiskFile], catalog: Mapping[bytes, LiveFile],
         failures: Mapping[bytes, Failure], scan_time_ns: int,
         racy_window_ns: int = RACY_WINDOW_NS) -> Diff:
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
        else:
            out.unchanged += 1
    out.vanished = [(p, known.image_id) for p, known in catalog.items() if p not in disk]
    out.new.sort()
    out.changed.sort()
    out.racy.sort()
    out.vanished.sort()
    return out
