"""Web app benchmark (issue 11): search, thumbnails, a page of results in Chromium, and the idle daemon's
CPU with the app open, at 100,000 indexed images, against a real `chromatica-watch run` daemon.

    flock /tmp/chromatica-bench.lock .venv/bin/python bench/bench_web.py [--n 100000] [--queries 200]
        [--corpus-files 600] [--page-repeats 5] [--warm-repeats 3] [--idle-seconds 60] [--out DIR]
        [--rebuild] [--prepare]

The data set (cached in OUT, default bench/out/web; `--rebuild` makes it again, `--prepare` only makes
it): `--n` catalog rows whose files are REAL 12 MP camera-like JPEGs, hard links of `--corpus-files`
bench_common corpus files (bench/out/corpus-..., generated when missing) under photos/dNNNN/img_NNNNNN.jpg,
each corpus file linked n/corpus-files times. Every row's size and mtime_ns are its link's stat (a hard
link shares the inode), so the daemon's startup reconcile finds every file unchanged and reads none.
The rows' histograms are bench_search's synthetic mixes of real-photo histograms (the pictures the
rows point to have other colours: that matters to no figure here). Building the HNSW graph takes
minutes; the index dir is built once, the daemon serves a fresh copy of it each run.

The daemon: `chromatica-watch run` with roots = [the links folder], web_port = 0, thumbnail_dir in
OUT/run, workers = 1. The app is reached as a browser does: the token URL from status.json's
"web_url", traded for the cookie by a 303; requests keep one connection alive.

1. Request floor (for scale): a static file over the keep-alive connection and over a new connection per
   request, and one catalog row (GET /api/images/<id>). Then search: `--queries` colour queries of 1-3
   weighted colours, k = 50 (a page), each sent over HTTP (GET /api/search) and over the Unix socket in
   turn; p50/p95 of both (target HTTP p95 <= 60 ms).
2. Thumbnails over HTTP (GET /thumbnails/<id>?size=normal) of ids the searches returned, the JPEGs in
   the page cache: first ones with an empty thumbnail cache (target p50 <= 40 ms, p95 shown), then the
   same ids again, served from the cache (target p50 <= 3 ms, p95 shown). Beside them, the same work
   in this process without HTTP: the catalog row lookup of each id and Thumbnailer.get first and cached.
3. A page of 50 results in headless Chromium (Debian's /usr/bin/chromium, Selenium): cold = a fresh
   browser profile and an empty thumbnail cache, the token URL opened with a colour query in its hash
   (the app runs the query at load); warm = in the same browser, the same URL opened again (after
   about:blank: a new document, thumbnails from the browser's cache), and the Search button clicked
   again on that page. Timed in the page: every result <img> complete with naturalWidth > 0, the time
   of the last one's load event (a capture listener installed before the page's scripts) from the
   navigation's start or the click; the wall clock seen from Python alongside. The viewport is tall
   enough for all 50 results to be in view, so no lazy <img> is left unloaded. Targets: cold median
   <= 1.5 s, warm (navigation) median <= 300 ms; every repeat printed. Then, for each repeat, another
   fresh browser profile opens the same page with the thumbnails already in the daemon's cache: what a
   person gets after the daemon indexed the photos (it makes their grid thumbnails as it indexes; this
   data set's rows were inserted, not indexed, so here the cold run before made them).
4. Idle CPU: CPU seconds of the daemon and its children over `--idle-seconds` with no browser, then
   the same with the app open in a Chromium tab showing results and otherwise idle (it polls
   /api/status every 2 s); cores used = CPU seconds / wall seconds (target <= 0.01 with the page open).

Other processes' load is sampled at the start and the end and before each part (bench_common); each
part first waits (bounded) for the machine to go quiet. Prints the figures, a PASS/FAIL summary, writes
OUT/bench_web.json and exits 1 when a target is missed. Not a pytest test.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import numpy as np
from bench_common import (
    BENCH_DIR,
    CLI,
    MAX_DIMENSION,
    Summary,
    begin,
    finish,
    make_corpus,
    section,
    stop_daemon,
    wait_until_quiet,
    warm_page_cache,
    warn_if_busy,
)

WEB_DATA_VERSION = 1  # bump when the data set's recipe changes, so a cached one is not reused
FILES_PER_FOLDER = 100
BATCH = 5000
PAGE_K = 50
WIDTH, HEIGHT = 1280, 2600  # tall enough for 50 results in view (checked: "in view" is printed)
UI_TIMEOUT_S = 30.0
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

SEARCH_P95_MS = 60.0
THUMB_FIRST_P50_MS = 40.0
THUMB_CACHED_P50_MS = 3.0
PAGE_COLD_MS = 1500.0
PAGE_WARM_MS = 300.0
IDLE_CORES = 0.01


# -- figures ------------------------------------------------------------------------------------

def stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"n": len(a), "p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2),
            "mean": round(float(a.mean()), 2), "min": round(float(a.min()), 2), "max": round(float(a.max()), 2)}


def line(label: str, s: dict[str, float], unit: str = "ms", goal: str = "") -> None:
    print(f"  {label:<50} p50 {s['p50']:8.2f} {unit}  p95 {s['p95']:8.2f} {unit}  "
          f"max {s['max']:8.2f} {unit}  n={s['n']}{goal}")


def gate(summary: Summary, figure: str, value: float, unit: str, target: float) -> None:
    summary.add(figure, value, unit, f"<= {target:g}", value <= target)


# -- the data set: hard links of real JPEGs, and a catalog + HNSW index of them -------------------

@dataclass(frozen=True)
class Dataset:
    folder: Path
    photos: Path  # the watched root
    index_dir: Path
    corpus: tuple[Path, ...]
    meta: dict[str, Any]


def _params(n: int, corpus_files: int) -> dict[str, Any]:
    return {"version": WEB_DATA_VERSION, "n": n, "corpus_files": corpus_files, "files_per_folder": FILES_PER_FOLDER}


def relpath(i: int) -> str:
    return f"d{i // FILES_PER_FOLDER:04d}/img_{i:06d}.jpg"


def ensure_dataset(out: Path, n: int, corpus_files: int, rebuild: bool) -> Dataset:
    from chromatica_watch.storage import index

    corpus = tuple(make_corpus(BENCH_DIR / "out", corpus_files))
    folder = out / f"web-{n}-c{corpus_files}-v{WEB_DATA_VERSION}"
    photos, index_dir, marker = folder / "photos", folder / "index", folder / "bench_build.json"
    if not rebuild and marker.exists():
        with contextlib.suppress(ValueError, OSError, index.CheckpointInvalid):
            meta = json.loads(marker.read_text())
            if (meta.get("params") == _params(n, corpus_files) and index.read_manifest(index_dir).vector_count == n
                    and _links_intact(photos, corpus, n)):
                return Dataset(folder, photos, index_dir, corpus, {**meta, "cached": True})
    shutil.rmtree(folder, ignore_errors=True)
    index_dir.mkdir(parents=True)
    print(f"  building the {n}-image data set in {folder} (cached for later runs)", flush=True)
    meta = {"params": _params(n, corpus_files), **build_dataset(photos, index_dir, corpus, n)}
    marker.write_text(json.dumps(meta, indent=2) + "\n")
    return Dataset(folder, photos, index_dir, corpus, {**meta, "cached": False})


def _links_intact(photos: Path, corpus: Sequence[Path], n: int) -> bool:
    """A sample of links still is the corpus file it was made from (same inode), and the last one exists."""
    for i in (*range(0, n, max(1, n // 97)), n - 1):
        a, b = os.stat(photos / relpath(i)), os.stat(corpus[i % len(corpus)])
        if (a.st_ino, a.st_dev) != (b.st_ino, b.st_dev):
            return False
    return True


def build_dataset(photos: Path, index_dir: Path, corpus: Sequence[Path], n: int) -> dict[str, Any]:
    from bench_search import base_histograms, dataset_batches

    from chromatica_watch.colour import histogram
    from chromatica_watch.core.hashing import hash_bytes
    from chromatica_watch.core.records import Changes, NewImage
    from chromatica_watch.storage import index
    from chromatica_watch.storage.catalog import Catalog

    started = time.perf_counter()
    t0 = time.perf_counter()
    for i in range(n):
        if i % FILES_PER_FOLDER == 0:
            (photos / relpath(i)).parent.mkdir(parents=True)
        os.link(corpus[i % len(corpus)], photos / relpath(i))  # EXDEV: OUT must be on the corpus's file system
    t_links = time.perf_counter() - t0
    # One stat and one hash per corpus file: its links share the inode (size, mtime) and the bytes.
    stat = [os.stat(p) for p in corpus]
    hashes = [hash_bytes(p.read_bytes()) for p in corpus]
    root = os.fsdecode(photos.resolve())
    base = base_histograms()
    fp = histogram.fingerprint(MAX_DIMENSION)
    index.configure_threads(index.default_threads())
    catalog = Catalog.open(index_dir, fp)
    live = index.LiveIndex()
    t_cat = t_hnsw = 0.0
    try:
        done = 0
        for hists in dataset_batches(base, n):
            t0 = time.perf_counter()
            rows = []
            for j, h in enumerate(hists):
                i = done + j
                c = i % len(corpus)
                rows.append(NewImage(root, relpath(i).encode(), stat[c].st_size, stat[c].st_mtime_ns, hashes[c],
                                     4000, 3000, h))
            ids = np.array(catalog.apply(Changes(added=rows)), dtype=np.int64)
            t_cat += time.perf_counter() - t0
            t0 = time.perf_counter()
            live.add(ids, hists)
            t_hnsw += time.perf_counter() - t0
            done += len(hists)
            print(f"  {done}/{n} rows, HNSW {done / t_hnsw:.0f} vectors/s, "
                  f"elapsed {time.perf_counter() - started:.0f} s", flush=True)
        t0 = time.perf_counter()
        live.checkpoint(index_dir, fp)
        t_ckpt = time.perf_counter() - t0
    finally:
        catalog.close()
    return {"links_s": round(t_links, 2), "catalog_insert_s": round(t_cat, 2), "hnsw_add_s": round(t_hnsw, 2),
            "checkpoint_s": round(t_ckpt, 2), "total_s": round(time.perf_counter() - started, 1),
            "root": root, "corpus_mb": round(sum(s.st_size for s in stat) / 1e6, 1)}


# -- the daemon ---------------------------------------------------------------------------------

@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    config: Path
    socket_path: Path
    state_dir: Path
    thumbnail_dir: Path
    web_url: str
    startup_s: float
    status: dict[str, Any]


def status_of(state_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((state_dir / "status.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}


@contextlib.contextmanager
def running_daemon(ds: Dataset, work: Path, n: int) -> Iterator[Daemon]:
    """`chromatica-watch run` watching the links folder, serving a fresh copy of the cached index dir."""
    from chromatica_watch.access.remote import daemon_available

    served, state, thumbs = work / "index", work / "state", work / "thumbnails"
    for d in (served, state, thumbs):
        shutil.rmtree(d, ignore_errors=True)
    t0 = time.perf_counter()
    shutil.copytree(ds.index_dir, served)
    os.sync()  # the copy's writeback must not run during the measurements
    print(f"  copied the index dir in {time.perf_counter() - t0:.1f} s")
    runtime = Path(tempfile.mkdtemp(prefix="cwb-web-", dir="/tmp"))  # Unix socket paths must stay short
    config = work / "daemon.toml"
    config.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in {
        "roots": [str(ds.photos.resolve())], "index_dir": str(served), "state_dir": str(state),
        "runtime_dir": str(runtime), "thumbnail_dir": str(thumbs), "workers": 1, "log_level": "WARNING",
        "web_port": 0}.items()) + "\n")
    sock = runtime / "chromatica-watch.sock"
    log_path = work / "daemon.log"
    log = log_path.open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen([CLI, "run", "--config", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 900
        while True:
            s = status_of(state)
            if (s.get("pid") == proc.pid and s.get("state") == "idle" and s.get("web_url")
                    and s.get("counts", {}).get("queued") == 0 and daemon_available(sock)):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not come up: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        startup = time.perf_counter() - started
        if s["counts"].get("indexed") != n:
            raise SystemExit(f"the daemon shows {s['counts']} indexed, not {n}: the data set is not what it serves")
        yield Daemon(proc, config, sock, state, thumbs, str(s["web_url"]), startup, s)
    finally:
        stop_daemon(proc)
        log.close()
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(served, ignore_errors=True)


def clear_thumbnails(daemon: Daemon) -> None:
    shutil.rmtree(daemon.thumbnail_dir, ignore_errors=True)  # the daemon makes its folders again as it writes


# -- HTTP -----------------------------------------------------------------------------------------

class WebClient:
    """One keep-alive connection to the app, with the cookie the token was traded for (as a browser)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token = parts.query.removeprefix("token=")
        self.conn = self._connect()
        self.reconnects = 0
        status, headers, _ = self.get(f"/?token={self.token}", cookie=False)
        if status != 303 or "set-cookie" not in headers:
            raise SystemExit(f"the token was not traded for a cookie: {status} {headers}")
        self.cookie = headers["set-cookie"].split(";")[0]

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def get(self, path: str, cookie: bool = True) -> tuple[int, dict[str, str], bytes]:
        for attempt in (0, 1):
            try:
                self.conn.request("GET", path, headers={"Cookie": self.cookie} if cookie else {})
                response = self.conn.getresponse()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if attempt:
                    raise
                self.conn.close()  # the server closed an idle keep-alive connection: open another
                self.conn = self._connect()
                self.reconnects += 1
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def new_connection_get(client: WebClient, path: str) -> float:
    """One request on a connection of its own (what the first request of a browser's connection sees)."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(client.host, client.port, timeout=60)
    try:
        conn.request("GET", path, headers={"Cookie": client.cookie})
        conn.getresponse().read()
    finally:
        conn.close()
    return (time.perf_counter() - t0) * 1000


def bench_floor(client: WebClient, image_id: int, repeat: int, summary: Summary) -> None:
    """What any request costs: a static file (no catalog, no decode) over the keep-alive connection and over
    a new connection each time, and one catalog row (GET /api/images/<id>, what a thumbnail looks up first)."""
    def keep_alive(path: str) -> float:
        t0 = time.perf_counter()
        status, _, _ = client.get(path)
        if status != 200:
            raise SystemExit(f"{path}: {status}")
        return (time.perf_counter() - t0) * 1000

    static = stats([keep_alive("/static/favicon.svg") for _ in range(repeat)])
    fresh = stats([new_connection_get(client, "/static/favicon.svg") for _ in range(repeat)])
    row = stats([keep_alive(f"/api/images/{image_id}") for _ in range(repeat)])
    line("static file, keep-alive connection", static)
    line("static file, a new connection per request", fresh)
    line("one catalog row (/api/images/<id>), keep-alive", row)
    if static["p50"] >= 35 > fresh["p50"]:
        print("  NOTE: every response on a reused connection waits ~40 ms: the head and body go out as two writes "
              "and the second waits for the client's delayed ACK (Nagle: TCP_NODELAY is not set on the app's "
              "connections; asyncio sets it only on sockets created with proto IPPROTO_TCP)")
    summary.details["request_floor"] = {"static_keep_alive_ms": static, "static_new_connection_ms": fresh,
                                        "catalog_row_keep_alive_ms": row}
    summary.add("request floor: static file, keep-alive p50", static["p50"], "ms")
    summary.add("request floor: static file, new connection p50", fresh["p50"], "ms")


# -- 1. search ------------------------------------------------------------------------------------

def color_specs(count: int, seed: int) -> list[list[str]]:
    """Colour queries of 1 to 3 random colours, as the app sends them ('#rrggbb[:weight]', weights in
    hundredths as its sliders give)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(1, 4))
        hexes = ["#{:02x}{:02x}{:02x}".format(*(int(c) for c in rng.integers(0, 256, 3))) for _ in range(n)]
        if n == 1:
            out.append(hexes)
            continue
        weights = np.maximum(1, np.rint(rng.dirichlet(np.ones(n)) * 100)).astype(int)
        out.append([f"{h}:{w / 100:g}" for h, w in zip(hexes, weights, strict=True)])
    return out


