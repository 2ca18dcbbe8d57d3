"""Whether the thumbnail cache can be written: what each write met, and what the daemon says of it.

A full disk (or a quota, a read-only mount) under the cache makes every write fail; thumbnails are then
made each time they are shown and none is kept. That is said once, in one warning line and a note in
`status` for as long as it lasts (the next write that succeeds clears it), not once per thumbnail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# A cache that comes and goes (a disk on the edge of full) is warned of again at most this often.
WARN_AGAIN_S = 3600.0


@dataclass(frozen=True)
class CacheWrite:
    """What became of one write to the cache: done (problem None), or why it could not be."""

    problem: str | None = None


def write_problem(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


class CacheHealth:
    """The cache's state as the writes found it (made from any thread, and from the indexing workers' reports).
    `on_change` hears the note to show (None: nothing to say) each time it changes."""

    def __init__(self, cache_root: Path, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str | None], None] | None = None) -> None:
        self.cache_root = cache_root
        self.clock = clock
        self.on_change = on_change
        self._lock = threading.Lock()
        self._problem: str | None = None
        self._warned_at: float | None = None

    @property
    def note(self) -> str | None:
        """What `status` says while the cache cannot be written; None while it can."""
        with self._lock:
            return self._note()

    def _note(self) -> str | None:
        if self._problem is None:
            return None
        return (f"the thumbnail cache {self.cache_root} cannot be written ({self._problem}): thumbnails are made "
                "each time they are shown, and not kept")

    def noted(self, writes: Iterable[CacheWrite | None]) -> None:
        """Writes made elsewhere (the indexing workers), in the order they were made; None: nothing written."""
        for write in writes:
            if write is not None:
                self.wrote(write)

    def wrote(self, write: CacheWrite) -> None:
        """One write's outcome. Under the lock throughout, so that the notes handed on follow the writes' order."""
        with self._lock:
            before, self._problem = self._problem, write.problem
            if (before is None) == (write.problem is None):
                return
            if write.problem is None:
                logger.info("the thumbnail cache %s can be written again", self.cache_root)
            elif self._warned_at is None or self.clock() - self._warned_at >= WARN_AGAIN_S:
                self._warned_at = self.clock()
                logger.warning("cannot write to the thumbnail cache %s (%s): thumbnails are made each time they are "
                               "shown, and not kept, until it can be written again (free some space there)",
                               self.cache_root, write.problem)
            if self.on_change is not None:
                self.on_change(self._note())
