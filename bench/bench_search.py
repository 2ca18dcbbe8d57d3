"""Search benchmark: latency of ANN + EMD rerank at 100,000 images, and the rerank against POT.

    .venv/bin/python bench/bench_search.py [--n 100000] [--queries 200] [--pot-queries 3]
                                           [--pot-timed 5] [--out DIR] [--rebuild]

1. An index directory of `--n` histograms (Catalog + LiveIndex + checkpoint, the daemon's layout),
   synthetic but made from real photos: histograms of crops, hue shifts and brightness changes of
   the photos scikit-image ships, mixed 2 to 4 at a time. Building the HNSW graph is the slow part
   (minutes at 100k on 2 cores); it is measured once and the directory is cached in OUT, so reruns
   start at step 2. `--rebuild` forces a new one; a smaller `--n` (e.g. 20000) gives a quick run.
2. Search latency in-process through `Searcher` (K=200 candidates, rerank, top 10), p50/p95, with the
   time of each stage. Then the same colour queries end to end through a real daemon
   (`chromatica-watch run` on a copy of the index): over its Unix socket (client JSON included;
   target p95 <= 50 ms), and as whole `chromatica-watch search` processes with the daemon running
   and without it (each opens the index read-only). `--cli-queries 0` skips this part.
3. The rerank against a full 1152 x 1152 Sinkhorn per candidate with POT (`ot.sinkhorn2`, reg 2 delta
   E, POT's default 1000 iterations) on the same 200 candidates: speed ratio (target >= 20x) and
   top-10 agreement (target >= 0.9). Exact EMD (POT's network simplex `ot.emd2`) is the ground truth
   both are also compared with. POT is a benchmark-only dependency: `.venv/bin/pip install pot`.
   `--pot-queries` (default 3) bounds this part: each query costs about a minute of Sinkhorn.

Prints the figures and writes them to OUT/bench_search.json. Not a pytest test.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from bench_common import BENCH_DIR, CLI, MAX_DIMENSION, stop_daemon
from skimage import data

from chromatica_watch.access.api import search_daemon
from chromatica_watch.access.remote import daemon_available
from chromatica_watch.colour import histogram, rerank
from chromatica_watch.core import config as config_mod
from chromatica_watch.core.records import Changes, NewImage
from chromatica_watch.imaging.lab import srgb_to_lab
from chromatica_watch.search.query import ColorWeight, color_query_histogram, parse_colors
from chromatica_watch.search.readonly import open_readonly
from chromatica_watch.search.searcher import Searcher
from chromatica_watch.storage import index
from chromatica_watch.storage.catalog import Catalog

DATASET_VERSION = 1  # bump when the recipe below changes, so a cached index is not reused
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "cat", "colorwheel", "camera", "coins", "page", "logo", "brick", "grass", "gravel")
VARIANTS_PER_PHOTO = 60
BATCH = 5000
K_CANDIDATES = 200
K = 10
POT_REG = 2.0  # delta E: the entropic blur of the reference Sinkhorn
TARGET_RATIO = 20.0
TARGET_AGREEMENT = 0.9
TARGET_SOCKET_P95_MS = 50.0


# -- data ---------------------------------------------------------------------------------------

def _photo(name: str) -> np.ndarray | None:
    try:
        img = getattr(data, name)()
    except Exception:  # some need optional downloads (pooch): skip those
        return None
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=2)
    img = img[:, :, :3]
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8) if img.dtype.kind == "f" else img.astype(np.uint8)
    return np.ascontiguousarray(img)


def base_histograms(seed: int = 0) -> np.ndarray:
    """Histograms of crops of real photos, hue-rotated and brightness-scaled at random."""
    rng = np.random.default_rng(seed)
    out = []
    for name in PHOTOS:
        img = _photo(name)
        if img is None:
            continue
        scale = 256 / max(img.shape[:2])
        img = cv2.resize(img, (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        for _ in range(VARIANTS_PER_PHOTO):
            ch, cw = rng.integers(h // 4, h + 1), rng.integers(w // 4, w + 1)
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            crop = img[y:y + ch, x:x + cw]
            hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV).astype(np.int32)
            if rng.random() < 0.6:
                hsv[..., 0] = (hsv[..., 0] + rng.integers(0, 180)) % 180
            hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.6, 1.3), 0, 255)
            crop = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
            out.append(histogram.lab_histogram(srgb_to_lab(crop)))
    return np.stack(out)


def mixes(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n histograms, each a random convex mix of 2 to 4 base histograms."""
    parts = rng.integers(2, 5, n)
    out = np.empty((n, histogram.TOTAL_BINS), np.float32)
    for i, k in enumerate(parts):
        out[i] = rng.dirichlet(np.ones(k)) @ base[rng.choice(len(base), k, replace=False)]
    return out / out.sum(axis=1, keepdims=True)