def search_path(specs: Sequence[str], k: int) -> str:
    return "/api/search?" + urlencode([*(("color", s) for s in specs), ("k", str(k))])


def bench_search(daemon: Daemon, client: WebClient, queries: Sequence[Sequence[str]], k: int, summary: Summary
                 ) -> list[int]:
    """Each query over HTTP then over the socket (interleaved: outside load hits both alike); returns the
    ids the HTTP answers found, in order of appearance."""
    from chromatica_watch.access.api import search_daemon
    from chromatica_watch.search.query import color_query_histogram, parse_colors

    hists = [color_query_histogram(parse_colors(list(q))) for q in queries]
    for q, h in zip(queries[:5], hists[:5], strict=True):  # warm-up
        client.get(search_path(q, k))
        search_daemon(daemon.socket_path, h, k)
    http_ms, sock_ms, agree, seen = [], [], 0, {}
    for q, h in zip(queries, hists, strict=True):
        t0 = time.perf_counter()
        status, _, body = client.get(search_path(q, k))
        http_ms.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise SystemExit(f"search {q} answered {status}: {body[:300]!r}")
        found = [int(r["id"]) for r in json.loads(body)]
        t0 = time.perf_counter()
        matches = search_daemon(daemon.socket_path, h, k)
        sock_ms.append((time.perf_counter() - t0) * 1000)
        agree += found == [m.id for m in matches]
        for i in found:
            seen.setdefault(i, None)
    h_s, s_s = stats(http_ms), stats(sock_ms)
    line(f"HTTP GET /api/search (k={k}, keep-alive)", h_s, goal=f"   (target p95 <= {SEARCH_P95_MS:g} ms)")
    line(f"Unix socket search (k={k}, same queries)", s_s)
    print(f"  HTTP / socket: p50 x{h_s['p50'] / s_s['p50']:.2f}, p95 x{h_s['p95'] / s_s['p95']:.2f}; HTTP overhead "
          f"p50 {h_s['p50'] - s_s['p50']:+.2f} ms; same ids from both: {agree}/{len(queries)}; "
          f"reconnects {client.reconnects}")
    summary.details["search"] = {"k": k, "queries": len(queries), "http_ms": h_s, "socket_ms": s_s,
                                 "same_ids": agree, "reconnects": client.reconnects}
    gate(summary, f"search over HTTP p95 (k={k})", h_s["p95"], "ms", SEARCH_P95_MS)
    summary.add("search over HTTP p50", h_s["p50"], "ms")
    summary.add("search over Unix socket p95 (same queries)", s_s["p95"], "ms")
    summary.add("search over Unix socket p50", s_s["p50"], "ms")
    return list(seen)


