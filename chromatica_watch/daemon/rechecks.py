"""Folders to compare with the catalog once their changes calm down.

A folder event is handled at once when the disk still agrees with it: a folder renamed is a move of its
rows. In a storm (a folder renamed back and forth faster than the events are handled, a sync tool
reorganising) the disk has moved on by the time an event is read: its files are not where the event says.
Nothing is then deleted on the event's word. The folder holding both ends of the move is noted here, and
compared with the catalog (stat only; moves paired by name, size and mtime, no decode) once no event has
touched that root for `quiet` seconds: the end state equals the disk, whatever order the events came in.

Values only (the caller passes the time): tested with plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chromatica_watch.core.config import Config
from chromatica_watch.core.paths import is_under

MIN_QUIET_S = 1.0


def recheck_quiet(cfg: Config) -> float:
    """How long a root must be quiet before its folders are compared: a file's settle time, at least 1 s."""
    return max(cfg.settle_seconds, MIN_QUIET_S)


@dataclass
class _Pending:
    folders: set[bytes] = field(default_factory=set)
    last_noted: float = 0.0


class Rechecks:
    def __init__(self, quiet: float) -> None:
        self.quiet = quiet
        self._roots: dict[str, _Pending] = {}

    def reconfigure(self, quiet: float) -> None:
        self.quiet = quiet

    def note(self, root: str, folder: bytes, now: float) -> None:
        """Compare `folder` of `root` once `root` has been quiet for a while (each note restarts the wait)."""
        pending = self._roots.setdefault(root, _Pending())
        pending.folders.add(folder)
        pending.last_noted = now

    def touched(self, root: str, now: float) -> None:
        """Another event in this root: its pending folders wait until it is quiet."""
        if root in self._roots:
            self._roots[root].last_noted = now

    def due(self, now: float) -> list[tuple[str, bytes]]:
        """The folders whose root has been quiet long enough, outermost only, removed from the pending."""
        out = []
        for root, pending in list(self._roots.items()):
            if now - pending.last_noted < self.quiet:
                continue
            del self._roots[root]
            folders = sorted(pending.folders, key=lambda f: (len(f), f))
            kept: list[bytes] = []
            for f in folders:
                if not any(is_under(f, k) or f == k for k in kept):
                    kept.append(f)
            out += [(root, f) for f in kept]
        return out

    def forget_root(self, root: str) -> None:
        self._roots.pop(root, None)

    def __contains__(self, root: object) -> bool:
        return root in self._roots

    def __len__(self) -> int:
        return len(self._roots)

    def next_deadline(self, now: float) -> float:
        """Seconds until the first pending root is due (inf: none)."""
        if not self._roots:
            return float("inf")
        return max(0.0, min(p.last_noted + self.quiet for p in self._roots.values()) - now)
