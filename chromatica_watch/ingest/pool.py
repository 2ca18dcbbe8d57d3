"""Turning files into catalog rows: the work done in worker processes, and the pool that runs it.

Workers are never a plain `fork` of the process that drives them (FAISS/OpenMP and DuckDB threads do
not survive a fork): see worker_context. Each runs single-threaded, so N workers use N cores. Chunks of
files go to workers and come back in submission order, so ids are handed out in a stable order whatever
finishes first.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

import pebble

from chromatica_watch.core.errors import ImageError
from chromatica_watch.core.filetypes import extension
from chromatica_watch.core.hashing import hash_bytes
from chromatica_watch.core.interrupt import sigint_blocked
from chromatica_watch.core.paths import absolute_key, absolute_path, display_key, stat_file
from chromatica_watch.core.records import PhotoDetails

if TYPE_CHECKING:
    import numpy as np

    from chromatica_watch.imaging.thumbnail_cache import CacheWrite
    from chromatica_watch.imaging.thumbnails import Thumbnailer

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Task:
    root: str
    path: bytes  # relative key
    skip_hashes: frozenset[str] = frozenset()  # content already in the catalog: hash only, no decode


@dataclass(frozen=True)
class Indexed:
    task: Task
    size: int
    mtime_ns: int
    content_hash: str
    width: int
    height: int
    histogram: np.ndarray
    details: PhotoDetails | None = None  # from its headers, read with the same bytes
    ctime_ns: int | None = None  # the inode change time of the bytes read
    thumbnail: CacheWrite | None = None  # the grid thumbnail cached while indexing: done, or why not


@dataclass(frozen=True)
class Known:
    """The bytes hash to content the catalog already has (a move, a copy, or an untouched racy file)."""

    task: Task
    size: int
    mtime_ns: int
    content_hash: str
    ctime_ns: int | None = None


@dataclass(frozen=True)
class Failed:
    task: Task
    size: int
    mtime_ns: int
    reason: str


@dataclass(frozen=True)
class Unstable:
    """The file changed or vanished while it was read: try again once it settles."""

    task: Task
    reason: str


Result = Indexed | Known | Failed | Unstable


def process(task: Task, max_dimension: int, max_pixels: int, thumbnails: Thumbnailer | None = None) -> Result:
    from chromatica_watch.imaging import decoders, details, features, reading

    path = absolute_path((task.root, task.path))
    try:
        read = reading.read_file(path, follow_symlinks=False)  # links are not followed (see scan.walk)
    except ImageError as exc:
        st = stat_file(path)
        if st is None and not os.path.islink(path):
            return Unstable(task, "vanished before it could be read")
        return Failed(task, st.size if st else 0, st.mtime_ns if st else 0, exc.reason)
    digest = hash_bytes(read.data)
    if digest in task.skip_hashes:
        return Known(task, read.size, read.mtime_ns, digest, read.ctime_ns)
    try:
        decoded = decoders.decode(read.data, max_dimension, max_pixels, suffix=extension(task.path))
        feats = features.features_of(decoded, digest)
    except ImageError as exc:
        after = stat_file(path)
        if after is None or (after.size, after.mtime_ns) != (read.size, read.mtime_ns):
            return Unstable(task, f"changed while being read ({exc.reason})")
        return Failed(task, read.size, read.mtime_ns, exc.reason)
    except MemoryError:
        return Failed(task, read.size, read.mtime_ns, "out of memory while decoding")
    thumbnail = None
    if thumbnails is not None:
        thumbnail = thumbnails.store_decoded(path, read.data, read.mtime_ns, read.size, decoded)
    about = details.photo_details(read.data, extension(task.path), read.mtime_ns, feats.width, feats.height)
    return Indexed(task, read.size, read.mtime_ns, feats.content_hash, feats.width, feats.height,
                   feats.histogram, about, read.ctime_ns, thumbnail)


def process_chunk(tasks: list[Task], max_dimension: int, max_pixels: int,
                  thumbnails: Thumbnailer | None = None) -> list[Result]:
    return [process(t, max_dimension, max_pixels, thumbnails) for t in tasks]


class ResultSource(Protocol):
    """What the pipeline streams results from: IngestPool here, or cluster.DaskPool (`build --dask`)."""

    def run(self, tasks: Iterable[Task], chunk_size: int = ...,
            should_stop: Callable[[], bool] = ...) -> Iterator[Result]: ...

    def release(self) -> None: ...


# glibc mallopt parameters. Every image allocates a few MB (its bytes, the decoded pixels, numpy
# temporaries of ~50k pixels); by default glibc serves each from a fresh mmap, or trims the heap after
# it, so the next image page-faults all of it in again (~270 faults, 2 ms of CPU per image here).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20  # glibc's own maximum for its dynamic threshold
_TRIM_THRESHOLD = 64 << 20  # free memory a worker may keep: bounded, and reused by the next image


def _keep_freed_memory() -> None:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: keep the allocator's defaults
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


def worker_init(ready_dir: str | None = None) -> None:
    """Set up a worker process: one decoder thread, and an allocator that reuses memory; then say it is
    up (a file named by its pid in `ready_dir`): see IngestPool._join."""
    from chromatica_watch.imaging.decoders import limit_decoder_threads

    limit_decoder_threads()
    _keep_freed_memory()
    if ready_dir is not None:
        with contextlib.suppress(OSError):
            open(os.path.join(ready_dir, str(os.getpid())), "wb").close()


# How long one file may take to read, hash and decode before its worker is replaced (a FIFO-like
# file, a hung network mount, a decoder stuck in a loop): the file is then recorded as failed.
DEFAULT_FILE_TIMEOUT = 60.0
_WAIT_SLICE = 0.2  # how often a wait for results looks at should_stop
WORKER_START_TIMEOUT_S = 10.0  # how long a close waits for workers still starting

Work = Callable[[list[Task], int, int], list[Result]]

# How worker processes are started:
# - "spawn": each is a fresh interpreter that imports numpy, OpenCV and the decoders (~0.2 s of CPU), and
#   nothing stays behind once the pool is closed (the daemon's pool, which an idle daemon stops).
# - "forkserver": each is forked (~10 ms) from a server process that imported all that once, and exits
#   without tearing an interpreter down (`build`, where start-up is a good part of a small build's time).
#   The server is a process of its own, started with nothing of ours running in it: the fork that makes
#   a worker copies no DuckDB or FAISS thread. It lives as long as the process that started it.
StartMethod = Literal["spawn", "forkserver"]
# What the fork server imports before it forks anything: the main module too, or every worker would
# import it again (multiprocessing re-runs a script's main module in each child).
_SERVER_PRELOAD = ("__main__", "chromatica_watch.ingest.pool", "chromatica_watch.imaging.reading",
                   "chromatica_watch.imaging.decoders", "chromatica_watch.imaging.features")


def worker_context(method: StartMethod) -> BaseContext:
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(list(_SERVER_PRELOAD))  # read when the server starts (once a process)
    return context


def start_worker_server() -> None:
    """Start the fork server now, without waiting for it, so that its imports overlap the caller's own
    (a build's driver loads DuckDB and FAISS meanwhile); the first pool on "forkserver" then forks its
    workers at once."""
    worker_context("forkserver")
    with sigint_blocked():
        forkserver.ensure_running()


def _timed_out_reason(seconds: float) -> str:
    return (f"took longer than {seconds:g} s to read and decode (a hung file system or decoder?); "
            "its worker was stopped")


def _crashed_reason(exc: BaseException) -> str:
    if not isinstance(exc, pebble.ProcessExpired):
        return f"internal error while reading it: {exc}"
    code = exc.exitcode
    how = f"signal {-code}" if isinstance(code, int) and code < 0 else f"exit code {code}"
    return f"the decoder crashed on this file ({how})"


class IngestPool:
    """Worker processes (pebble) that turn tasks into results.

    `run` streams results in task order with a bounded number of chunks in flight. A chunk that takes
    longer than `file_timeout` per file, or whose worker dies, is retried one file at a time so that
    only the culprit is recorded as failed; pebble stops a worker past its timeout and starts another,
    so no file can stall the pool. Waits are sliced so that `should_stop` is honoured within
    _WAIT_SLICE seconds whatever the workers are doing, and `close(cancel=True)` kills busy workers.
    """

    def __init__(self, workers: int, max_dimension: int, max_pixels: int,
                 file_timeout: float = DEFAULT_FILE_TIMEOUT, work: Work | None = None,
                 thumbnails: Thumbnailer | None = None, start_method: StartMethod = "spawn") -> None:
        self.workers = max(1, workers)
        self.max_dimension = max_dimension
        self.max_pixels = max_pixels
        self.file_timeout = file_timeout
        # With `thumbnails`, each worker also caches the web app's grid thumbnail of what it indexes.
        self._work: Work = work if work is not None else functools.partial(process_chunk, thumbnails=thumbnails)
        self._ready_dir = tempfile.mkdtemp(prefix="chromatica-workers-")
        self._started = False
        self._pool = pebble.ProcessPool(max_workers=self.workers, initializer=worker_init,
                                        initargs=(self._ready_dir,), context=worker_context(start_method))
        self._releasing: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        """Start every worker now (pebble starts them all with the pool), so that their start-up (with
        "spawn", a fresh interpreter importing OpenCV and numpy, ~0.3 s) overlaps what the caller does next."""
        self._schedule(os.getpid)

    def _submit(self, chunk: list[Task]) -> Future[list[Result]]:
        return self._schedule(self._work, (chunk, self.max_dimension, self.max_pixels),
                              timeout=self.file_timeout * len(chunk))

    def _schedule(self, fn: Callable[..., T], args: tuple[object, ...] = (),
                  timeout: float | None = None) -> Future[T]:
        if self._started:
            return self._pool.schedule(fn, args, timeout=timeout)
        self._started = True
        with sigint_blocked():  # the first schedule starts the workers, and pebble's threads that replace them
            return self._pool.schedule(fn, args, timeout=timeout)

    def run(self, tasks: Iterable[Task], chunk_size: int = 8,
            should_stop: Callable[[], bool] = lambda: False) -> Iterator[Result]:
        window = 3 * self.workers
        pending: deque[tuple[list[Task], Future[list[Result]]]] = deque()
        chunk: list[Task] = []

        def submit(c: list[Task]) -> None:
            pending.append((c, self._submit(c)))

        for task in tasks:
            if should_stop():
                break
            chunk.append(task)
            if len(chunk) >= chunk_size:
                submit(chunk)
                chunk = []
                while len(pending) >= window:
                    results = self._collect(*pending.popleft(), should_stop)
                    if results is None:
                        return self._cancel(pending)
                    yield from results
        if chunk and not should_stop():
            submit(chunk)
        while pending:
            results = self._collect(*pending.popleft(), should_stop)
            if results is None:
                return self._cancel(pending)
            yield from results

    def process(self, tasks: list[Task], should_stop: Callable[[], bool] = lambda: False) -> list[Result]:
        """One batch, spread over the workers; returns what was done before `should_stop`."""
        size = max(1, -(-len(tasks) // self.workers))
        return list(self.run(tasks, chunk_size=size, should_stop=should_stop))

    def _collect(self, chunk: list[Task], future: Future[list[Result]],
                 should_stop: Callable[[], bool]) -> list[Result] | None:
        """The chunk's results; None when asked to stop first. A chunk that timed out or lost its
        worker is run again one file at a time, so only the file at fault fails."""
        outcome = self._wait(future, should_stop)
        if outcome is None:
            return None
        if not isinstance(outcome, BaseException):
            return outcome
        if len(chunk) == 1:
            return [self._failed(chunk[0], outcome)]
        logger.debug("a chunk of %d files failed (%s): retrying them one by one", len(chunk), outcome)
        results: list[Result] = []
        for task in chunk:
            single = self._collect([task], self._submit([task]), should_stop)
            if single is None:
                return None
            results += single
        return results

    @staticmethod
    def _wait(future: Future[list[Result]],
              should_stop: Callable[[], bool]) -> list[Result] | BaseException | None:
        """The future's results, or the exception it ended with, or None when asked to stop first."""
        while not future.done():
            if should_stop():
                future.cancel()  # pebble stops the worker if it had started
                return None
            futures_wait([future], timeout=_WAIT_SLICE)
        try:
            return future.result()
        except Exception as exc:  # a timeout, a dead worker, or an error in the work itself
            return exc

    def _failed(self, task: Task, exc: BaseException) -> Result:
        reason = _timed_out_reason(self.file_timeout) if isinstance(exc, FuturesTimeout) else _crashed_reason(exc)
        key = (task.root, task.path)
        st = stat_file(absolute_key(key))
        if st is None:
            return Unstable(task, "vanished before it could be read")
        logger.warning("stopped the worker reading %s: %s", display_key(key), reason)
        return Failed(task, st.size, st.mtime_ns, reason)

    @staticmethod
    def _cancel(pending: deque[tuple[list[Task], Future[list[Result]]]]) -> None:
        for _, future in pending:
            future.cancel()

    def release(self) -> None:
        """No more work: let the workers exit now, while the caller goes on; close() waits for them."""
        if self._releasing is None and not self._closed:
            self._releasing = threading.Thread(target=self._join, name="ingest-pool-exit", daemon=True)
            self._releasing.start()

    def _join(self, cancel: bool = False) -> None:
        """Close the pool and wait for it. Closed while a worker it started is still unpickling its
        bootstrap, pebble lets go of the semaphores that worker then looks for, and it dies printing a
        FileNotFoundError traceback: so a close first waits (bounded) until every worker is up."""
        if not cancel and self._started:
            deadline = time.monotonic() + WORKER_START_TIMEOUT_S
            while len(os.listdir(self._ready_dir)) < self.workers and time.monotonic() < deadline:
                time.sleep(0.01)
        if cancel:
            self._pool.stop()
        else:
            self._pool.close()
        self._pool.join()
        shutil.rmtree(self._ready_dir, ignore_errors=True)

    def close(self, *, cancel: bool = False) -> None:
        """Stop the workers. `cancel` kills busy ones at once (SIGTERM, then SIGKILL after 3 s) instead
        of waiting for their work: a stop must not wait for a hung file."""
        if self._closed:
            return
        self._closed = True
        if self._releasing is not None:
            self._releasing.join()
            return
        self._join(cancel)

    def __enter__(self) -> IngestPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)


