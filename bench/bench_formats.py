"""Formats benchmark: images per second of `build` on 12-megapixel files of each format, in one run.

    .venv/bin/python bench/bench_formats.py [--images 16] [--workers 0] [--out DIR]

From the camera-like corpus (4000x3000 JPEGs, quality 90; see bench_common.py), the same pictures are
written by the libraries as HEIC (pillow-heif, quality 90; without and with the 320 px thumbnail a phone
embeds, which the decoder reads instead of the picture), AVIF (Pillow, quality 90, speed 8), DNG with
the corpus JPEG embedded as its full-size preview (tifffile; what a camera writes) and DNG without a
preview, both with their 12-bit RGGB sensor data in lossless-JPEG tiles as most DNGs store it
(imagecodecs), and kept beside the JPEGs. Each format's folder is then
indexed by `chromatica_watch.offline.build.build` into a fresh index (files in the page cache; all workers), best
of --repeat runs, the formats interleaved. Target: RAW with its preview at least 3x the images per second
of RAW through a half-size demosaic. For scale, the single-process decode time per file of each format.

Prints the figures and writes them to OUT/bench_formats.json. Not a pytest test.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import PIL
from bench_common import (
    BENCH_DIR,
    CORPUS_VERSION,
    MAX_DIMENSION,
    Summary,
    begin,
    finish,
    make_corpus,
    ratio_line,
    section,
    spawn_context,
    warm_page_cache,
    write_atomic,
)

sys.path.insert(0, str(BENCH_DIR.parent))  # tests.format_files: the writers the tests use

from chromatica_watch.core.defaults import available_cores
from chromatica_watch.imaging.decoders import limit_decoder_threads
from chromatica_watch.imaging.features import features
from chromatica_watch.offline.build import BuildOptions, build

RAW_SPEEDUP_TARGET = 3.0
FORMATS_VERSION = 1  # bump when a recipe below changes, so cached files are made again
# name -> (extension, how a corpus JPEG's bytes become that format's bytes)
FORMATS = ("jpeg", "heic", "heic-phone", "avif", "raw-preview", "raw-demosaic")
EXTENSIONS = {"jpeg": ".jpg", "heic": ".heic", "heic-phone": ".heic", "avif": ".avif", "raw-preview": ".dng",
              "raw-demosaic": ".dng"}
RECIPE = {"raw-preview": "ljpeg", "raw-demosaic": "ljpeg"}  # in the folder's name: a new recipe, new files


def _rgb(jpeg: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as im:
        return np.asarray(im.convert("RGB"))


def convert(fmt: str, jpeg: bytes) -> bytes:
    from tests import format_files as F

    if fmt == "jpeg":
        return jpeg
    rgb = _rgb(jpeg)
    if fmt == "heic":
        return F.heic(rgb, 90)
    if fmt == "heic-phone":  # with the 320 px thumbnail an iPhone embeds: read instead of the picture
        return F.heic(rgb, 90, thumbnail=320)
    if fmt == "avif":
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "AVIF", quality=90, speed=8)
        return buf.getvalue()
    if fmt == "raw-preview":
        return F.dng(rgb, preview=True, preview_jpeg=jpeg, lossless_jpeg=True)
    if fmt == "raw-demosaic":
        return F.dng(rgb, preview=False, lossless_jpeg=True)
    raise ValueError(fmt)


def _make(job: tuple[str, str, str]) -> int:
    fmt, src, dst = job
    data = convert(fmt, Path(src).read_bytes())
    write_atomic(Path(dst), data)
    return len(data)


def make_sets(out: Path, sources: Sequence[Path]) -> dict[str, list[Path]]:
    """Per format, a folder of the corpus pictures in that format (generated once, then cached)."""
    base = out / f"formats-v{FORMATS_VERSION}-corpus-v{CORPUS_VERSION}"
    sets, jobs = {}, []
    for fmt in FORMATS:
        folder = base / "-".join(filter(None, (fmt, RECIPE.get(fmt))))
        folder.mkdir(parents=True, exist_ok=True)
        sets[fmt] = [folder / f"{src.stem}{EXTENSIONS[fmt]}" for src in sources]
        jobs += [(fmt, str(src), str(dst)) for src, dst in zip(sources, sets[fmt], strict=True) if not dst.exists()]
    if jobs:
        started = time.monotonic()
        with ProcessPoolExecutor(available_cores(), mp_context=spawn_context()) as pool:
            list(pool.map(_make, jobs, chunksize=1))
        print(f"  generated {len(jobs)} files in {time.monotonic() - started:.1f} s")
    for fmt, paths in sets.items():
        size = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
        print(f"  {fmt:<13} {len(paths)} files, {size:5.1f} MB each on average")
    return sets


def build_rate(folder: Path, workers: int) -> tuple[float, float]:
    """(images/s, seconds) of one `build` of the folder into a fresh index; every file must index."""
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp:
        report = build(BuildOptions(dataset=folder, output=Path(tmp) / "index", workers=workers))
    if report.failures or report.indexed == 0:
        raise RuntimeError(f"{folder}: {report.failures[:3]}")
    return report.indexed / report.seconds, report.seconds


def decode_ms(paths: Sequence[Path], ext: str) -> float:
    """Median single-process time of features() on a file's bytes (in memory), in ms."""
    times = []
    for p in paths:
        data = p.read_bytes()
        started = time.perf_counter()
        features(data, MAX_DIMENSION, suffix=ext)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def bench(sets: dict[str, list[Path]], workers: int, repeat: int, summary: Summary) -> dict[str, float]:
    best: dict[str, float] = {}
    for run in range(repeat):
        for fmt in FORMATS:  # interleaved: a slow minute on a shared machine hits every format alike
            rate, seconds = build_rate(sets[fmt][0].parent, workers)
            print(f"  run {run + 1}: {fmt:<13} {rate:7.2f} images/s ({seconds:.2f} s)", flush=True)
            best[fmt] = max(best.get(fmt, 0.0), rate)
    section("Per format: best build rate, and one file's decode in one process")
    for fmt in FORMATS:
        ms = decode_ms(sets[fmt][:8], EXTENSIONS[fmt])
        print(f"  {fmt:<13} build {best[fmt]:7.2f} images/s   decode p50 {ms:7.1f} ms/file")
        summary.add(f"build {fmt} (12 MP)", best[fmt], "img/s")
        summary.add(f"decode {fmt} (12 MP, 1 process) p50", ms, "ms")
    ratio = best["raw-preview"] / best["raw-demosaic"]
    ratio_line("RAW with preview / RAW half-size demosaic (build images/s)", ratio, RAW_SPEEDUP_TARGET)
    summary.add("RAW preview speed-up over demosaic", ratio, "x", f">= {RAW_SPEEDUP_TARGET:g}",
                ratio >= RAW_SPEEDUP_TARGET)
    return best


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="12 MP pictures per format (16)")
    parser.add_argument("--workers", type=int, default=0, help="build workers (default: one per core)")
    parser.add_argument("--repeat", type=int, default=2, help="build runs per format, best kept (2)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out", help="corpus cache and results (bench/out)")
    parser.add_argument("--clean", action="store_true", help="make the format files again")
    args = parser.parse_args(argv)
    if min(args.images, args.repeat) < 1 or args.workers < 0:
        parser.error("--images and --repeat must be >= 1, --workers >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.clean:
        shutil.rmtree(out / f"formats-v{FORMATS_VERSION}-corpus-v{CORPUS_VERSION}", ignore_errors=True)
    workers = args.workers or available_cores()
    limit_decoder_threads()  # the one-process decode figures, as a worker decodes (before rawpy loads)
    import pillow_heif
    import rawpy

    summary, started = begin("bench_formats", {
        "python": platform.python_version(), "machine": platform.machine(), "pillow": PIL.__version__,
        "pillow_heif": pillow_heif.__version__, "rawpy": rawpy.__version__,
        "libraw": ".".join(map(str, rawpy.libraw_version)), "cores": len(os.sched_getaffinity(0)),
        "workers": workers, "images": args.images, "repeat": args.repeat,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()]})
    section(f"1. Corpus: {args.images} camera-like 12 MP JPEGs, and the same pictures in each format")
    sets = make_sets(out, make_corpus(out, args.images))
    for paths in sets.values():
        warm_page_cache(paths)
    section(f"2. build, {workers} workers, best of {args.repeat} (files in the page cache)")
    best = bench(sets, workers, args.repeat, summary)
    summary.details["best_images_per_second"] = {k: round(v, 2) for k, v in best.items()}
    return finish(out, "bench_formats", summary, started)


if __name__ == "__main__":
    sys.exit(main())
