"""Writes that fail for want of storage (a full disk, a quota, an I/O error): the daemon lives through
them, degraded, retrying with a capped exponential back-off instead of exiting into a restart loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class ShuttingDown(Exception):
    """A stop was asked for while the daemon waited (for storage, or to start)."""


@dataclass
class Backoff:
    """Capped exponential back-off for retrying writes after a storage error (a full disk)."""

    first: float = 2.0
    cap: float = 300.0
    failures: int = 0
    next_try_at: float = 0.0

    def failed(self, now: float) -> float:
        """Note one more failure at `now`; returns the delay until the next try."""
        self.failures += 1
        delay = min(self.cap, self.first * 2 ** (self.failures - 1))
        self.next_try_at = now + delay
        return delay

    def waiting(self, now: float) -> bool:
        return self.failures > 0 and now < self.next_try_at

    def reset(self) -> None:
        self.failures, self.next_try_at = 0, 0.0


class StorageGuard:
    """Whether writing works, why not, and when to try again. Used by the indexer thread only."""

    def __init__(self, clock: Clock, stop: threading.Event, beat: Callable[[], None]) -> None:
        self.clock = clock
        self.stop = stop
        self.beat = beat  # the wait is not a stuck loop
        self.backoff = Backoff()
        self.problem: str | None = None

    @property
    def failing(self) -> bool:
        return self.backoff.failures > 0

    def waiting(self) -> bool:
        """Failing, and the back-off has not passed yet."""
        return self.backoff.waiting(self.clock())

    def failed(self, reason: str) -> None:
        """Nothing was committed by the failed write; what it carried is found again by the rescan that
        follows recovery (the folder is the truth)."""
        delay = self.backoff.failed(self.clock())
        self.problem = reason
        logger.error("%s; nothing is lost: indexing is paused and retried in %.0f s", reason, delay)

    def wait(self) -> None:
        """Until the back-off has passed; a stop meanwhile raises ShuttingDown."""
        while self.waiting():
            self.beat()
            if self.stop.wait(0.2):
                raise ShuttingDown()

    def recovered(self) -> None:
        logger.info("writing works again: indexing resumed and caught up")
        self.backoff.reset()
        self.problem = None
