"""What a network root's rescan costs (issue 24): the stat-only rescan the daemon runs every
`network_rescan_interval` on a root whose changes inotify cannot see, for 100,000 photos, on the local disk
and through a FUSE mount (bindfs: every stat a round trip through the FUSE daemon, as on sshfs or rclone),
with the comparison against the catalog that follows it.

    flock /tmp/chromatica-bench.lock .venv/bin/python bench/bench_network.py [--n 100000] [--passes 3]

The files (empty, named .jpg: the scan never opens them) and a catalog holding a row for each, at the same
size and mtime, are made once in OUT/network. Each pass is what `Reconciler.reconcile` does before it finds
nothing to read: `ingest/scan.scan` then `ingest/pipeline.plan_delta`. A cold pass drops the page cache
first. Prints seconds per pass and files per second, and what the daemon's pacing makes of it: the next
rescan starts `max(network_rescan_interval, RESCAN_PACE x the last one's length)` after it ended, so the
share of the time the share is being listed is bounded. Not a pytest test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from bench_common import BENCH_DIR, MAX_DIMENSION, begin, finish, section

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.config import Config
from chromatica_watch.core.records import Changes, NewImage
from chromatica_watch.daemon.scans import RESCAN_PACE
from chromatica_watch.ingest.pipeline import plan_delta
from chromatica_watch.ingest.scan import scan
from chromatica_watch.storage.catalog import Catalog

PER_FOLDER = 1000


def make_files(folder: Path, n: int) -> None:
    marker = folder / f".made-{n}"
    if marker.exists():
        return
    hour_ago = time.time_ns() - 3600 * 10**9
    for i in range(n):
        path = folder / f"d{i // PER_FOLDER:04d}" / f"p{i:07d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path, ns=(hour_ago + i, hour_ago + i))
    marker.touch()


def make_catalog(index_dir: Path, files: Path, root: str, n: int) -> None:
    marker = index_dir / f".rows-{n}"
    if marker.exists():
        return
    disk, _ = scan(str(files))
    hist = np.full(H.TOTAL_BINS, 1.0 / H.TOTAL_BINS, np.float32)
    with Catalog.open(index_dir, H.fingerprint(MAX_DIMENSION)) as catalog:
        rows = [NewImage(root, path, f.size, f.mtime_ns, f"h{i}", 1, 1, hist)
                for i, (path, f) in enumerate(sorted(disk.items()))]
        for start in range(0, len(rows), 5000):
            catalog.apply(Changes(added=rows[start:start + 5000]))
    marker.touch()


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def one_pass(catalog: Catalog, scanned: str, root: str) -> tuple[float, float, int]:
    """(seconds to scan, seconds to compare, files) of one rescan of `scanned`, compared as `root`."""
    started = time.perf_counter()
    disk, _ = scan(scanned)
    scanned_at = time.perf_counter()
    plan = plan_delta(catalog, root, disk, time.time_ns())
    compared = time.perf_counter()
    if plan.delta.new or plan.delta.changed or plan.delta.vanished:
        raise SystemExit(f"the catalog does not match {scanned}: {len(plan.delta.new)} new, "
                         f"{len(plan.delta.changed)} changed, {len(plan.delta.vanished)} gone")
    return scanned_at - started, compared - scanned_at, len(disk)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    args = ap.parse_args(argv)
    work = args.out / "network"
    files, mnt, index_dir = work / f"files-{args.n}", work / "mnt", work / f"index-{args.n}"
    for d in (files, mnt, index_dir):
        d.mkdir(parents=True, exist_ok=True)
    summary, started_at = begin("bench_network", {"n": args.n, "passes": args.passes,
                                                  "network_rescan_interval": Config().network_rescan_interval,
                                                  "rescan_pace": RESCAN_PACE})
    section(f"Data set: {args.n} files in folders of {PER_FOLDER}, a catalog row for each")
    t = time.perf_counter()
    make_files(files, args.n)
    make_catalog(index_dir, files, str(mnt), args.n)
    print(f"  ready in {time.perf_counter() - t:.1f} s", flush=True)
    subprocess.run(["bindfs", "--no-allow-other", str(files), str(mnt)], check=True)
    rows: dict[str, dict[str, float]] = {}
    try:
        with Catalog.open(index_dir, H.fingerprint(MAX_DIMENSION), read_only=True) as catalog:
            for label, scanned in (("local disk", str(files)), ("FUSE mount (bindfs)", str(mnt))):
                section(f"Rescans of the {label}")
                drop_caches()
                cold = one_pass(catalog, scanned, str(mnt))
                warm = [one_pass(catalog, scanned, str(mnt)) for _ in range(args.passes)]
                scan_s = statistics.median(w[0] for w in warm)
                compare_s = statistics.median(w[1] for w in warm)
                total = scan_s + compare_s
                interval = max(Config().network_rescan_interval, RESCAN_PACE * total)
                rows[label] = {"cold_scan_s": cold[0], "cold_compare_s": cold[1], "scan_s": scan_s,
                               "compare_s": compare_s, "files_per_s": cold[2] / total, "interval_s": interval,
                               "busy_share": total / (total + interval)}
                print(f"  cold: scan {cold[0]:.2f} s + compare {cold[1]:.2f} s;  warm (median of {args.passes}): "
                      f"scan {scan_s:.2f} s + compare {compare_s:.2f} s = {total:.2f} s, "
                      f"{cold[2] / total:,.0f} files/s", flush=True)
                print(f"  paced: the next rescan {interval:.0f} s after one ends; the share is listed "
                      f"{total / (total + interval):.1%} of the time", flush=True)
                summary.add(f"rescan of {args.n} files, {label} (cold)", cold[0] + cold[1], "s")
                summary.add(f"rescan of {args.n} files, {label} (warm)", total, "s")
                summary.add(f"time spent rescanning, {label}", 100 * total / (total + interval), "%")
    finally:
        subprocess.run(["fusermount", "-u", str(mnt)], check=False)
    summary.details["rows"] = rows
    return finish(args.out, "bench_network", summary, started_at)


if __name__ == "__main__":
    raise SystemExit(main())