def dataset_batches(base: np.ndarray, n: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(1)
    for start in range(0, n, BATCH):
        yield mixes(base, min(BATCH, n - start), rng)


def make_queries(base: np.ndarray, count: int) -> list[tuple[str, np.ndarray]]:
    """Half held-out mixes (like an example image), half colour queries of 1 to 3 colours."""
    rng = np.random.default_rng(2)
    queries: list[tuple[str, np.ndarray]] = []
    for i in range(count):
        if i % 2 == 0:
            queries.append(("image", mixes(base, 1, rng)[0]))
        else:
            n = int(rng.integers(1, 4))
            colors = [ColorWeight(tuple(int(c) for c in rng.integers(0, 256, 3)), float(w))  # type: ignore[arg-type]
                      for w in rng.dirichlet(np.ones(n))]
            queries.append(("color", color_query_histogram(colors)))
    return queries


# -- the index directory ------------------------------------------------------------------------

def build_index(index_dir: Path, base: np.ndarray, n: int) -> dict[str, float]:
    fp = histogram.fingerprint(MAX_DIMENSION)
    index.configure_threads(index.default_threads())
    catalog = Catalog.open(index_dir, fp)
    live = index.LiveIndex()
    t_gen = t_cat = t_hnsw = 0.0
    try:
        started = time.perf_counter()
        batches = dataset_batches(base, n)
        done = 0
        while True:
            t0 = time.perf_counter()
            hists = next(batches, None)
            t_gen += time.perf_counter() - t0
            if hists is None:
                break
            t0 = time.perf_counter()
            rows = [NewImage("/bench/pictures", f"synthetic/{done + i:07d}.jpg".encode(), 1000, 1, f"h{done + i}",
                             640, 480, h) for i, h in enumerate(hists)]
            ids = np.array(catalog.apply(Changes(added=rows)), dtype=np.int64)
            t_cat += time.perf_counter() - t0
            t0 = time.perf_counter()
            live.add(ids, hists)
            t_hnsw += time.perf_counter() - t0
            done += len(hists)
            print(f"  {done}/{n} indexed, HNSW {done / t_hnsw:.0f} vectors/s, "
                  f"elapsed {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        live.checkpoint(index_dir, fp)
        t_ckpt = time.perf_counter() - t0
    finally:
        catalog.close()
    return {"n": n, "generate_s": round(t_gen, 2), "catalog_insert_s": round(t_cat, 2),
            "catalog_rows_per_s": round(n / t_cat, 1), "hnsw_add_s": round(t_hnsw, 2),
            "hnsw_vectors_per_s": round(n / t_hnsw, 1), "checkpoint_s": round(t_ckpt, 2),
            "index_file_mb": round((index_dir / index.INDEX_FILE).stat().st_size / 1e6, 1),
            "catalog_file_mb": round(sum(p.stat().st_size for p in index_dir.glob("*.db*")) / 1e6, 1),
            "threads": index.default_threads()}


def ensure_index(out: Path, base: np.ndarray, n: int, rebuild: bool) -> tuple[Path, dict[str, float], bool]:
    """The cached index dir for n, built if missing, stale or asked; (dir, build figures, cached?)."""
    index_dir = out / f"search-{n}-v{DATASET_VERSION}"
    meta_path = index_dir / "bench_build.json"
    if not rebuild and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            manifest = index.read_manifest(index_dir)
            if meta.get("n") == n and manifest.vector_count == n:
                return index_dir, meta, True
        except (ValueError, index.CheckpointInvalid):
            pass
    if index_dir.exists():
        shutil.rmtree(index_dir)
    index_dir.mkdir(parents=True)
    print(f"building a {n}-image index in {index_dir} (cached for later runs)", file=sys.stderr)
    meta = build_index(index_dir, base, n)
    meta_path.write_text(json.dumps(meta, indent=2))
    return index_dir, meta, False


# -- latency ------------------------------------------------------------------------------------

def measure(search_fn: Callable[[np.ndarray], object], queries: Sequence[np.ndarray], warmup: int = 3
            ) -> dict[str, float]:
    """Wall-clock latency of `search_fn(query_hist)` over the queries, one at a time, in ms."""
    for q in queries[:warmup]:
        search_fn(q)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        search_fn(q)
        times.append((time.perf_counter() - t0) * 1000.0)
    return _summary(times)


def _summary(times_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(times_ms)
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
            "mean_ms": round(statistics.fmean(ordered), 2), "max_ms": round(ordered[-1], 2)}


def stage_breakdown(searcher: Searcher, queries: Sequence[np.ndarray]) -> dict[str, dict[str, float]]:
    stages: dict[str, list[float]] = {"1_ann": [], "2a_candidate_histograms": [], "2b_rerank": [],
                                      "2c_catalog_rows_of_top_k": [], "2d_dominant_colors": []}
    for q in queries:
        t0 = time.perf_counter()
        ids, _ = searcher.live_index.search(q, K_CANDIDATES)
        t1 = time.perf_counter()
        ids, hists = searcher.catalog.histogram_rows(ids)  # what a search with no histogram file reads
        t2 = time.perf_counter()
        order, _ = rerank.rerank(q, ids, hists, k=K)
        t3 = time.perf_counter()
        searcher.catalog.describe(order[:K])
        t4 = time.perf_counter()
        position = {int(i): n for n, i in enumerate(ids)}
        for i in order[:K]:
            rerank.dominant_colors(hists[position[int(i)]])
        t5 = time.perf_counter()
        for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            stages[name].append(dt * 1000.0)
    return {name: _summary(times) for name, times in stages.items()}


# -- rerank against POT -------------------------------------------------------------------------

def _hex_args(q: np.ndarray) -> list[str]:
    """A colour query as CLI arguments: the 3 heaviest bins' centres, weighted (same for every transport)."""
    top = np.argsort(q)[::-1][:3]
    rgb = np.rint(rerank.lab_to_srgb(histogram.bin_centers_lab()[top]) * 255).astype(int)
    args = []
    for (r, g, b), w in zip(rgb.tolist(), q[top].tolist(), strict=True):
        args += ["--color", f"#{r:02x}{g:02x}{b:02x}:{max(w, 1e-3):.4f}"]
    return args


@contextlib.contextmanager
def running_daemon(index_dir: Path, work: Path) -> Iterator[Path]:
    """A real `chromatica-watch run` serving a copy of index_dir (its rows belong to no watched root, so
    the daemon leaves them alone); yields its config file."""
    served = work / "index"
    if served.exists():
        shutil.rmtree(served)
    shutil.copytree(index_dir, served)
    os.sync()  # the copy's writeback must not run during the measurement
    (work / "pictures").mkdir(exist_ok=True)
    runtime = Path(tempfile.mkdtemp(prefix="cwb-", dir="/tmp"))  # Unix socket paths must stay short
    config = work / "daemon.toml"
    config.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in {
        "roots": [str(work / "pictures")], "index_dir": str(served), "state_dir": str(work / "state"),
        "runtime_dir": str(runtime), "workers": 1, "log_level": "WARNING"}.items()) + "\n")
    log = (work / "daemon.log").open("wb")
    proc = subprocess.Popen([CLI, "run", "--config", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 300
        status = work / "state" / "status.json"
        while not (daemon_available(runtime / "chromatica-watch.sock") and status.exists()
                   and json.loads(status.read_text()).get("state") == "idle"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"daemon did not come up: {(work / 'daemon.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield config
    finally:
        stop_daemon(proc)
        log.close()
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(served, ignore_errors=True)


def cli_latency(args_list: Sequence[list[str]]) -> dict[str, float]:
    """Wall-clock of whole `chromatica-watch search ... --json` processes, start-up included."""
    times = []
    for args in args_list:
        t0 = time.perf_counter()
        subprocess.run([CLI, "search", *args, "--json"], check=True, capture_output=True)
        times.append((time.perf_counter() - t0) * 1000.0)
    return _summary(times)


def transports(index_dir: Path, out: Path, queries: Sequence[tuple[str, np.ndarray]], n_cli: int
               ) -> dict[str, dict[str, float]]:
    """The same colour queries through the socket of a running daemon, and as CLI processes with and
    without the daemon (without: each process opens the index directory read-only)."""
    hists = [color_query_histogram_from_args(_hex_args(q)) for _, q in queries]
    cli_args = [[*_hex_args(q), "-k", str(K)] for _, q in queries[:n_cli]]
    work = out / "daemon-run"
    work.mkdir(exist_ok=True)
    result: dict[str, dict[str, float]] = {}
    with running_daemon(index_dir, work) as config:
        sock = config_mod.load(config).socket_path
        result["socket"] = measure(lambda q: search_daemon(sock, q, K), hists)
        result["cli_with_daemon"] = cli_latency([[*a, "--config", str(config)] for a in cli_args])
    result["cli_without_daemon"] = cli_latency([[*a, "--index-dir", str(index_dir)] for a in cli_args[:5]])
    return result


def color_query_histogram_from_args(args: Sequence[str]) -> np.ndarray:
    return color_query_histogram(parse_colors([a for a in args if a != "--color"]))


def _positive(h: np.ndarray) -> np.ndarray:
    """POT's Sinkhorn divides by the marginals: every bin needs some mass (1e-9, renormalized)."""
    h = np.asarray(h, np.float64) + 1e-9
    return h / h.sum()


def _exact_emd(ot: Any, a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ia, ib = np.nonzero(a)[0], np.nonzero(b)[0]
    m = np.ascontiguousarray(cost[np.ix_(ia, ib)])
    return float(ot.emd2(a[ia] / a[ia].sum(), b[ib] / b[ib].sum(), m, numItermax=1_000_000))


def _overlap(x: Sequence[int], y: Sequence[int]) -> float:
    return len(set(x[:K]) & set(y[:K])) / K


def pot_comparison(searcher: Searcher, queries: Sequence[tuple[str, np.ndarray]], n_queries: int,
                   n_timed: int) -> dict[str, object]:
    try:
        ot = importlib.import_module("ot")
    except ImportError:
        return {"skipped": "POT is not installed (.venv/bin/pip install pot)"}
    centres = histogram.bin_centers_lab().astype(np.float64)
    cost = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=2)
    picked = [q for q in queries if q[0] == "image"][: (n_queries + 1) // 2] + \
        [q for q in queries if q[0] == "color"][: n_queries // 2]
    per_query = []
    for kind, q in picked:
        ids, hists = searcher.candidates(q, K)
        ours_times = []
        for _ in range(5):
            t0 = time.perf_counter()
            our_ids, _ = rerank.rerank(q, ids, hists, k=K)
            ours_times.append(time.perf_counter() - t0)
        ours_s = statistics.median(ours_times)
        a = _positive(q)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # POT warns that 1000 iterations did not reach 1e-9
            t0 = time.perf_counter()
            for h in hists[:n_timed]:
                ot.sinkhorn2(a, _positive(h), cost, POT_REG)
            pot_per_candidate_s = (time.perf_counter() - t0) / min(n_timed, len(hists))
            # All candidates at once (POT's multi-target form: the same iterations as one per call).
            t0 = time.perf_counter()
            pot_values = np.asarray(ot.sinkhorn2(a, np.stack([_positive(h) for h in hists], axis=1), cost, POT_REG))
            pot_batched_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        exact = np.array([_exact_emd(ot, q, h, cost) for h in hists])
        exact_s = time.perf_counter() - t0
        ours_all = rerank.emd_many(q, hists)
        pot_ids = ids[np.lexsort((ids, pot_values))].tolist()
        exact_ids = ids[np.lexsort((ids, exact))].tolist()
        our_list = our_ids.tolist()
        rel = np.abs(ours_all - exact) / np.maximum(exact, 1e-9)
        pot_rel = np.abs(pot_values - exact) / np.maximum(exact, 1e-9)
        per_query.append({
            "kind": kind, "candidates": len(ids),
            "ours_ms": round(ours_s * 1000, 2),
            "pot_sinkhorn_per_candidate_ms": round(pot_per_candidate_s * 1000, 1),
            "pot_sinkhorn_all_candidates_s": round(pot_per_candidate_s * len(ids), 1),
            "pot_sinkhorn_batched_s": round(pot_batched_s, 1),
            "exact_emd_all_candidates_s": round(exact_s, 2),
            "speed_ratio_vs_pot_per_candidate": round(pot_per_candidate_s * len(ids) / ours_s, 0),
            "speed_ratio_vs_pot_batched": round(pot_batched_s / ours_s, 0),
            "speed_ratio_vs_exact_emd": round(exact_s / ours_s, 1),
            "top10_agreement_ours_vs_pot_sinkhorn": _overlap(our_list, pot_ids),
            "top10_agreement_ours_vs_exact_emd": _overlap(our_list, exact_ids),
            "top10_agreement_pot_sinkhorn_vs_exact_emd": _overlap(pot_ids, exact_ids),
            "ours_rel_error_vs_exact_mean": round(float(rel.mean()), 4),
            "ours_rel_error_vs_exact_max": round(float(rel.max()), 4),
            "pot_sinkhorn_rel_error_vs_exact_mean": round(float(pot_rel.mean()), 4),
        })
        print(f"  POT query {len(per_query)}/{len(picked)} ({kind}) done", file=sys.stderr, flush=True)

    def mean(key: str) -> float:
        return round(statistics.fmean(float(r[key]) for r in per_query), 3)  # type: ignore[arg-type]

    return {
        "queries": per_query,
        "pot": f"ot.sinkhorn2(a, b, M[1152x1152 delta E], reg={POT_REG}), POT {ot.__version__}",
        "speed_ratio_vs_pot_per_candidate": mean("speed_ratio_vs_pot_per_candidate"),
        "speed_ratio_vs_pot_batched": mean("speed_ratio_vs_pot_batched"),
        "top10_agreement_ours_vs_pot_sinkhorn": mean("top10_agreement_ours_vs_pot_sinkhorn"),
        "top10_agreement_ours_vs_exact_emd": mean("top10_agreement_ours_vs_exact_emd"),
        "top10_agreement_pot_sinkhorn_vs_exact_emd": mean("top10_agreement_pot_sinkhorn_vs_exact_emd"),
        "ours_rel_error_vs_exact_mean": mean("ours_rel_error_vs_exact_mean"),
    }


# -- main ---------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000, help="indexed histograms (default 100000)")
    parser.add_argument("--queries", type=int, default=200, help="latency queries (default 200)")
    parser.add_argument("--pot-queries", type=int, default=3, help="queries compared with POT (0: skip)")
    parser.add_argument("--cli-queries", type=int, default=30,
                        help="queries timed as CLI processes (0: skip the daemon, socket and CLI part)")
    parser.add_argument("--pot-timed", type=int, default=5, help="candidates timed one by one with POT")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out", help="cache and results folder")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached index dir")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    base = base_histograms()
    print(f"{len(base)} base histograms from real photos in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    index_dir, build_info, cached = ensure_index(args.out, base, args.n, args.rebuild)

    index.configure_threads(index.default_threads())
    t0 = time.perf_counter()
    catalog, live = open_readonly(index_dir, MAX_DIMENSION)
    open_s = time.perf_counter() - t0
    try:
        searcher = Searcher(catalog, live, k_candidates=K_CANDIDATES)
        queries = make_queries(base, args.queries)
        hists = [q for _, q in queries]
        latency = {
            "all": measure(lambda q: searcher.search(q, K), hists),
            "image_queries": measure(lambda q: searcher.search(q, K), [q for k, q in queries if k == "image"]),
            "color_queries": measure(lambda q: searcher.search(q, K), [q for k, q in queries if k == "color"]),
        }
        stages = stage_breakdown(searcher, hists)
        pot = pot_comparison(searcher, queries, args.pot_queries, args.pot_timed) if args.pot_queries > 0 \
            else {"skipped": "--pot-queries 0"}
    finally:
        catalog.close()
    latency.update(transports(index_dir, args.out, queries, args.cli_queries) if args.cli_queries > 0 else {})

    result = {
        "machine": {"python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
                    "platform": platform.platform()},
        "index": {**build_info, "cached": cached, "dir": str(index_dir),
                  "open_readonly_s": round(open_s, 2)},
        "search": {"k_candidates": K_CANDIDATES, "k": K, "latency": latency, "stages": stages},
        "rerank_vs_pot": pot,
        "targets": {"speed_ratio_vs_pot_per_candidate": TARGET_RATIO, "top10_agreement": TARGET_AGREEMENT,
                    "socket_p95_ms": TARGET_SOCKET_P95_MS},
    }
    (args.out / "bench_search.json").write_text(json.dumps(result, indent=2))
    report(result)
    return 0


def report(r: dict[str, Any]) -> None:
    ix, s, pot = r["index"], r["search"], r["rerank_vs_pot"]
    print(f"machine: {r['machine']['cpus']} CPUs, Python {r['machine']['python']}")
    print(f"index: {ix['n']} histograms ({'cached' if ix['cached'] else 'built now'}): catalog insert "
          f"{ix['catalog_insert_s']} s ({ix['catalog_rows_per_s']} rows/s), HNSW add {ix['hnsw_add_s']} s "
          f"({ix['hnsw_vectors_per_s']} vectors/s, {ix['threads']} threads), checkpoint {ix['checkpoint_s']} s; "
          f"index file {ix['index_file_mb']} MB, catalog {ix['catalog_file_mb']} MB; "
          f"open read-only {ix['open_readonly_s']} s")
    for name, m in s["latency"].items():
        print(f"search ({name}, K={s['k_candidates']}, top {s['k']}): p50 {m['p50_ms']} ms, p95 {m['p95_ms']} ms, "
              f"mean {m['mean_ms']} ms, max {m['max_ms']} ms over {m['n']}")
    if "socket" in s["latency"]:
        p95 = s["latency"]["socket"]["p95_ms"]
        print(f"socket p95 {p95} ms (target <= {TARGET_SOCKET_P95_MS:.0f} ms: "
              f"{'met' if p95 <= TARGET_SOCKET_P95_MS else 'NOT met'})")
    for name, m in s["stages"].items():
        print(f"  stage {name}: p50 {m['p50_ms']} ms, p95 {m['p95_ms']} ms")
    if "skipped" in pot:
        print(f"rerank vs POT: skipped ({pot['skipped']})")
        return
    print(f"rerank vs {pot['pot']}:")
    for q in pot["queries"]:
        print(f"  {q['kind']:5s} query, {q['candidates']} candidates: ours {q['ours_ms']} ms; POT Sinkhorn "
              f"{q['pot_sinkhorn_per_candidate_ms']} ms per candidate = {q['pot_sinkhorn_all_candidates_s']} s "
              f"(batched {q['pot_sinkhorn_batched_s']} s); exact EMD {q['exact_emd_all_candidates_s']} s | "
              f"ratio {q['speed_ratio_vs_pot_per_candidate']:.0f}x (batched {q['speed_ratio_vs_pot_batched']:.0f}x, "
              f"exact {q['speed_ratio_vs_exact_emd']}x) | top-10 agreement: vs POT "
              f"{q['top10_agreement_ours_vs_pot_sinkhorn']}, vs exact {q['top10_agreement_ours_vs_exact_emd']} "
              f"(POT vs exact {q['top10_agreement_pot_sinkhorn_vs_exact_emd']}) | rel. error vs exact: ours "
              f"mean {q['ours_rel_error_vs_exact_mean']} max {q['ours_rel_error_vs_exact_max']}, POT mean "
              f"{q['pot_sinkhorn_rel_error_vs_exact_mean']}")
    ok_ratio = pot["speed_ratio_vs_pot_per_candidate"] >= TARGET_RATIO
    ok_agree = pot["top10_agreement_ours_vs_pot_sinkhorn"] >= TARGET_AGREEMENT
    print(f"speed ratio vs POT Sinkhorn per candidate: {pot['speed_ratio_vs_pot_per_candidate']:.0f}x "
          f"(target >= {TARGET_RATIO:.0f}x: {'met' if ok_ratio else 'NOT met'}); vs POT batched "
          f"{pot['speed_ratio_vs_pot_batched']:.0f}x")
    print(f"top-10 agreement with POT Sinkhorn: {pot['top10_agreement_ours_vs_pot_sinkhorn']} (target >= "
          f"{TARGET_AGREEMENT}: {'met' if ok_agree else 'NOT met'}); with exact EMD "
          f"{pot['top10_agreement_ours_vs_exact_emd']} (POT Sinkhorn with exact EMD: "
          f"{pot['top10_agreement_pot_sinkhorn_vs_exact_emd']}); our mean relative error vs exact "
          f"{pot['ours_rel_error_vs_exact_mean']}")


if __name__ == "__main__":
    sys.exit(main())
