"""`build --dask`: the histogram work on the workers of a Dask cluster, the driver the only writer.

`DaskPool` has IngestPool's interface (start/run/release/close, a context manager), so `build` hands it
to the same pipeline: the driver scans, plans, commits every --batch-size and checkpoints exactly as in
a local build; only `ingest.process_chunk` runs elsewhere. Chunks are submitted with `client.submit`,
a bounded number in flight, and streamed back with `distributed.as_completed`; results are yielded in
submission order (a reorder buffer), so ids are handed out as a local build hands them out.

Faults: a worker that dies mid-chunk is Dask's to handle (the scheduler reschedules its tasks on
another worker; a chunk that kills several is given up with KilledWorker, and then retried one file at a
time here, like IngestPool, so only the culprit fails). A worker running another package version or
histogram fingerprint is refused before any work (and a late joiner's chunks refuse to run).

This is the only module that imports dask: nothing else loads it unless `--dask` is given.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from distributed import Client, Future, LocalCluster, as_completed
from distributed.diagnostics.plugin import WorkerPlugin

from chromatica_watch.colour import histogram
from chromatica_watch.core.errors import ClusterError, UsageError
from chromatica_watch.core.interrupt import sigint_blocked
from chromatica_watch.core.paths import display_key, stat_file
from chromatica_watch.ingest.pool import Failed, Result, Task, Unstable, process_chunk, worker_init

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 10.0
# Files per Dask task: a task costs the scheduler and the network a few ms, a 12 MP JPEG ~40 ms of
# decode; 8 files keep that overhead near 1%, and the tail at the end of a build under a second.
MIN_CHUNK = 8
IN_FLIGHT_PER_THREAD = 3  # chunks queued per worker thread: none idles while its next chunk travels


@dataclass(frozen=True)
class Identity:
    """What must be equal on the driver and every worker for their histograms to mix."""

    version: str
    fingerprint: str

    def __str__(self) -> str:
        return f"chromatica-watch {self.version}, fingerprint {self.fingerprint}"


def identity(max_dimension: int) -> Identity:
    from chromatica_watch import __version__

    return Identity(__version__, histogram.fingerprint(max_dimension))


def mismatches(driver: Identity, workers: dict[str, Identity]) -> str | None:
    """One line naming the driver's identity and the first worker that differs, or None (pure)."""
    for address, ident in sorted(workers.items()):
        if ident != driver:
            others = sum(1 for i in workers.values() if i != driver)
            more = f" (and {others - 1} other worker(s))" if others > 1 else ""
            return f"worker {address} runs {ident} but this driver runs {driver}{more}: install the same version"
    return None


class PathMap:
    """`--dask-path-map SRC=DEST`: the dataset is mounted at DEST on the workers where the driver sees SRC."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.pairs = [(os.path.normpath(s), os.path.normpath(d)) for s, d in pairs]

    def to_worker(self, root: str) -> str:
        """The worker's path for a driver root (the first SRC that is the root or a folder above it)."""
        for src, dest in self.pairs:
            if root == src or root.startswith(src.rstrip("/") + "/"):
                return dest + root[len(src):]
        return root


def _remote_chunk(tasks: list[Task], max_dimension: int, max_pixels: int, expected: Identity) -> list[Result]:
    # A worker that joined after the start-up check still refuses to mix its histograms in.
    mine = identity(max_dimension)
    if mine != expected:
        raise ClusterError(f"a worker runs {mine} but this driver runs {expected}: install the same version")
    return process_chunk(tasks, max_dimension, max_pixels)


class _DecoderSetup(WorkerPlugin):
    """One decoder thread per task and an allocator that keeps freed memory, on every worker, including
    those that join or are restarted later (as IngestPool's worker_init)."""

    name = "chromatica-decoder-setup"

    def setup(self, worker: Any) -> None:
        worker_init()


