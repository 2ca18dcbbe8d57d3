"""The colour wall and the library's palette at a million photos (issue 25): their first answer through the
daemon's web app, <= 1 s each.

bench_contain's data set (1,000,000 photos with dates, cameras and folders), one daemon on it, its web app
asked as the browser asks it (cookie from the token, then GET): the wall's first page (120 tiles) of the whole
library, of a folder glob keeping ~10% and of a date range; a page deep in the wall; the palette of the library,
of the 10% folder and of a year. The first request after the daemon is up is timed apart from the next ones
(p50, p95 over 20); before them, the first screen as a browser shows it: the first page and the 45
thumbnails in view, made on demand (the data set was built offline: none made yet), then again with them
made, as the daemon makes them while indexing (`thumbnails_while_indexing`, the default). Then, in-process, what
keeps the wall ordered as photos are indexed: the order's full sort at load against merging 1,000 new rows.

    flock /tmp/chromatica-bench.lock .venv/bin/python bench/bench_wall.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
from bench_common import BENCH_DIR, begin, finish, section
from bench_contain import CONTAIN_VERSION, PCA_FROM
from bench_million import Runs, ensure_dataset, percentiles
from bench_search import base_histograms, mixes
from contain_queries import library

TARGET_S = 1.0
REPEATS = 20
SCREEN = 45  # tiles in a 1280 x 900 window


def opener(url: str) -> tuple[urllib.request.OpenerDirector, str]:
    """A client holding the app's cookie (the token traded as the browser trades it), and the app's base URL."""
    client = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    client.open(url, timeout=60).read()
    return client, url.split("/?", 1)[0]


def timed(client: urllib.request.OpenerDirector, url: str) -> tuple[float, Any]:
    started = time.perf_counter()
    with client.open(url, timeout=120) as response:
        body = json.loads(response.read())
    return time.perf_counter() - started, body


def web_figures(client: urllib.request.OpenerDirector, base: str, asks: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, path in asks.items():
        first, body = timed(client, base + path)
        times = [timed(client, base + path)[0] * 1000 for _ in range(REPEATS)]
        size = len(body["tiles"]) if "tiles" in body else len(body["swatches"])
        total = body.get("total", body.get("photos"))
        out[label] = {"first_s": first, **percentiles(times), "items": size, "of": total}
        print(f"  {label:<34} first {first * 1000:8.1f} ms   then p50 {out[label]['p50']:7.1f} ms  "
              f"p95 {out[label]['p95']:7.1f} ms   {size} items of {total}", flush=True)
    return out


def first_screen(client: urllib.request.OpenerDirector, base: str) -> dict[str, float]:
    """What a browser does to show the wall's first screen: its first page, then the thumbnails in view
    (SCREEN tiles, six at a time as Chromium fetches from one host), none of them made yet."""
    started = time.perf_counter()
    _, page = timed(client, base + "/api/wall?limit=120")
    listed = time.perf_counter() - started

    def fetch(url: str) -> int:
        with client.open(base + url, timeout=120) as response:
            return len(response.read())

    urls = [t["thumbnail"] for t in page["tiles"][:SCREEN]]
    with ThreadPoolExecutor(6) as pool:
        sizes = list(pool.map(fetch, urls))
        cold = time.perf_counter() - started
        started = time.perf_counter()
        _, page = timed(client, base + "/api/wall?limit=120")
        list(pool.map(fetch, urls))
        warm = time.perf_counter() - started
    print(f"  first screen: page {listed * 1000:.0f} ms, then {len(sizes)} thumbnails made now: shown in "
          f"{cold * 1000:.0f} ms; with the thumbnails made (as the daemon makes them while indexing): "
          f"{warm * 1000:.0f} ms", flush=True)
    return {"page_s": listed, "screen_cold_s": cold, "screen_s": warm, "thumbnails": len(sizes)}


def order_figures(n: int) -> dict[str, float]:
    """The wall's order for n photos: a full sort (at load) against merging 1,000 new rows (as indexed)."""
    from chromatica_watch.colour import arrange

    rng = np.random.default_rng(3)
    bins = rng.integers(0, 1152, (16, n)).astype(np.uint16)
    shares = rng.integers(0, 40, (16, n)).astype(np.uint8)
    arrange.wall_keys(bins[:, :10], shares[:, :10], np.zeros(10, bool))  # compiled (or loaded from the cache)
    started = time.perf_counter()
    keys = arrange.wall_keys(bins, shares, np.zeros(n, bool))
    keyed = time.perf_counter() - started
    started = time.perf_counter()
    order = arrange.full_order(keys[:n - 1000])
    sorted_s = time.perf_counter() - started
    started = time.perf_counter()
    merged = arrange.insert_ordered(order, keys, np.arange(n - 1000, n))
    merged_s = time.perf_counter() - started
    assert np.array_equal(merged, arrange.full_order(keys))
    print(f"  keys of {n:,} photos {keyed * 1000:.0f} ms; full sort {sorted_s * 1000:.0f} ms; "
          f"1,000 new rows merged in {merged_s * 1000:.1f} ms ({sorted_s / merged_s:.0f}x less than a sort)")
    return {"keys_ms": keyed * 1000, "sort_ms": sorted_s * 1000, "merge_1000_ms": merged_s * 1000}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--corpus-files", type=int, default=600)
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    args = ap.parse_args(argv)
    summary, started_at = begin("bench_wall", {"n": args.n})
    data = args.out / "contain"
    data.mkdir(parents=True, exist_ok=True)
    lib = library(args.n)
    from chromatica_watch.colour import contain

    ds = ensure_dataset(data, args.n, args.corpus_files, {"pca": PCA_FROM}, False, lib.details,
                        name=f"contain-v{CONTAIN_VERSION}-p{contain.PALETTE_BYTES}")
    root = str(ds.photos.resolve())
    tenth = urlencode({"in": f"{root}/d0*"})
    year = urlencode({"taken_after": "2019", "taken_before": "2020"})
    asks = {
        "wall, first page, library": "/api/wall?limit=120",
        "wall, first page, folders (10%)": f"/api/wall?limit=120&{tenth}",
        "wall, first page, a year": f"/api/wall?limit=120&{year}",
        "wall, a page half way down": f"/api/wall?limit=120&start={args.n // 2}",
        "palette, library": "/api/palette",
        "palette, folders (10%)": f"/api/palette?{tenth}",
        "palette, a year": f"/api/palette?{year}",
    }
    section(f"1. Through the daemon's web app, {args.n:,} photos")
    runs = Runs(data / f"wall-{args.n}", ds.photos, ds.index_dirs["pca"], PCA_FROM)
    rows: dict[str, Any] = {}
    try:
        with runs.daemon(mixes(base_histograms(), 1, np.random.default_rng(9))[0]) as d:
            print(f"  ready in {d.ready_s:.1f} s", flush=True)
            runs.wait_idle(d)
            status = json.loads((runs.work / "state" / "status.json").read_text())
            client, base = opener(status["web_url"])
            rows["screen"] = first_screen(client, base)
            rows["web"] = web_figures(client, base, asks)
    finally:
        runs.close()
    section("2. The wall's order as photos are indexed (in-process)")
    rows["order"] = order_figures(args.n)
    summary.details["run"] = rows
    screen = rows["screen"]["screen_s"]
    summary.add("wall, first screen with its thumbnails", screen, "s", f"<= {TARGET_S:g}", screen <= TARGET_S)
    summary.add("  the same, no thumbnail made yet", rows["screen"]["screen_cold_s"], "s", "info")
    for label, figures in rows["web"].items():
        summary.add(f"{label}, first", figures["first_s"], "s", f"<= {TARGET_S:g}", figures["first_s"] <= TARGET_S)
        summary.add(f"{label}, p95", figures["p95"] / 1000, "s", f"<= {TARGET_S:g}", figures["p95"] / 1000 <= TARGET_S)
    return finish(args.out, "bench_wall", summary, started_at)


if __name__ == "__main__":
    raise SystemExit(main())
