"""A log line that can repeat many times a second (a client refused, a bad request) written at most once per
interval, saying how many like it were left out since the last one written."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class Throttle:
    """Lets one event through per `interval` seconds of `clock` and counts those it holds back. Safe to share
    between threads."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next = float("-inf")
        self._held = 0

    def allow(self) -> int | None:
        """None if this event is held back; else it goes, and this is how many were held back before it."""
        with self._lock:
            now = self._clock()
            if now < self._next:
                self._held += 1
                return None
            held, self._held = self._held, 0
            self._next = now + self.interval
            return held

    def log(self, log: logging.Logger, level: int, msg: str, *args: object) -> bool:
        """`log.log(level, msg, *args)` if the throttle lets it through, with the count of those left out since
        the last one; whether it was written."""
        held = self.allow()
        if held is None:
            return False
        if held:
            msg += " (%d more like it since the last such line, not logged)"
            args = (*args, held)
        log.log(level, msg, *args)
        return True