@dataclass(frozen=True)
class PoolSettings:
    """How workers make histograms: fixed when the daemon starts, like the fingerprint (a config reload
    must not change them)."""

    workers: int
    max_dimension: int
    max_pixels: int
    file_timeout: float = DEFAULT_FILE_TIMEOUT
    thumbnails: Thumbnailer | None = None  # grid thumbnails made while indexing (the web app's)


class PoolManager:
    """The daemon's worker pool: started when there is work (early, while queued files settle, so the
    workers' start-up overlaps the settle time), stopped after `idle_after` seconds without work so an
    idle daemon holds no worker processes, always with the settings it was made with."""

    def __init__(self, settings: PoolSettings, clock: Callable[[], float], idle_after: float = 30.0) -> None:
        self.settings = settings
        self._clock = clock
        self.idle_after = idle_after
        self.current: IngestPool | None = None
        self._used_at = 0.0

    def get(self, warm: bool = False) -> IngestPool:
        """The pool, started if need be; `warm` starts its processes now rather than on first use."""
        if self.current is None:
            s = self.settings
            self.current = IngestPool(s.workers, s.max_dimension, s.max_pixels, s.file_timeout,
                                      thumbnails=s.thumbnails)
            if warm:
                self.current.start()
        self.used()
        return self.current

    def used(self) -> None:
        self._used_at = self._clock()

    def stop_if_idle(self, has_work: bool) -> bool:
        """Stop the workers after idle_after seconds without work; True when they were stopped."""
        if self.current is None or has_work or self._clock() - self._used_at < self.idle_after:
            return False
        logger.debug("no work for %.0f s: stopping the worker processes", self.idle_after)
        self.current.close()
        self.current = None
        return True

    def close(self) -> None:
        """Stop now: busy workers are killed, not waited for (a stop must not wait for a hung file)."""
        if self.current is not None:
            self.current.close(cancel=True)
            self.current = None
