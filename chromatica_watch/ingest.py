"""Turning files into catalog rows: the work done in worker processes, and the pool that runs it.

Workers are started with `spawn` (never `fork`: FAISS/OpenMP and DuckDB threads do not survive a fork)
and each runs single-threaded, so N workers use N cores. Chunks of files go to workers and come back in
submission order, so ids are handed out in a stable order whatever finishes first.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import image
from .errors import ImageError

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Known:
    """The bytes hash to content the catalog already has (a move, a copy, or an untouched racy file)."""

    task: Task
    size: int
    mtime_ns: int
    content_hash: str


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


def absolute(task: Task) -> str:
    return os.path.join(task.root, os.fsdecode(task.path))


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def process(task: Task, max_dimension: int, max_pixels: int) -> Result:
    path = absolute(task)
    try:
        read = image.read_file(path)
    except ImageError as exc:
        st = _stat_or_none(path)
        if st is None and not os.path.islink(path):
            return Unstable(task, "vanished before it could be read")
        return Failed(task, st.st_size if st else 0, st.st_mtime_ns if st else 0, exc.reason)
    digest = image.hash_bytes(read.data)
    if digest in task.skip_hashes:
        return Known(task, read.size, read.mtime_ns, digest)
    try:
        feats = image.features(read.data, max_dimension, max_pixels, content_hash=digest)
    except ImageError as exc:
        after = _stat_or_none(path)
        if after is None or (after.st_size, after.st_mtime_ns) != (read.size, read.mtime_ns):
            return Unstable(task, f"changed while being read ({exc.reason})")
        return Failed(task, read.size, read.mtime_ns, exc.reason)
    except MemoryError:
        return Failed(task, read.size, read.mtime_ns, "out of memory while decoding")
    return Indexed(task, read.size, read.mtime_ns, feats.content_hash, feats.width, feats.height,
                   feats.histogram)


def process_chunk(tasks: list[Task], max_dimension: int, max_pixels: int) -> list[Result]:
    return [process(t, max_dimension, max_pixels) for t in tasks]


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


def worker_init() -> None:
    """Set up a worker process: one decoder thread, and an allocator that reuses memory."""
    image.limit_decoder_threads()
    _keep_freed_memory()


class IngestPool:
    """A spawn-based process pool; `run` streams results in order with a bounded number in flight."""

    def __init__(self, workers: int, max_dimension: int, max_pixels: int) -> None:
        self.workers = max(1, workers)
        self.max_dimension = max_dimension
        self.max_pixels = max_pixels
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=worker_init)
        self._releasing: threading.Thread | None = None

    def start(self) -> None:
        """Start every worker now (they start on first use otherwise), so that their start-up (a
        fresh interpreter importing OpenCV and numpy, ~0.3 s) overlaps whatever the caller does next."""
        for _ in range(self.workers):
            self._executor.submit(os.getpid)  # each submit to a pool with no idle worker starts one

    def run(self, tasks: Iterable[Task], chunk_size: int = 8,
            should_stop: Callable[[], bool] = lambda: False) -> Iterator[Result]:
        window = 3 * self.workers
        pending: deque[Future[list[Result]]] = deque()
        chunk: list[Task] = []

        def submit(c: list[Task]) -> None:
            pending.append(self._executor.submit(process_chunk, c, self.max_dimension, self.max_pixels))

        for task in tasks:
            if should_stop():
                break
            chunk.append(task)
            if len(chunk) >= chunk_size:
                submit(chunk)
                chunk = []
                while len(pending) >= window:
                    yield from pending.popleft().result()
        if chunk and not should_stop():
            submit(chunk)
        while pending:
            if should_stop():
                for f in pending:
                    f.cancel()
                return
            yield from pending.popleft().result()

    def process(self, tasks: list[Task]) -> list[Result]:
        """One batch, spread over the workers; blocks until all are done."""
        size = max(1, -(-len(tasks) // self.workers))
        futures = [self._executor.submit(process_chunk, tasks[i:i + size], self.max_dimension, self.max_pixels)
                   for i in range(0, len(tasks), size)]
        return [r for f in futures for r in f.result()]

    def release(self) -> None:
        """No more work: let the workers exit now, while the caller goes on; close() waits for them.

        shutdown(wait=False) would forget the processes (a later shutdown does not join them), so a
        thread does the waiting shutdown instead and close() joins that thread.
        """
        if self._releasing is None:
            self._releasing = threading.Thread(target=self._executor.shutdown, name="ingest-pool-exit",
                                               daemon=True)
            self._releasing.start()

    def close(self, *, cancel: bool = False) -> None:
        if self._releasing is not None:
            self._releasing.join()
        else:
            self._executor.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> IngestPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)
