"""Commands from other threads (the socket's and the web app's) that must run on the indexer thread, the
only one that writes the catalog: queued with a future for their result, run between loop turns."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from chromatica_watch.core.errors import CatalogDamaged, ChromaticaError

T = TypeVar("T")


class CommandQueue:
    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self._lock = threading.Lock()
        self._taking = True  # until refuse(): then a command fails at once, never waits forever

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """From any thread: run `fn` on the indexer thread; the future holds its result."""
        future: Future[T] = Future()
        with self._lock:
            if self._taking:
                self._queue.put((fn, future))
                return future
        future.set_exception(ChromaticaError("the daemon is stopping; run the command again once it is back"))
        return future

    def refuse(self) -> None:
        """From now on commands fail at once, and those still queued fail now: the threads waiting for them
        answer, and the socket server's stop, which waits for its threads, does not wait on them."""
        with self._lock:
            self._taking = False
        while True:
            try:
                _, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(ChromaticaError("the daemon stopped before it could do this; run the "
                                                     "command again once it is back"))

    def run_pending(self) -> None:
        """On the indexer thread: run what is queued; a command's error goes to its caller, not the loop."""
        while True:
            try:
                fn, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except Exception as exc:
                future.set_exception(exc)


class DamageReports:
    """A damaged catalog found by a read on another thread, handed to the indexer thread, the only one that
    may replace it. A later report replaces an earlier one not taken yet: either names the same catalog."""

    def __init__(self) -> None:
        self._found: CatalogDamaged | None = None

    def report(self, damage: CatalogDamaged) -> None:
        self._found = damage

    def take(self) -> CatalogDamaged | None:
        """On the indexer thread: the damage reported, once."""
        damage, self._found = self._found, None
        return damage