# -- 2. thumbnails over HTTP ----------------------------------------------------------------------

def in_process_thumbnails(ds: Dataset, ids: Sequence[int]) -> dict[str, dict[str, float]]:
    """The same work without HTTP, for scale: the catalog row lookup the app does per thumbnail (on the
    cached index dir, read-only: the daemon has its copy open), and Thumbnailer.get first and cached."""
    from chromatica_watch.core.defaults import DEFAULT_MAX_PIXELS
    from chromatica_watch.imaging.thumbnails import Thumbnailer
    from chromatica_watch.storage.catalog import Catalog

    lookup, first, cached = [], [], []
    with Catalog.open(ds.index_dir, None, read_only=True) as catalog:
        paths = []
        for i in ids:
            t0 = time.perf_counter()
            row = catalog.rows([i])[i]
            lookup.append((time.perf_counter() - t0) * 1000)
            paths.append(os.path.join(row.root, os.fsdecode(row.path)))
    with tempfile.TemporaryDirectory(prefix="bench-web-thumbs-") as tmp:
        thumbs = Thumbnailer(Path(tmp), DEFAULT_MAX_PIXELS)
        for p in paths:
            t0 = time.perf_counter()
            thumbs.get(p, "normal")
            first.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            thumbs.get(p, "normal")
            cached.append((time.perf_counter() - t0) * 1000)
    return {"catalog_row_ms": stats(lookup), "first_ms": stats(first), "cached_ms": stats(cached)}