def _quiet_dask_logs() -> None:
    """Dask logs every worker and connection at INFO on its own handler; a build shows them only with
    --verbose (the CLI sets DEBUG then), like the rest of the package's INFO lines."""
    if not logger.isEnabledFor(logging.INFO):
        for name in ("distributed", "dask"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # A lost scheduler is logged by the client as an ERROR with tracebacks; the build says it in
        # one line of its own (ClusterError), which is what the user acts on.
        logging.getLogger("distributed.client").setLevel(logging.CRITICAL)


def parse_local(address: str) -> int | None:
    """`local` or `local:N` -> N worker processes (0: one per core); None for a scheduler address."""
    if address != "local" and not address.startswith("local:"):
        return None
    count = address.partition(":")[2]
    if count and (not count.isdigit() or int(count) < 1):
        raise UsageError(f"--dask local:N takes a number of workers >= 1, not {count!r}")
    return int(count) if count else 0


class DaskPool:
    """IngestPool's interface over a Dask cluster (see the module docstring)."""

    def __init__(self, address: str, max_dimension: int, max_pixels: int, path_map: PathMap | None = None,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
        self.address = address
        self.max_dimension = max_dimension
        self.max_pixels = max_pixels
        self.path_map = path_map or PathMap()
        self.connect_timeout = connect_timeout
        self.identity = identity(max_dimension)
        self.workers = 0  # worker threads, known once started
        self._local_workers = parse_local(address)
        self._cluster: LocalCluster | None = None
        self._client: Client | None = None

    def start(self) -> None:
        """Connect (or start the local cluster), wait for a worker, and check every worker's identity:
        all before any file is read. Raises ClusterError with one line."""
        if self._client is not None:
            return
        _quiet_dask_logs()
        self._client = self._connect()
        self._client.register_plugin(_DecoderSetup())
        self._check_workers(self._client)
        self.workers = max(1, sum(self._client.nthreads().values()))
        logger.info("Dask cluster %s: %d worker thread(s), %s", self.address, self.workers, self.identity)

    def _connect(self) -> Client:
        if self._local_workers is not None:
            n = self._local_workers or (os.cpu_count() or 1)
            # Processes, one thread each: decode holds the GIL often enough that threads would not scale.
            # ":0": the scheduler serves its HTTP endpoints anyway; a free port, never a clash on 8787.
            # Its processes never see a Ctrl-C (the build stops them): started with SIGINT blocked, and so
            # is the thread that starts them again later.
            with sigint_blocked():
                self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                             dashboard_address=":0")
            return Client(self._cluster)
        try:
            client = Client(self.address, timeout=self.connect_timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ClusterError(f"cannot reach the Dask scheduler at {self.address}: {reason}") from None
        try:
            client.wait_for_workers(1, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            client.close()
            raise ClusterError(f"no Dask worker joined the scheduler at {self.address} within "
                               f"{self.connect_timeout:g} s") from exc
        return client

    def _check_workers(self, client: Client) -> None:
        found: dict[str, Identity] = client.run(identity, self.max_dimension)
        problem = mismatches(self.identity, found)
        if problem is not None:
            raise ClusterError(problem)

    def _submit(self, chunk: list[Task]) -> Future:
        assert self._client is not None, "DaskPool.start() first"
        mapped = [dataclasses.replace(t, root=self.path_map.to_worker(t.root)) for t in chunk]
        # pure=False: two chunks of equal tasks (a retry) must run again, not share a cached result.
        return self._client.submit(_remote_chunk, mapped, self.max_dimension, self.max_pixels, self.identity,
                                   pure=False, retries=0)

    def run(self, tasks: Iterable[Task], chunk_size: int = MIN_CHUNK,
            should_stop: Callable[[], bool] = lambda: False) -> Iterator[Result]:
        """Results in task order. `should_stop` is looked at between results (a wait for one result is
        not interrupted: Dask cannot stop a running task anyway)."""
        self.start()
        size = max(chunk_size, MIN_CHUNK)
        window = IN_FLIGHT_PER_THREAD * self.workers
        chunks: dict[int, list[Task]] = {}  # sequence number -> the driver's tasks
        done: dict[int, list[Result]] = {}
        seq_of: dict[object, int] = {}  # future key -> sequence number
        assert self._client is not None
        stream = as_completed(loop=self._client.loop)
        submitted = yielded = 0
        source = iter(tasks)

        def refill() -> None:
            nonlocal submitted
            while submitted - yielded < window and not should_stop():
                chunk = [t for _, t in zip(range(size), source, strict=False)]
                if not chunk:
                    return
                future = self._submit(chunk)
                chunks[submitted], seq_of[future.key] = chunk, submitted
                stream.add(future)
                submitted += 1

        try:
            refill()
            while yielded < submitted:
                if yielded not in done:
                    future = next(stream)
                    seq = seq_of.pop(future.key)
                    done[seq] = self._results(chunks.pop(seq), future, should_stop)
                    continue
                yield from done.pop(yielded)
                yielded += 1
                if should_stop():
                    break
                refill()
        finally:  # stopped early or failed: what is still queued is not wanted
            for future in list(stream.futures):
                future.cancel()

    def _results(self, chunk: list[Task], future: Future, should_stop: Callable[[], bool]) -> list[Result]:
        """The chunk's results with the driver's tasks in them (the workers saw mapped roots). A chunk
        that raised is retried one file at a time so that only the file at fault fails."""
        if future.status == "finished":
            return [dataclasses.replace(r, task=t) for t, r in zip(chunk, future.result(), strict=True)]
        if future.status == "cancelled":
            # Not the files' fault (they must not be recorded as failed): the client lost the scheduler.
            raise ClusterError(f"lost the Dask scheduler at {self.address} during the build; what was committed "
                               "stays: run the same build again to resume")
        exc = future.exception()
        if isinstance(exc, ClusterError):
            raise ClusterError(str(exc))
        if len(chunk) == 1:
            return [_failed(chunk[0], exc)]
        logger.debug("a chunk of %d files failed on the cluster (%s): retrying them one by one", len(chunk), exc)
        out: list[Result] = []
        assert self._client is not None
        for task in chunk:
            single = self._submit([task])
            out += self._results([task], next(as_completed([single], loop=self._client.loop)), should_stop)
        return out

    def release(self) -> None:
        """No more work. The cluster stays up until close(): its shutdown (~1 s) is cheap next to a build."""

    def close(self, *, cancel: bool = False) -> None:
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    def __enter__(self) -> DaskPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)


def _failed(task: Task, exc: BaseException | None) -> Result:
    key = (task.root, task.path)
    st = stat_file(os.path.join(os.fsencode(task.root), task.path))
    if st is None:
        return Unstable(task, "vanished before it could be read")
    name = type(exc).__name__ if exc is not None else "unknown error"
    reason = (f"the decoder crashed on this file (its Dask workers died: {exc})" if name == "KilledWorker"
              else f"internal error while reading it on a Dask worker: {exc}")
    logger.warning("cannot index %s: %s", display_key(key), reason)
    return Failed(task, st.size, st.mtime_ns, reason)
