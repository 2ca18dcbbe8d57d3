"""The debounced delta batcher: per-path coalescing, settle detection, and batch flushing.

A file is ready once its (size, mtime) has not changed for `settle_seconds`, so files still being
copied are never read half-written; or at once when its writer closed it (inotify's IN_CLOSE_WRITE).
A batch flushes when `batch_size` files are ready or `max_batch_delay` after the first became ready.
Time comes from the caller (`now` arguments) and stat from an injected function, so tests drive it
without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chromatica_watch.core.paths import Key, absolute_key, stat_file

Stat = tuple[int, int]  # (size, mtime_ns)
StatFn = Callable[[Key], Stat | None]


def stat_key(key: Key) -> Stat | None:
    found = stat_file(absolute_key(key))
    return None if found is None else (found.size, found.mtime_ns)


@dataclass
class _Pending:
    stat: Stat | None
    stable_since: float


class Batcher:
    def __init__(self, settle_seconds: float, batch_size: int, max_batch_delay: float,
                 stat: StatFn = stat_key) -> None:
        self.settle_seconds = settle_seconds
        self.batch_size = batch_size
        self.max_batch_delay = max_batch_delay
        self._stat = stat
        self._pending: dict[Key, _Pending] = {}
        self._ready: dict[Key, Stat] = {}
        self._first_ready_at: float | None = None

    def reconfigure(self, settle_seconds: float, batch_size: int, max_batch_delay: float) -> None:
        """A config reload: files noted from now on settle and flush by the new numbers."""
        self.settle_seconds, self.batch_size, self.max_batch_delay = settle_seconds, batch_size, max_batch_delay

    def __len__(self) -> int:
        return len(self._pending) + len(self._ready)

    def note(self, key: Key, now: float) -> None:
        """Something happened to this path: (re)start its settle clock."""
        self._ready.pop(key, None)
        self._pending[key] = _Pending(self._stat(key), now)

    def ready_now(self, key: Key, now: float) -> None:
        """Its writer closed the file: ready without settling (gone already: nothing to do)."""
        current = self._stat(key)
        self._pending.pop(key, None)
        if current is None:
            self._ready.pop(key, None)
            return
        self._ready[key] = current
        if self._first_ready_at is None:
            self._first_ready_at = now

    def forget(self, key: Key) -> None:
        """The path is gone (deleted or moved away): nothing to index."""
        self._pending.pop(key, None)
        self._ready.pop(key, None)

    def forget_prefix(self, root: str, prefix: bytes) -> None:
        for table in (self._pending, self._ready):
            for key in [k for k in table if k[0] == root and (k[1] == prefix or k[1].startswith(prefix + b"/"))]:
                del table[key]

    def forget_root(self, root: str) -> None:
        for table in (self._pending, self._ready):
            for key in [k for k in table if k[0] == root]:
                del table[key]

    def poll(self, now: float) -> None:
        """Stat pending files; move those unchanged for settle_seconds to ready; drop vanished ones."""
        for key, p in list(self._pending.items()):
            current = self._stat(key)
            if current is None:
                del self._pending[key]
                continue
            if current != p.stat:
                p.stat, p.stable_since = current, now
                continue
            if now - p.stable_since >= self.settle_seconds:
                del self._pending[key]
                self._ready[key] = current
                if self._first_ready_at is None:
                    self._first_ready_at = now

    def take_batch(self, now: float, *, force: bool = False, limit: int | None = None) -> list[Key]:
        """Ready paths if a batch is due (full, or the oldest ready one waited max_batch_delay, or no
        other file could join it in time): up to `limit` of them (default batch_size)."""
        if not self._ready:
            return []
        due = (force or len(self._ready) >= self.batch_size
               or (self._first_ready_at is not None and now - self._first_ready_at >= self.max_batch_delay)
               or not self._can_grow(now))
        if not due:
            return []
        keys = sorted(self._ready)[: limit or self.batch_size]
        for k in keys:
            del self._ready[k]
        self._first_ready_at = now if self._ready else None
        return keys

    def _can_grow(self, now: float) -> bool:
        """Whether waiting for max_batch_delay could still add a file to the batch.

        A file joins only once it has been stable for settle_seconds, so if no pending file can settle
        before the batch's deadline and a file noted from now on would settle after it, waiting only
        adds latency: the batch is flushed at once (a lone photo does not wait max_batch_delay)."""
        if self._first_ready_at is None:
            return False
        deadline = self._first_ready_at + self.max_batch_delay
        if now + self.settle_seconds <= deadline:
            return True
        return any(p.stable_since + self.settle_seconds <= deadline for p in self._pending.values())

    def next_deadline(self, now: float) -> float:
        """Seconds until something could change: how long the loop may wait for new events.

        A pending file is checked again when it could have settled (its stable_since + settle_seconds),
        not on a fixed tick, so it is ready as soon as it has settled."""
        waits = [max(0.0, p.stable_since + self.settle_seconds - now) for p in self._pending.values()]
        if self._ready and self._first_ready_at is not None:
            waits.append(max(0.0, self._first_ready_at + self.max_batch_delay - now))
        return min(waits, default=1.0)