def bench_thumbnails(daemon: Daemon, ds: Dataset, client: WebClient, ids: Sequence[int], cached_repeat: int,
                     summary: Summary) -> None:
    clear_thumbnails(daemon)
    first, cached, sizes = [], [], []

    def fetch(i: int) -> float:
        t0 = time.perf_counter()
        status, headers, body = client.get(f"/thumbnails/{i}?size=normal")
        ms = (time.perf_counter() - t0) * 1000
        if status != 200 or headers.get("content-type") != "image/png":
            raise SystemExit(f"thumbnail {i}: {status} {headers.get('content-type')} (a placeholder?)")
        sizes.append(len(body))
        return ms

    for i in ids:
        first.append(fetch(i))
    for _ in range(cached_repeat):
        cached += [fetch(i) for i in ids]
    made = len(list((daemon.thumbnail_dir / "normal").glob("*.png")))
    inproc = in_process_thumbnails(ds, ids)
    f_s, c_s = stats(first), stats(cached)
    line("first thumbnail, 12 MP JPEG -> 128 px PNG", f_s, goal=f"   (target p50 <= {THUMB_FIRST_P50_MS:g} ms)")
    line("cached thumbnail", c_s, goal=f"   (target p50 <= {THUMB_CACHED_P50_MS:g} ms)")
    print(f"  {len(ids)} ids, {made} thumbnails written to the cache, PNG {statistics.median(sizes) / 1024:.1f} KiB "
          f"median; first / cached p50 x{f_s['p50'] / c_s['p50']:.0f}")
    line("  in-process: catalog row of an id (read-only copy)", inproc["catalog_row_ms"])
    line("  in-process: Thumbnailer.get, first", inproc["first_ms"])
    line("  in-process: Thumbnailer.get, cached", inproc["cached_ms"])
    summary.details["thumbnails"] = {"ids": len(ids), "first_ms": f_s, "cached_ms": c_s, "cache_files": made,
                                     "in_process": inproc}
    gate(summary, "first thumbnail over HTTP p50", f_s["p50"], "ms", THUMB_FIRST_P50_MS)
    summary.add("first thumbnail over HTTP p95", f_s["p95"], "ms")
    gate(summary, "cached thumbnail over HTTP p50", c_s["p50"], "ms", THUMB_CACHED_P50_MS)
    summary.add("cached thumbnail over HTTP p95", c_s["p95"], "ms")


