"""Ctrl-C. A terminal sends SIGINT to the whole process group: the process that drives the work, its
worker processes, a fork server. Only the driver is to act on it, and then at a point where stopping
loses nothing: a KeyboardInterrupt raised anywhere would kill a worker mid-import with a traceback,
interrupt a DuckDB query (DuckDB turns it into a RuntimeError), or abort the process inside a C++
extension's import."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from types import FrameType


def never() -> bool:
    """A `should_stop` that never asks to stop."""
    return False


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread meanwhile: processes and threads started in here inherit the mask, so
    they never see a Ctrl-C (worker processes are stopped by the driver, and a fork server exits with it).
    A SIGINT that arrives meanwhile is delivered to this thread on the way out."""
    resource_tracker.ensure_running()  # started, it unblocks SIGINT on its way out: so it starts first
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def stop_on_sigint(on_first: Callable[[], None] = lambda: None) -> Iterator[Callable[[], bool]]:
    """Meanwhile the first Ctrl-C only asks to stop: the callable yielded says whether it did (the work
    checks it where stopping loses nothing); a second one raises KeyboardInterrupt at once. Must be
    entered in the main thread (Python runs signal handlers there)."""
    requested = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if requested.is_set():
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt
        requested.set()
        on_first()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
