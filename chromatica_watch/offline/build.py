"""The offline batch build: index a folder into an index directory, resumably.

The folder is diffed against the catalog first (delta indexing), so a second run, or a run after a
kill -9, only reads what is not committed yet. Files are processed in sorted path order and committed
in that order, one catalog transaction per batch, so an interrupted build resumed gives the same ids
as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from chromatica_watch.colour import histogram
from chromatica_watch.core.defaults import DEFAULT_MAX_DIMENSION, DEFAULT_MAX_PIXELS, worker_count
from chromatica_watch.core.errors import DatasetError
from chromatica_watch.core.fsutil import atomic_write
from chromatica_watch.core.interrupt import never
from chromatica_watch.core.paths import Key, absolute_key, display_path
from chromatica_watch.core.records import Changes, Failure
from chromatica_watch.ingest.diff import MatchBy
from chromatica_watch.ingest.pipeline import Committer, Outcome, Replaced, Vanished, ingest_tasks
from chromatica_watch.ingest.pool import IngestPool, ResultSource, Task
from chromatica_watch.offline.delta import dataset_plan, scan_dataset
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.decoder_stamp import check_decoders
from chromatica_watch.storage.indexdir import (
    FAILED_REPORT,
    INDEXING_REPORT,
    ensure_writable,
    needs_reshape,
    open_live_index,
    rebuild_from,
)

logger = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = 60.0
# Files per task sent to a worker. Small, so that at the end of the build no worker sits idle while
# another finishes a long chunk (up to 8 x 40 ms with the pool's default); the cost of a round trip
# per 2 files is well under 1% of their decode.
CHUNK_SIZE = 2


@dataclass(frozen=True)
class BuildOptions:
    dataset: Path
    output: Path
    batch_size: int = 100
    max_dimension: int = DEFAULT_MAX_DIMENSION
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = 0  # 0: one per core
    excludes: tuple[str, ...] = ()
    match_by: MatchBy = "path"  # "name": take over an index built under another folder name
    dask: str | None = None  # a Dask scheduler address, or "local[:N]": the histograms made on its workers
    dask_path_map: tuple[tuple[str, str], ...] = ()  # (driver path, worker path): the dataset mounted elsewhere
    dask_timeout: float = 10.0  # seconds to reach the scheduler and see a worker
    part: tuple[int, int] | None = None  # (k, n): only the files of part k of n (`build --shards`, shards.py)


@dataclass
class BuildReport:
    dataset: str
    output: str
    discovered: int = 0
    unchanged: int = 0
    indexed: int = 0
    moved: int = 0
    adopted: str | None = None  # the other folder whose rows this build took over (--match-by name)
    tombstoned: int = 0
    failed: int = 0
    failed_unchanged: int = 0
    total_live: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    workers: int = 0
    cluster: str | None = None  # the Dask scheduler the histograms were made on
    batch_size: int = 0
    max_dimension: int = 0
    fingerprint: str = ""
    interrupted: bool = False  # asked to stop before every file was read: the same build again goes on
    failures: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    failed: int
    elapsed: float


ProgressFn = Callable[[Progress], None]


def build(opts: BuildOptions, on_progress: ProgressFn | None = None,
          should_stop: Callable[[], bool] = never) -> BuildReport:
    """Index opts.dataset into opts.output. `should_stop` is asked as files are handed to the workers: once
    it says so, the build commits what it has read and returns, with `interrupted` set in its report."""
    started = time.monotonic()
    dataset = opts.dataset.resolve()
    if not dataset.is_dir():
        raise DatasetError(f"dataset folder {opts.dataset} does not exist or is not a folder")
    output = opts.output.resolve()
    created = not output.exists()
    ensure_writable(output)
    try:
        return _build_into(opts, on_progress, should_stop, started, dataset, output)
    except BaseException:
        # Refused before anything was written (a cluster out of reach, a worker of another version): a
        # folder the build made and left empty is not left behind.
        if created and output.is_dir() and not any(output.iterdir()):
            output.rmdir()
        raise


def _build_into(opts: BuildOptions, on_progress: ProgressFn | None, should_stop: Callable[[], bool],
                started: float, dataset: Path, output: Path) -> BuildReport:
    fp = histogram.fingerprint(opts.max_dimension)
    root = os.fsdecode(dataset)
    workers = worker_count(opts.workers)
    report = BuildReport(dataset=root, output=str(output), workers=workers, batch_size=opts.batch_size,
                         max_dimension=opts.max_dimension, fingerprint=fp)

    with _pool(opts, workers) as pool:
        pool.start()  # the workers start up while the folder is scanned and the catalog opened
        if opts.dask is not None:
            report.cluster, report.workers = opts.dask, pool.workers
        _build(opts, pool, output, fp, report, on_progress, should_stop, started)
    report.seconds = round(time.monotonic() - started, 3)
    report.images_per_second = round(report.indexed / report.seconds, 2) if report.seconds else 0.0
    write_reports(output, report)
    return report


def in_part(path: bytes, part: tuple[int, int]) -> bool:
    """Whether a file (its path relative to the dataset) is in part k of n: a stable hash, the same in
    every process and every run, so a shard built again resumes over the same files."""
    k, n = part
    return zlib.crc32(path) % n == k


class BuildPool(ResultSource, AbstractContextManager["BuildPool"], Protocol):
    workers: int

    def start(self) -> None: ...


def _pool(opts: BuildOptions, workers: int) -> BuildPool:
    if opts.dask is None:
        return IngestPool(workers, opts.max_dimension, opts.max_pixels, start_method="forkserver")
    from chromatica_watch.ingest.cluster import DaskPool, PathMap

    # Connecting and checking the workers (start) happens before the catalog is opened: a refused
    # cluster leaves the output as it was.
    return DaskPool(opts.dask, opts.max_dimension, opts.max_pixels, PathMap(opts.dask_path_map), opts.dask_timeout)


def _build(opts: BuildOptions, pool: ResultSource, output: Path, fp: str, report: BuildReport,
           on_progress: ProgressFn | None, should_stop: Callable[[], bool], started: float) -> None:
    root = report.dataset
    _, disk, problems = scan_dataset(opts.dataset, opts.excludes)
    if opts.part is not None:
        disk = {path: f for path, f in disk.items() if in_part(path, opts.part)}
        problems = [pr for pr in problems if in_part(pr.path, opts.part)]
    catalog = Catalog.open(output, fp)
    try:
        check_decoders(catalog)
        live, _ = open_live_index(output, catalog, fp)
        plan = dataset_plan(catalog, root, disk, opts.match_by)
        delta = plan.delta
        if not disk and not delta.vanished and not problems and opts.part is None:
            raise DatasetError(f"no images found in {opts.dataset}")
        report.discovered = len(disk)
        report.unchanged = delta.unchanged
        report.failed_unchanged = delta.failed_unchanged
        replaced, vanished = plan.replaced, plan.vanished
        tasks = plan.tasks()
        logger.info("%d images found: %d to read, %d already indexed, %d gone", len(disk), len(tasks),
                    delta.unchanged, len(delta.vanished))

        committer = Committer(catalog, live)
        committer.rewrite(plan)  # rows taken over or following their files: no read
        report.moved += len(plan.moves)
        report.adopted = plan.adopt
        if plan.adopt:
            logger.info("took over the photos of %s (%d moved by name)", plan.adopt, len(plan.moves))
        scan_failures = [Failure(root, pr.path, 0, 0, pr.reason) for pr in problems]
        done = _run(tasks, opts, pool, committer, replaced, vanished, report, on_progress, should_stop, started,
                    output, fp)
        report.interrupted = done < len(tasks)
        if not report.interrupted:
            # Whatever vanished and was not claimed by a move is gone. (Stopped early, the files not read
            # yet may hold some of those moves: the next build decides.)
            final = committer.commit([], {}, vanished, extra_tombstones=vanished.remaining_ids())
            report.tombstoned += final.tombstoned
        if scan_failures:
            catalog.apply(Changes(failed=scan_failures))
        committer.index.checkpoint(output, fp)  # the index may have been rebuilt in another layout meanwhile
        all_failures = catalog.failed_files(root)
        report.failed += len(scan_failures)
        report.failures = [{"path": display_path(absolute_key(k)), "reason": f.reason}
                           for k, f in all_failures.items()]
        report.total_live = catalog.counts()["live"]
    finally:
        catalog.close()


def _run(tasks: list[Task], opts: BuildOptions, pool: ResultSource, committer: Committer,
         replaced: dict[Key, Replaced], vanished: Vanished, report: BuildReport, on_progress: ProgressFn | None,
         should_stop: Callable[[], bool], started: float, output: Path, fp: str) -> int:
    """Read and commit the tasks; returns how many were done (fewer when asked to stop)."""
    if not tasks or should_stop():
        return 0
    last_checkpoint = time.monotonic()
    results = 0

    def progress(done: int) -> None:
        nonlocal results
        results = done
        if on_progress is not None:
            on_progress(Progress(done, len(tasks), report.failed, time.monotonic() - started))

    def after_batch(outcome: Outcome) -> None:
        nonlocal last_checkpoint
        report.indexed += outcome.added
        report.moved += outcome.moved
        report.tombstoned += outcome.tombstoned
        report.failed += len(outcome.failed) + len(outcome.unstable)
        if outcome.unstable:
            # Changed while being read: recorded with no stat, so the next run tries it again.
            committer.catalog.apply(Changes(failed=[Failure(u.task.root, u.task.path, 0, 0, u.reason)
                                                    for u in outcome.unstable]))
        if needs_reshape(committer.index):  # grown to the PCA layout's size: rebuilt in it, then built on
            committer.index = rebuild_from(committer.catalog)
        if time.monotonic() - last_checkpoint > CHECKPOINT_EVERY_S:
            committer.index.checkpoint(output, fp)
            last_checkpoint = time.monotonic()

    ingest_tasks(pool, tasks, committer, replaced, vanished, opts.batch_size, chunk_size=CHUNK_SIZE,
                 should_stop=should_stop, on_result=progress, on_batch=after_batch)
    pool.release()  # the workers' exit (~0.1 s) overlaps the final commit and checkpoint
    return results


def write_reports(output: Path, report: BuildReport) -> None:
    lines = ["# chromatica-watch build: images that could not be indexed", "# path<TAB>reason", ""]
    lines += [f"{f['path']}\t{f['reason']}" for f in report.failures]
    atomic_write(output / FAILED_REPORT, ("\n".join(lines) + "\n").encode())
    atomic_write(output / INDEXING_REPORT, json.dumps(asdict(report), indent=2).encode())