# -- 3. the page in Chromium ----------------------------------------------------------------------

# Installed before any of the page's scripts: the time of each thumbnail's load (load events do not
# bubble, but a capture listener on the document sees them), and any error.
RECORDER = """
(() => {
  const b = window.__bench = {errors: 0};
  const seen = (e) => {
    const t = e.target;
    if (!(t instanceof HTMLImageElement) || !t.classList.contains('thumb')) return;
    if (e.type === 'load') t.__loadedAt = performance.now(); else b.errors += 1;
  };
  document.addEventListener('load', seen, true);
  document.addEventListener('error', seen, true);
})();
"""

# Resolves when `want` fresh result <img>s (not marked __old) are all complete with naturalWidth > 0.
WAIT_LOADED = """
const [want, timeoutMs, since] = arguments;
const done = arguments[arguments.length - 1];
const started = performance.now();
const fresh = () => [...document.querySelectorAll('#results img.thumb')].filter((i) => !i.__old);
const check = () => {
  const imgs = fresh();
  const ok = imgs.filter((i) => i.complete && i.naturalWidth > 0 && i.__loadedAt !== undefined);
  if (imgs.length >= want && ok.length === imgs.length) {
    const res = performance.getEntriesByType('resource');
    const search = res.filter((r) => r.name.includes('/api/search')).pop();
    const thumbs = res.filter((r) => r.name.includes('/thumbnails/') && r.startTime >= since);
    const nav = performance.getEntriesByType('navigation')[0];
    done({ok: true, n: imgs.length, done_ms: Math.max(...imgs.map((i) => i.__loadedAt)) - since,
          in_view: imgs.filter((i) => i.getBoundingClientRect().bottom <= innerHeight).length,
          placeholders: imgs.filter((i) => i.src.endsWith('placeholder.svg')).length,
          errors: window.__bench ? window.__bench.errors : -1, visibility: document.visibilityState,
          dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd - since : null,
          search_start_ms: search ? search.startTime - since : null,
          search_end_ms: search ? search.responseEnd - since : null,
          thumbs_fetched: thumbs.length, thumbs_from_cache: thumbs.filter((r) => r.transferSize === 0).length,
          thumbs_first_start_ms: thumbs.length ? Math.min(...thumbs.map((r) => r.startTime)) - since : null,
          thumbs_last_end_ms: thumbs.length ? Math.max(...thumbs.map((r) => r.responseEnd)) - since : null,
          summary: document.getElementById('summary').textContent});
    return;
  }
  if (performance.now() - started > timeoutMs) {
    done({ok: false, n: imgs.length, loaded: ok.length, errors: window.__bench ? window.__bench.errors : -1,
          summary: document.getElementById('summary').textContent});
    return;
  }
  setTimeout(check, 4);
};
check();
"""

