"""Dask benchmark: a local build vs `build --dask` on the same camera JPEGs, and the driver's ceiling.

    PYTHONPATH=. .venv/bin/python bench/bench_dask.py [--images 500] [--out DIR] [--repeat 2] [--rows 30000]

Not a pytest test. Prints the figures and a summary, writes OUT/bench_dask.json; exits 1 when a target
is missed. Run one benchmark at a time on a machine (`flock /tmp/chromatica-bench.lock ...`).

1. Builds, each a `chromatica-watch build` CLI run into a fresh index dir, timed from nothing to done,
   interleaved and best of R: (a) local, one worker process per core; (b) `--dask local:N` (N = cores;
   the LocalCluster's start-up is inside the time, as a user of this flag pays it); (c) `--dask tcp://`
   to a 2-worker LocalCluster already running (the cluster case: `dask scheduler` and `dask worker`
   are up before the build); (d) `--shards 2`, local workers shared by two writers, then `merge`.
   Ratio (b)/(a) in wall time: Dask's overhead, target <= 1.10 (issue 14); (c)/(a) beside it: the same
   without the cluster's start and stop, what a real cluster costs; (d)/(a): what sharding costs or
   saves when the writer is not the limit.
2. The driver's ceiling: how many results per second the single writer absorbs (catalog transaction +
   HNSW add, batches of --batch-size) when the workers are infinitely fast: precomputed `Indexed`
   results (the histograms of the corpus, cycled, with unique paths and hashes) fed through the same
   `pipeline.ingest_tasks` -> `Committer` path a build uses, into a fresh index dir. Reported per
   slice of 10,000 rows, since an HNSW add slows as the graph grows.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from bench_common import BENCH_DIR, CLI, Summary, begin, finish, linked_set, make_corpus, section, warm_page_cache

from chromatica_watch.ingest.pool import Indexed, Result, Task

TARGET_OVERHEAD = 1.10
T = TypeVar("T")
SLICE = 10_000


def timed_build(dataset: Path, output: Path, extra: Sequence[str]) -> float:
    shutil.rmtree(output, ignore_errors=True)
    started = time.monotonic()
    proc = subprocess.run([CLI, "build", "--dataset", str(dataset), "--output", str(output), "-q", *extra],
                          capture_output=True, text=True)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"build {' '.join(extra)} failed: {proc.stderr}")
    return seconds


def bench_builds(out: Path, dataset: Path, images: int, repeat: int, summary: Summary) -> None:
    from distributed import Client, LocalCluster

    cores = len(os.sched_getaffinity(0))
    kinds: dict[str, list[str]] = {"local": ["--workers", str(cores)], "dask_local": ["--dask", f"local:{cores}"],
                                   "shards_2": ["--workers", str(cores), "--shards", "2"]}
    best: dict[str, float] = {}
    with LocalCluster(n_workers=cores, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
            Client(lc):
        kinds["dask_running"] = ["--dask", lc.scheduler_address]
        for run in range(repeat):
            for name, extra in kinds.items():
                seconds = timed_build(dataset, out / "index-dask-bench", extra)
                best[name] = min(best.get(name, seconds), seconds)
                print(f"  run {run + 1} {name:<13} {seconds:6.2f} s = {images / seconds:6.1f} img/s", flush=True)
    shutil.rmtree(out / "index-dask-bench", ignore_errors=True)
    print()
    for name, extra in kinds.items():
        print(f"  best {name:<13} {best[name]:6.2f} s = {images / best[name]:6.1f} img/s   ({' '.join(extra)})")
        summary.add(f"build {name} (best of {repeat})", images / best[name], "img/s")
    running, local_cluster = best["dask_running"] / best["local"], best["dask_local"] / best["local"]
    print(f"  dask local:{cores} (cluster started by the build) / local wall time = {local_cluster:.3f}  "
          f"(target <= {TARGET_OVERHEAD})")
    print(f"  dask (running cluster) / local wall time = {running:.3f}")
    summary.add(f"dask local:{cores} / local, wall time", local_cluster, "ratio", f"<= {TARGET_OVERHEAD}",
                local_cluster <= TARGET_OVERHEAD)
    summary.add("dask running cluster / local, wall time", running, "ratio")
    sharded = best["shards_2"] / best["local"]
    print(f"  --shards 2 (two writers, then merge) / local wall time = {sharded:.3f}")
    summary.add("--shards 2 / local, wall time", sharded, "ratio")
    summary.details["builds_seconds"] = {k: round(v, 3) for k, v in best.items()}


class Precomputed:
    """Infinitely fast workers: the pipeline's result source, yielding ready-made results in task order."""

    def __init__(self, make: Callable[[Task], Result]) -> None:
        self.make = make

    def run(self, tasks: Iterable[Task], chunk_size: int = 8,
            should_stop: Callable[[], bool] = lambda: False) -> Iterator[Result]:
        return (self.make(t) for t in tasks)

    def release(self) -> None:
        pass


def corpus_histograms(paths: Sequence[Path], count: int) -> np.ndarray:
    """Real histograms of the corpus (the first `count` files), made here once."""
    from chromatica_watch.ingest.pool import process

    hists = []
    for p in paths[:count]:
        r = process(Task(os.fsdecode(p.parent), os.fsencode(p.name)), 256, 10**9)
        assert isinstance(r, Indexed), r
        hists.append(r.histogram)
    return np.stack(hists)


