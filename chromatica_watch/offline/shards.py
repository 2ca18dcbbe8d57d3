"""`build --shards N`: N writers, each building the index of a disjoint part of the dataset in its own
index directory, then `merge` combining them into the output.

A build has one writer: the catalog transaction and the HNSW add of every photo go through one process,
~1,000 photos a second at most (docs/scaling.md). Shards give each part its own writer. A file's part is
a stable hash of its path (`build.in_part`), so a shard built again (after a crash, or a kill) resumes
over the same files from its own catalog. The shards live beside the output as hidden sibling folders
until the merge has renamed the output into place; then they are removed. The output must be new: to
update an index, build into it without --shards (the delta build reads only what changed).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path

from chromatica_watch.core.defaults import worker_count
from chromatica_watch.core.errors import ChromaticaError, UsageError
from chromatica_watch.core.interrupt import never, sigint_blocked
from chromatica_watch.offline.build import BuildOptions, BuildReport, build, write_reports
from chromatica_watch.offline.merge import merge
from chromatica_watch.storage.indexdir import INDEXING_REPORT

logger = logging.getLogger(__name__)


def shard_dirs(output: Path, shards: int) -> list[Path]:
    """Where each part is built: hidden siblings of the output, named by their part."""
    return [output.with_name(f".{output.name}.shard-{k + 1}-of-{shards}") for k in range(shards)]


def build_sharded(opts: BuildOptions, shards: int, should_stop: Callable[[], bool] = never) -> BuildReport:
    """Build `opts.dataset` into the new index dir `opts.output` with `shards` writers; raises UsageError
    for an output that is not new or options that cannot shard, ChromaticaError when a shard fails. Once
    `should_stop` says so, every shard commits what it has read and stops: the report says `interrupted`,
    nothing is merged, and the same command again resumes each shard."""
    if shards < 2:
        raise UsageError(f"--shards must be at least 2, got {shards}")
    if opts.dask is not None:
        raise UsageError("--shards builds with local workers; with --dask the workers are the cluster's "
                         "(build one part per command, then merge)")
    output = opts.output.resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"--shards makes a new index, and {output} is not empty: build into it without "
                         "--shards to update it")
    started = time.monotonic()
    dirs = shard_dirs(output, shards)
    per_shard = max(1, worker_count(opts.workers) // shards)
    logger.info("building %d shards with %d worker(s) each: %s", shards, per_shard, ", ".join(map(str, dirs)))
    _run_parts([replace(opts, output=d, part=(k, shards), workers=per_shard) for k, d in enumerate(dirs)],
               should_stop)
    parts = [json.loads((d / INDEXING_REPORT).read_text()) for d in dirs]
    if any(p.get("interrupted") for p in parts):  # a shard's report of an earlier version has no such key
        live = sum(int(p["total_live"]) for p in parts)
        return replace(_combined(opts, output, parts, live, started), interrupted=True)
    merged = merge(dirs, output)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    report = _combined(opts, output, parts, merged.live, started)
    write_reports(output, report)
    return report


def _run_parts(parts: list[BuildOptions], should_stop: Callable[[], bool]) -> None:
    """Each part's build in a process of its own (spawned: no thread of ours is inherited), all at once.
    The parts never see a Ctrl-C (this process does, and passes `should_stop` on to them)."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    running: dict[Connection, tuple[int, BaseProcess]] = {}
    with sigint_blocked():
        for n, opts in enumerate(parts, 1):
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=_build_part, args=(opts, send, stop), name=f"chromatica-shard-{n}")
            child.start()
            send.close()
            running[receive] = (n, child)
    errors = []
    while running:
        ready = wait(list(running), timeout=0.2)
        for receive in [r for r in running if r in ready]:
            n, process = running.pop(receive)
            try:
                message = receive.recv()
            except EOFError:  # it died without a word (killed): its exit code says how
                message = None
            process.join()
            if message is not None or process.exitcode != 0:
                errors.append(f"shard {n} of {len(parts)}: {message or f'exited with code {process.exitcode}'}")
        if should_stop():
            stop.set()
    if errors:
        raise ChromaticaError("; ".join(sorted(errors)) + " (run the same command again: each shard resumes)")


def _build_part(opts: BuildOptions, send: Connection, stop: Event) -> None:
    """In a shard's process: its build, and None or the reason it failed sent back."""
    try:
        build(opts, should_stop=stop.is_set)
        send.send(None)
    except ChromaticaError as exc:
        send.send(str(exc))
    except Exception as exc:  # reported by the parent in one line, never a traceback on the terminal
        send.send(f"{type(exc).__name__}: {exc}")
    finally:
        send.close()


def _combined(opts: BuildOptions, output: Path, parts: list[dict[str, object]], live: int,
              started: float) -> BuildReport:
    def total(key: str) -> int:
        return sum(int(p[key]) for p in parts)  # type: ignore[call-overload]

    first = parts[0]
    seconds = round(time.monotonic() - started, 3)
    failures = [f for p in parts for f in p["failures"]]  # type: ignore[attr-defined]
    return BuildReport(
        dataset=str(first["dataset"]), output=str(output), discovered=total("discovered"),
        unchanged=total("unchanged"), indexed=total("indexed"), moved=total("moved"),
        tombstoned=total("tombstoned"), failed=total("failed"), failed_unchanged=total("failed_unchanged"),
        total_live=live, seconds=seconds, images_per_second=round(total("indexed") / seconds, 2) if seconds else 0.0,
        workers=total("workers"), batch_size=opts.batch_size, max_dimension=opts.max_dimension,
        fingerprint=str(first["fingerprint"]), failures=sorted(failures, key=lambda f: f["path"]))