CLICK_SEARCH = """
document.querySelectorAll('#results img.thumb').forEach((i) => { i.__old = true; });
const t = performance.now();
document.getElementById('search').click();
return t;
"""


def page_hash(specs: Sequence[str], k: int) -> str:
    """The app's own spelling of a colour query in the URL hash (it restores and runs it at load)."""
    return "#" + urlencode([*(("color", s) for s in specs), ("k", str(k))], quote_via=quote)


class Browser:
    def __init__(self, profile: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        shutil.rmtree(profile, ignore_errors=True)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1",
                    f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}"):
            options.add_argument(arg)
        self.profile = profile
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.driver.set_page_load_timeout(UI_TIMEOUT_S)
        self.driver.set_script_timeout(UI_TIMEOUT_S + 5)
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})

    def navigate(self, url: str, want: int) -> dict[str, Any]:
        """Open `url` (a query in its hash) and wait for its results' thumbnails; times from the navigation."""
        t0 = time.perf_counter()
        self.driver.get(url)
        got = self.driver.execute_async_script(WAIT_LOADED, want, UI_TIMEOUT_S * 1000, 0)
        got["wall_ms"] = (time.perf_counter() - t0) * 1000
        return dict(got)

    def click_search(self, want: int) -> dict[str, Any]:
        """Click Search on the open page (its query again) and wait for the new results' thumbnails."""
        t0 = time.perf_counter()
        since = self.driver.execute_script(CLICK_SEARCH)
        got = self.driver.execute_async_script(WAIT_LOADED, want, UI_TIMEOUT_S * 1000, since)
        got["wall_ms"] = (time.perf_counter() - t0) * 1000
        return dict(got)

    def quit(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)


def _checked(kind: str, r: dict[str, Any]) -> dict[str, Any]:
    if not r.get("ok") or r.get("errors") or r.get("placeholders"):
        raise SystemExit(f"{kind} page did not load all its thumbnails: {r}")
    return r


def _row(label: str, r: dict[str, Any]) -> None:
    def f(key: str) -> str:
        v = r.get(key)
        return "   -  " if v is None else f"{v:6.0f}"
    print(f"  {label:<22} {r['done_ms']:7.0f} ms in page  {r['wall_ms']:7.0f} ms wall | "
          f"DOMContentLoaded {f('dom_content_loaded_ms')}"
          f"  search {f('search_start_ms')}->{f('search_end_ms')}  thumbnails {r['thumbs_fetched']:2d} "
          f"({r['thumbs_from_cache']:2d} from cache) "
          f"{f('thumbs_first_start_ms')}->{f('thumbs_last_end_ms')} ms | {r['in_view']}/{r['n']} in view")


