"""Colour keywords in XMP sidecars (issue 25, 3): what writing them costs per photo, and that indexing with
keywords off pays nothing for them.

Sections:
- write: N photos' histograms (real photos, shifted in hue) -> main terms -> sidecar, timed per photo: the terms
  alone; a new sidecar; a merge into a sidecar ExifTool wrote first (keywords, a rating, a description); an
  unchanged one (read, parse, nothing written); and a removal. Each write is durable (fsync, rename, fsync of
  the folder), on the folder given by --dir (default: a temp folder on the disk the index would be on).
- off: the only code indexing runs with keywords = "off", the daemon's hook after each commit
  (`KeywordWriter.indexed`), timed per batch of 64 new rows beside one catalog commit of the same batch.

    flock /tmp/chromatica-bench.lock .venv/bin/python bench/bench_keywords.py [--photos 500] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import BENCH_DIR, begin, finish, section, source_photo

from chromatica_watch.colour.histogram import fingerprint, lab_histogram
from chromatica_watch.colour.terms import TERMS, main_terms
from chromatica_watch.core.config import Config
from chromatica_watch.core.records import Changes, NewImage
from chromatica_watch.imaging.lab import srgb_to_lab
from chromatica_watch.imaging.sidecars import remove_keywords, write_keywords
from chromatica_watch.storage.catalog import Catalog

BATCH = 64


def histograms(n: int) -> list[np.ndarray]:
    """n histograms of real photos, each photo's hue turned a little further (varied terms)."""
    out = []
    sources = [source_photo(name)[::8, ::8, ::-1] for name in ("astronaut", "coffee", "chelsea", "rocket")]
    for i in range(n):
        rgb = np.roll(sources[i % len(sources)], i % 3, axis=2)  # channel rotation: other colours
        lab = srgb_to_lab(np.ascontiguousarray(rgb)).reshape(-1, 3)
        out.append(lab_histogram(lab))
    return out


def per_photo_ms(fn, items: list) -> float:  # type: ignore[no-untyped-def,type-arg]
    started = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - started) * 1000 / max(1, len(items))


def bench_write(summary, folder: Path, hists: list[np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    section(f"write: {len(hists)} photos, sidecars in {folder}")
    terms = [[t for t, _ in main_terms(h)] for h in hists]
    n = len(hists)
    paths = [os.fsencode(folder / f"IMG_{i}.jpg.xmp") for i in range(n)]
    ms = per_photo_ms(lambda h: main_terms(h), hists)
    summary.add("main terms of a histogram", ms, "ms")
    ms = per_photo_ms(lambda i: write_keywords(paths[i], terms[i], TERMS), list(range(n)))
    summary.add("keywords to a new sidecar, per photo", ms, "ms")
    ms = per_photo_ms(lambda i: write_keywords(paths[i], terms[i], TERMS), list(range(n)))
    summary.add("keywords already there (read, parse, no write)", ms, "ms")
    for p in paths:
        os.unlink(p)
    for p in paths:
        subprocess.run(["exiftool", "-q", "-o", os.fsdecode(p), "-XMP-dc:Subject=holiday", "-XMP-xmp:Rating=4",
                        "-XMP-dc:Description=At the beach", "-XMP-digiKam:TagsList=People/Ann"], check=True)
    ms = per_photo_ms(lambda i: write_keywords(paths[i], terms[i], TERMS), list(range(n)))
    summary.add("keywords merged into an ExifTool sidecar, per photo", ms, "ms")
    ms = per_photo_ms(lambda i: remove_keywords(paths[i], TERMS), list(range(n)))
    summary.add("keywords removed, per photo", ms, "ms")
    for m, t in zip(("main terms", "new", "unchanged", "merged", "removed"), summary.checks[-5:], strict=True):
        print(f"  {m:<12} {t.value:8.3f} ms a photo")


def bench_off(summary, folder: Path, hists: list[np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    """The hook indexing runs with keywords off, beside the commit it follows."""
    from chromatica_watch.daemon.keywords import KeywordWriter

    section("off: the daemon's hook with keywords = \"off\", per batch of 64")
    batch = [NewImage("/r", f"p{i}.jpg".encode(), 1, 1, f"h{i}", 64, 48, hists[i % len(hists)]) for i in range(BATCH)]
    writer = KeywordWriter(Config(roots=(str(folder),)), store=None, commands=None,  # type: ignore[arg-type]
                           apply_changes=lambda _c: None, configured_roots=lambda: ())
    rounds = 20000
    started = time.perf_counter()
    for _ in range(rounds):
        writer.indexed(batch)
    hook_us = (time.perf_counter() - started) * 1e6 / rounds
    index_dir = folder / "index"
    index_dir.mkdir()
    with Catalog.open(index_dir, fingerprint(256)) as catalog:
        started = time.perf_counter()
        commits = 5
        for k in range(commits):
            rows = [NewImage("/r", f"b{k}-{i}.jpg".encode(), 1, 1, f"h{k}-{i}", 64, 48, a.histogram)
                    for i, a in enumerate(batch)]
            catalog.apply(Changes(added=rows))
        commit_us = (time.perf_counter() - started) * 1e6 / commits
    summary.add("hook with keywords off, per batch", hook_us, "us", "<= 1% of a commit", hook_us <= commit_us / 100)
    summary.add("catalog commit of the same batch", commit_us, "us")
    print(f"  hook {hook_us:.2f} us a batch; the batch's catalog commit {commit_us:.0f} us "
          f"({100 * hook_us / commit_us:.4f}%)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None, help="where the sidecars are written (a temp folder)")
    parser.add_argument("--sections", default="write,off")
    args = parser.parse_args()
    out = BENCH_DIR / "out"
    out.mkdir(exist_ok=True)
    summary, started = begin("bench_keywords", {"photos": args.photos, "cpus": os.cpu_count()})
    folder = Path(tempfile.mkdtemp(prefix="keywords-", dir=args.dir))
    try:
        hists = histograms(args.photos)
        if "write" in args.sections:
            bench_write(summary, folder, hists)
        if "off" in args.sections:
            bench_off(summary, folder, hists)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return finish(out, "bench_keywords", summary, started)


if __name__ == "__main__":
    sys.exit(main())