def timed(fn: Callable[..., T], spent: dict[str, float], key: str) -> Callable[..., T]:
    """`fn`, adding the seconds it takes to spent[key]: where the writer's time goes."""
    def wrapper(*args: object, **kwargs: object) -> T:
        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[key] += time.monotonic() - started
    return wrapper


def bench_driver(out: Path, hists: np.ndarray, rows: int, batch_size: int, summary: Summary) -> None:
    from chromatica_watch.colour import histogram
    from chromatica_watch.ingest.pipeline import Committer, Vanished, ingest_tasks
    from chromatica_watch.storage.catalog import Catalog
    from chromatica_watch.storage.indexdir import open_live_index

    index_dir = out / "index-driver-ceiling"
    shutil.rmtree(index_dir, ignore_errors=True)
    index_dir.mkdir(parents=True)
    fp = histogram.fingerprint(256)
    root = "/photos"
    tasks = [Task(root, f"{i // 1000:04d}/IMG_{i:07d}.jpg".encode()) for i in range(rows)]
    by_path = {t.path: i for i, t in enumerate(tasks)}

    def make(t: Task) -> Result:
        i = by_path[t.path]
        return Indexed(t, 5_000_000 + i, 1_700_000_000_000_000_000 + i, f"{i:016x}", 4000, 3000,
                       hists[i % len(hists)])

    catalog = Catalog.open(index_dir, fp)
    try:
        live, _ = open_live_index(index_dir, catalog, fp)
        spent = {"catalog": 0.0, "index": 0.0}
        catalog.apply = timed(catalog.apply, spent, "catalog")  # type: ignore[method-assign]
        live.add = timed(live.add, spent, "index")  # type: ignore[method-assign]
        committer = Committer(catalog, live)
        marks: list[float] = [time.monotonic()]

        def on_result(done: int) -> None:
            if done % SLICE == 0:
                marks.append(time.monotonic())

        started = marks[0]
        ingest_tasks(Precomputed(make), tasks, committer, {}, Vanished(), batch_size, on_result=on_result)
        seconds = time.monotonic() - started
        checkpoint_started = time.monotonic()
        live.checkpoint(index_dir, fp)
        checkpoint_s = time.monotonic() - checkpoint_started
    finally:
        catalog.close()
    rate = rows / seconds
    slices = [SLICE / (b - a) for a, b in itertools.pairwise(marks)]
    print(f"  {rows} precomputed results, batches of {batch_size}: {seconds:.1f} s = {rate:,.0f} results/s "
          f"(catalog commit + HNSW add)")
    print("  per 10,000: " + ", ".join(f"{r:,.0f}/s" for r in slices))
    print(f"  of which catalog transactions {spent['catalog']:.1f} s ({rows / spent['catalog']:,.0f}/s), "
          f"HNSW add {spent['index']:.1f} s ({rows / spent['index']:,.0f}/s)")
    print(f"  final checkpoint of {rows} vectors: {checkpoint_s:.1f} s")
    size = sum(f.stat().st_size for f in index_dir.iterdir() if f.is_file())
    print(f"  index dir: {size / rows / 1024:.2f} KiB per photo on disk")
    summary.add(f"driver ceiling ({rows} rows, batch {batch_size})", rate, "rows/s")
    summary.add("driver ceiling, last 10k slice", slices[-1] if slices else rate, "rows/s")
    summary.details["driver"] = {"rows": rows, "batch_size": batch_size, "seconds": round(seconds, 2),
                                 "slices_per_s": [round(s, 1) for s in slices],
                                 "checkpoint_s": round(checkpoint_s, 2),
                                 "catalog_s": round(spent["catalog"], 2), "index_add_s": round(spent["index"], 2),
                                 "disk_bytes_per_photo": round(size / rows)}
    shutil.rmtree(index_dir, ignore_errors=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="corpus files in the builds (500)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out", help="cache and results (bench/out)")
    parser.add_argument("--repeat", type=int, default=2, help="builds: best of this many (2)")
    parser.add_argument("--rows", type=int, default=30_000, help="precomputed results for the driver ceiling")
    parser.add_argument("--batch-size", type=int, default=100, help="the driver's batch (build's default 100)")
    parser.add_argument("--sections", default="builds,driver", help="comma-separated: builds, driver")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {"python": platform.python_version(), "cores": len(os.sched_getaffinity(0)), "images": args.images,
           "repeat": args.repeat, "rows": args.rows, "batch_size": args.batch_size}
    import distributed

    env["distributed"] = distributed.__version__
    summary, started = begin("bench_dask", env)
    sections = args.sections.split(",")
    # The driver section needs only a hundred real histograms: no corpus of --images made for it alone.
    paths = make_corpus(out, args.images if "builds" in sections else min(args.images, 100))
    warm_page_cache(paths)
    if "builds" in sections:
        section(f"1. Builds of {args.images} camera JPEGs (4000x3000): local vs Dask")
        bench_builds(out, linked_set(out, paths), args.images, args.repeat, summary)
    if "driver" in sections:
        section("2. The driver's ceiling: precomputed results through the single writer")
        bench_driver(out, corpus_histograms(paths, 100), args.rows, args.batch_size, summary)
    return finish(out, "bench_dask", summary, started)


if __name__ == "__main__":
    sys.exit(main())