def bench_page(daemon: Daemon, work: Path, queries: Sequence[Sequence[str]], repeats: int, warm_repeats: int,
               summary: Summary) -> None:
    base = daemon.web_url.split("/?", 1)[0]
    cold, warm_nav, warm_click, cold_made = [], [], [], []
    for n in range(repeats):
        specs = queries[n % len(queries)]
        clear_thumbnails(daemon)
        wait_until_quiet(10)
        browser = Browser(work / f"chromium-profile-{n}")
        try:
            # Cold: a browser that never saw the app opens its link (the token URL) with the query.
            r = _checked("cold", browser.navigate(daemon.web_url + page_hash(specs, PAGE_K), PAGE_K))
            cold.append(r)
            _row(f"cold #{n + 1}", r)
            for m in range(warm_repeats):
                browser.driver.get("about:blank")
                r = _checked("warm", browser.navigate(base + "/" + page_hash(specs, PAGE_K), PAGE_K))
                warm_nav.append(r)
                _row(f"  warm, reopened #{m + 1}", r)
            for m in range(warm_repeats):
                r = _checked("warm click", browser.click_search(PAGE_K))
                warm_click.append(r)
                _row(f"  warm, Search again #{m + 1}", r)
            visibility = r.get("visibility")
        finally:
            browser.quit()
        # A browser that never saw the app, the thumbnails already in the daemon's cache: what a person
        # gets once the daemon has indexed the photos (it makes their grid thumbnails as it indexes).
        fresh = Browser(work / f"chromium-profile-{n}-made")
        try:
            r = _checked("cold, thumbnails made", fresh.navigate(daemon.web_url + page_hash(specs, PAGE_K), PAGE_K))
            cold_made.append(r)
            _row("  cold browser, thumbnails made while indexing", r)
        finally:
            fresh.quit()
    c, w, k, m = (stats([r["done_ms"] for r in rs]) for rs in (cold, warm_nav, warm_click, cold_made))
    cw, ww = (stats([r["wall_ms"] for r in rs]) for rs in (cold, warm_nav))
    print(f"  viewport {WIDTH}x{HEIGHT}, k={PAGE_K}, page visibility {visibility!r}")
    line("cold page: 50 thumbnails loaded (in page)", c, goal=f"   (target median <= {PAGE_COLD_MS:g} ms)")
    line("cold page, wall clock from Python", cw)
    line("cold browser, thumbnails made while indexing", m)
    line("warm page reopened: loaded (in page)", w, goal=f"   (target median <= {PAGE_WARM_MS:g} ms)")
    line("warm page reopened, wall clock from Python", ww)
    line("warm, Search clicked again: loaded (in page)", k)
    print(f"  cold / warm (reopened) median x{c['p50'] / w['p50']:.1f}; cold: search answered at "
          f"{statistics.median(r['search_end_ms'] for r in cold):.0f} ms median, last thumbnail byte at "
          f"{statistics.median(r['thumbs_last_end_ms'] for r in cold):.0f} ms")
    summary.details["page"] = {"viewport": [WIDTH, HEIGHT], "k": PAGE_K, "cold": cold, "warm_reopened": warm_nav,
                               "warm_search_again": warm_click, "cold_ms": c, "warm_reopened_ms": w,
                               "warm_search_again_ms": k, "cold_browser_thumbnails_made": cold_made,
                               "cold_browser_thumbnails_made_ms": m}
    gate(summary, "page of 50, cold (median of repeats)", c["p50"], "ms", PAGE_COLD_MS)
    summary.add("page of 50, cold (worst repeat)", c["max"], "ms")
    summary.add("page of 50, cold browser, thumbnails made while indexing (median)", m["p50"], "ms")
    gate(summary, "page of 50, warm reopened (median)", w["p50"], "ms", PAGE_WARM_MS)
    summary.add("page of 50, warm reopened (worst)", w["max"], "ms")
    summary.add("page of 50, warm Search again (median)", k["p50"], "ms")


# -- 4. idle CPU ------------------------------------------------------------------------------------

