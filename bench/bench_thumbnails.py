"""Thumbnail benchmark: time to the first thumbnail of a 12 MP camera-like JPEG, and to a cached one.

    .venv/bin/python bench/bench_thumbnails.py [--images 40] [--cached-repeat 20] [--out DIR]

For each corpus JPEG (4000x3000, quality 90, 3-6 MB; see bench_common.py), with the file in the page
cache and an empty thumbnail cache: `Thumbnailer.get(path, "normal")` (read, header check, 1/8-scale
DCT decode, EXIF orientation, 128 px resize, PNG encode, atomic write of the cache file), p50/p95
(target <= 40 ms); then the same call served from the cache (stat, read and check the cached PNG's
tEXt chunks), p50/p95 (target <= 3 ms). For scale, the decoder's floor: OpenCV's 1/8-scale decode of
the same bytes alone (`decoders.decode_reduced_only`), and the "large" (256 px) first thumbnail.

Prints the figures and writes them to OUT/bench_thumbnails.json. Not a pytest test.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import PIL
from bench_common import (
    BENCH_DIR,
    Summary,
    begin,
    finish,
    make_corpus,
    section,
    warm_page_cache,
)

from chromatica_watch.core.defaults import DEFAULT_MAX_PIXELS
from chromatica_watch.imaging.decoders import decode_reduced_only
from chromatica_watch.imaging.thumbnails import Thumbnailer

FIRST_TARGET_MS = 40.0
CACHED_TARGET_MS = 3.0


def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    if call() is None:
        raise RuntimeError("no thumbnail: the benchmark's own files must all thumbnail")
    return ms_since(started)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def report(label: str, values: Sequence[float], summary: Summary, target: float | None = None) -> None:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    goal = f"   (target <= {target:g} ms)" if target is not None else ""
    print(f"  {label:<44} p50 {p50:6.2f} ms   p95 {p95:6.2f} ms   n={len(values)}{goal}")
    for name, value in (("p50", p50), ("p95", p95)):
        if target is None:
            summary.add(f"{label} {name}", value, "ms")
        else:
            summary.add(f"{label} {name}", value, "ms", f"<= {target:g}", value <= target)


def bench(paths: Sequence[Path], cached_repeat: int, summary: Summary) -> None:
    first, cached, large, floor = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-thumbnails-") as tmp:
        thumbs = Thumbnailer(Path(tmp) / "thumbnails", DEFAULT_MAX_PIXELS)
        for p in paths:
            path = str(p)
            normal = functools.partial(thumbs.get, path, "normal")
            first.append(timed(normal))
            cached += [timed(normal) for _ in range(cached_repeat)]
            large.append(timed(functools.partial(thumbs.get, path, "large")))
            floor.append(timed(functools.partial(decode_reduced_only, p.read_bytes(), 128)))
    report("first thumbnail, normal (128 px)", first, summary, FIRST_TARGET_MS)
    report("cached thumbnail, normal (128 px)", cached, summary, CACHED_TARGET_MS)
    report("first thumbnail, large (256 px)", large, summary)
    report("decode floor: OpenCV 1/8-scale decode alone", floor, summary)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="corpus JPEGs to thumbnail (40)")
    parser.add_argument("--cached-repeat", type=int, default=20, help="cached calls per image (20)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out", help="corpus cache and results (bench/out)")
    args = parser.parse_args(argv)
    if min(args.images, args.cached_repeat) < 1:
        parser.error("counts must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary, started = begin("bench_thumbnails", {
        "python": platform.python_version(), "machine": platform.machine(), "pillow": PIL.__version__,
        "cores": len(os.sched_getaffinity(0)), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "images": args.images, "cached_repeat": args.cached_repeat})
    section(f"1. Corpus: {args.images} camera-like 12 MP JPEGs")
    paths = make_corpus(out, args.images)
    warm_page_cache(paths)
    section("2. Thumbnails (files in the page cache; empty thumbnail cache at first)")
    bench(paths, args.cached_repeat, summary)
    return finish(out, "bench_thumbnails", summary, started)


if __name__ == "__main__":
    sys.exit(main())