def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of a process and each of its live descendants (plus the children it has reaped)."""
    import psutil

    root = psutil.Process(pid)
    out: dict[int, float] = {}
    for p in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            out[p.pid] = t.user + t.system + (t.children_user + t.children_system if p.pid == pid else 0.0)
    return out


def idle_cpu(daemon: Daemon, seconds: float) -> dict[str, float]:
    before = tree_cpu(daemon.proc.pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    after = tree_cpu(daemon.proc.pid)
    wall = time.monotonic() - t0
    cpu = sum(v - before.get(pid, 0.0) for pid, v in after.items())
    return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 1), "cores": round(cpu / wall, 5),
            "processes": len(after)}


def bench_idle(daemon: Daemon, work: Path, specs: Sequence[str], seconds: float, summary: Summary) -> None:
    wait_until_quiet(15)
    alone = idle_cpu(daemon, seconds)
    print(f"  no browser:        daemon + children {alone['cpu_s']:.3f} CPU s over {alone['wall_s']:.0f} s = "
          f"{alone['cores']:.4f} cores ({alone['processes']} processes)")
    browser = Browser(work / "chromium-profile-idle")
    try:
        _checked("idle", browser.navigate(daemon.web_url + page_hash(specs, PAGE_K), PAGE_K))
        time.sleep(3)  # let the page settle: results shown, status polled
        browser.driver.execute_script("performance.clearResourceTimings();")
        with_page = idle_cpu(daemon, seconds)
        polls = browser.driver.execute_script(
            "return performance.getEntriesByType('resource').filter((r) => r.name.includes('/api/status')).length;")
        visibility = browser.driver.execute_script("return document.visibilityState;")
    finally:
        browser.quit()
    with_page["status_polls"] = polls
    print(f"  app open and idle: daemon + children {with_page['cpu_s']:.3f} CPU s over {with_page['wall_s']:.0f} s = "
          f"{with_page['cores']:.4f} cores; the page polled /api/status {polls} times (visibility {visibility!r})"
          f"   (target <= {IDLE_CORES:g} cores)")
    per_poll = (with_page["cpu_s"] - alone["cpu_s"]) / polls * 1000 if polls else float("nan")
    print(f"  difference {with_page['cores'] - alone['cores']:+.4f} cores = {per_poll:.2f} ms of daemon CPU per poll")
    summary.details["idle"] = {"no_browser": alone, "app_open": with_page, "visibility": visibility}
    # In % of one core: the summary rounds to 2 decimals, too coarse for cores near 0.01.
    gate(summary, "idle daemon CPU, app open in a tab", with_page["cores"] * 100, "% core", IDLE_CORES * 100)
    summary.add("idle daemon CPU, no browser", alone["cores"] * 100, "% core")


# -- main -------------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="indexed images (100000)")
    parser.add_argument("--corpus-files", type=int, default=600, help="distinct 12 MP JPEGs linked (600)")
    parser.add_argument("--queries", type=int, default=200, help="colour queries timed over HTTP and socket (200)")
    parser.add_argument("--thumbnails", type=int, default=100, help="ids whose thumbnails are timed (100)")
    parser.add_argument("--cached-repeat", type=int, default=5, help="cached fetches per id (5)")
    parser.add_argument("--page-repeats", type=int, default=5, help="cold page loads, each a fresh browser (5)")
    parser.add_argument("--warm-repeats", type=int, default=3, help="warm loads after each cold one, of each kind (3)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="each idle CPU window (60)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out" / "web", help="cache and results (bench/out/web)")
    parser.add_argument("--rebuild", action="store_true", help="make the cached data set again")
    parser.add_argument("--prepare", action="store_true", help="only make (or check) the cached data set")
    args = parser.parse_args(argv)
    if min(args.n, args.corpus_files, args.queries, args.thumbnails, args.cached_repeat, args.page_repeats,
           args.warm_repeats) < 1 or args.idle_seconds <= 0:
        parser.error("counts and seconds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary, started = begin("bench_web", {
        "python": platform.python_version(), "machine": platform.machine(),
        "cores": len(os.sched_getaffinity(0)), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "chromium": subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip(),
        **{k: v for k, v in vars(args).items() if k not in ("out", "rebuild", "prepare")}})

    section(f"0. Data set: {args.n} rows, hard links of {args.corpus_files} camera-like 12 MP JPEGs")
    ds = ensure_dataset(out, args.n, args.corpus_files, args.rebuild)
    print(f"  {'cached' if ds.meta['cached'] else 'built now'}: {ds.folder} ({json.dumps(ds.meta)})")
    summary.details["dataset"] = {"folder": str(ds.folder), **ds.meta}
    if args.prepare:
        return 0
    t0 = time.perf_counter()
    warm_page_cache(ds.corpus)
    print(f"  read the {len(ds.corpus)} corpus JPEGs into the page cache in {time.perf_counter() - t0:.1f} s")

    work = out / "run"
    work.mkdir(exist_ok=True)
    queries = color_specs(args.queries, seed=3)
    page_queries = color_specs(args.page_repeats + 1, seed=4)
    with running_daemon(ds, work, args.n) as daemon:
        print(f"  daemon up and idle in {daemon.startup_s:.1f} s (copy excluded): {daemon.status['counts']}, "
              f"app at {daemon.web_url.split('?')[0]}")
        summary.details["daemon_startup_s"] = round(daemon.startup_s, 1)
        summary.details["daemon_counts"] = daemon.status["counts"]
        client = WebClient(daemon.web_url)
        try:
            section("1a. Request floor: what any request costs before its own work")
            wait_until_quiet(30)
            bench_floor(client, 1, 30, summary)
            section(f"1b. Search: {args.queries} colour queries of 1-3 colours, HTTP and Unix socket in turn")
            wait_until_quiet(30)
            warn_if_busy("before the searches", summary)
            ids = bench_search(daemon, client, queries, PAGE_K, summary)

            section(f"2. Thumbnails over HTTP: {args.thumbnails} result ids, first (empty cache) then cached")
            wait_until_quiet(30)
            bench_thumbnails(daemon, ds, client, ids[:args.thumbnails], args.cached_repeat, summary)
        finally:
            client.close()

        section(f"3. A page of {PAGE_K} results in headless Chromium: cold x{args.page_repeats}, "
                f"warm x{args.warm_repeats} each")
        warn_if_busy("before the page loads", summary)
        bench_page(daemon, work, page_queries[:args.page_repeats], args.page_repeats, args.warm_repeats, summary)

        section(f"4. Idle daemon CPU over {args.idle_seconds:g} s: no browser, then the app open in a tab")
        bench_idle(daemon, work, page_queries[-1], args.idle_seconds, summary)

    return finish(out, "bench_web", summary, started)


if __name__ == "__main__":
    sys.exit(main())
