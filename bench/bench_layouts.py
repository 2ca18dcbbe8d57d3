"""Index layouts for a million photos (issue 13): memory per photo, stage-1 latency and top-10 agreement
after the EMD rerank, today's layout beside the candidates, measured side by side on one data set.

    flock /tmp/chromatica-bench.lock .venv/bin/python bench/bench_layouts.py [--n 100000] [--queries 60]
        [--tombstoned 0.2] [--out DIR]

Data: `--n` synthetic histograms made like bench_search's (mixes of histograms of real photos' crops),
and `--queries` queries, half colour queries of 1-3 colours and half held-out mixes (like an example
image). `--tombstoned` of the ids are excluded from every search (an IDSelector, as the live index does).

Ground truth: the exact stage 1 (brute force L2 over the Hellinger vectors) for TRUTH_K = 1000
candidates, followed by the same rerank (`rerank.rerank` on the exact histograms): the EMD top 10 of the
whole collection in all but name (an EMD top-10 image is far down the L2 order, if ever, past 1000).
Each layout answers its own K candidates (K = 200 as today, and 400; efSearch = K) and they are reranked
on the exact histograms too (for a compressed layout those would come from a histogram store: its size
is shown). Agreement = overlap of the top 10 with the ground truth's, averaged over the queries
(target >= 0.95).

Layouts:
- hnsw-flat: today's (IndexHNSWFlat, M=32, float32 1152-dim Hellinger vectors).
- hnsw-sq8: the same graph over 8-bit scalar-quantized vectors.
- pca128-hnsw: PCA to 128 dimensions (trained on a sample), HNSW (M=32) over the float32 result.
- pca64-hnsw: the same with 64 dimensions.
- ivf-pq: IVF (~4 sqrt(n) lists: 1024 at 100k) over PCA128, PQ 32 bytes, nprobe 32 (64 at K = 400).

Per layout: bytes per photo of the serialized index (what it holds in RAM), build seconds, stage-1 p50
and p95 (one thread), agreement with and without tombstones, and the 1,000,000-photo projection of the
index RAM. Beside them, the sparse float16 histogram store the rerank would read (4 bytes per non-zero
bin: uint16 bin + float16 value) and the float16 rounding's effect on the rerank's top 10. Prints the
figures and writes OUT/bench_layouts.json. Not a pytest test.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from bench_common import BENCH_DIR, begin, finish, section
from bench_search import base_histograms, make_queries, mixes

from chromatica_watch.colour import rerank
from chromatica_watch.colour.histogram import TOTAL_BINS, index_vectors

K = 200
TRUTH_K = 1000
TOP = 10
CORES = faiss.omp_get_max_threads()
BATCH = 20_000


def _selector(excluded: np.ndarray) -> Any:
    if len(excluded) == 0:
        return None
    return faiss.IDSelectorNot(faiss.IDSelectorBatch(excluded))


class Layout:
    def __init__(self, name: str, make: Callable[[np.ndarray], Any], params: Callable[[Any, int], Any],
                 candidates: int = K) -> None:
        self.name, self._make, self._params, self.candidates = name, make, params, candidates
        self.index: Any = None
        self.build_s = 0.0

    def build(self, vectors: np.ndarray) -> None:
        started = time.perf_counter()
        faiss.omp_set_num_threads(CORES)  # builds on every core
        self.index = self._make(vectors)
        faiss.omp_set_num_threads(1)  # searches on one, as the daemon's request threads do
        self.build_s = time.perf_counter() - started

    def bytes_per_photo(self) -> float:
        return len(faiss.serialize_index(self.index)) / self.index.ntotal

    def search(self, query: np.ndarray, sel: Any, candidates: int) -> np.ndarray:
        params = self._params(sel, candidates)
        _, ids = self.index.search(query.reshape(1, -1), candidates, params=params)
        return ids[0][ids[0] >= 0]


def _hnsw(inner: Any, vectors: np.ndarray, ef_search: int = 96) -> Any:
    inner.hnsw.efConstruction = 200
    inner.hnsw.efSearch = ef_search
    if not inner.is_trained:
        inner.train(vectors[:50_000])
    for start in range(0, len(vectors), BATCH):
        inner.add(vectors[start:start + BATCH])
    return inner


def _pca_hnsw(dims: int) -> Callable[[np.ndarray], Any]:
    def make(vectors: np.ndarray) -> Any:
        pca = faiss.PCAMatrix(TOTAL_BINS, dims)
        pca.train(vectors[:50_000])
        index = faiss.IndexPreTransform(pca, faiss.IndexHNSWFlat(dims, 32))
        hnsw = faiss.downcast_index(index.index)
        hnsw.hnsw.efConstruction = 200
        hnsw.hnsw.efSearch = 96
        for start in range(0, len(vectors), BATCH):
            index.add(vectors[start:start + BATCH])
        return index
    return make


def _ivf_pq(vectors: np.ndarray) -> Any:
    lists = 1 << max(6, round(np.log2(4 * np.sqrt(len(vectors)))))  # ~4 sqrt(n): 1024 at 100k, 4096 at 1M
    index = faiss.index_factory(TOTAL_BINS, f"PCA128,IVF{lists},PQ32")
    index.train(vectors[:max(100_000, 40 * lists)])
    for start in range(0, len(vectors), BATCH):
        index.add(vectors[start:start + BATCH])
    return index


def layouts() -> list[Layout]:
    def hnsw_params(sel: Any, k: int) -> Any:
        return faiss.SearchParametersHNSW(sel=sel, efSearch=k)

    def pretransform_hnsw(sel: Any, k: int) -> Any:
        return faiss.SearchParametersPreTransform(index_params=faiss.SearchParametersHNSW(sel=sel, efSearch=k))

    def ivf(sel: Any, k: int) -> Any:
        return faiss.SearchParametersPreTransform(index_params=faiss.SearchParametersIVF(sel=sel, nprobe=32 * k // K))

    return [
        Layout("hnsw-flat", lambda v: _hnsw(faiss.IndexHNSWFlat(TOTAL_BINS, 32), v), hnsw_params),
        Layout("hnsw-sq8", lambda v: _hnsw(faiss.IndexHNSWSQ(TOTAL_BINS, faiss.ScalarQuantizer.QT_8bit, 32), v),
               hnsw_params),
        Layout("pca128-hnsw", _pca_hnsw(128), pretransform_hnsw),
        Layout("pca64-hnsw", _pca_hnsw(64), pretransform_hnsw),
        Layout("ivf-pq", _ivf_pq, ivf),
    ]


def top(query: np.ndarray, ids: np.ndarray, hists: np.ndarray) -> list[int]:
    order, _ = rerank.rerank(query, ids, hists[ids], k=TOP)
    return order[:TOP].tolist()


def percentile(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--tombstoned", type=float, default=0.2)
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out" / "layouts")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    summary, started_at = begin("bench_layouts", {"n": args.n, "queries": args.queries,
                                                  "tombstoned": args.tombstoned})
    faiss.omp_set_num_threads(1)

    section(f"Data: {args.n} histograms, {args.queries} queries")
    base = base_histograms()
    rng = np.random.default_rng(1)
    hists = np.concatenate([mixes(base, min(BATCH, args.n - s), rng) for s in range(0, args.n, BATCH)])
    vectors = np.ascontiguousarray(index_vectors(hists), dtype=np.float32)
    queries = make_queries(base, args.queries)
    nnz = (hists > 0).sum(axis=1)
    excluded = np.sort(np.random.default_rng(3).choice(args.n, int(args.n * args.tombstoned), replace=False))
    excluded = excluded.astype(np.int64)
    print(f"  non-zero bins per histogram: median {np.median(nnz):.0f}, p95 {np.percentile(nnz, 95):.0f}; "
          f"sparse float16 store {4 * nnz.mean():.0f} B per photo (dense float16 {2 * TOTAL_BINS} B)")

    section("Ground truth: exact stage 1 (brute force) + the same rerank")
    exact = faiss.IndexFlatL2(TOTAL_BINS)
    exact.add(vectors)
    truth: dict[str, list[list[int]]] = {}
    for label, sel in (("all", None), ("tombstoned", _selector(excluded))):
        params = faiss.SearchParameters(sel=sel) if sel is not None else None
        truth[label] = []
        for _, q in queries:
            q = q / q.sum()
            _, ids = exact.search(index_vectors(q).reshape(1, -1).astype(np.float32), TRUTH_K, params=params)
            truth[label].append(top(q, ids[0][ids[0] >= 0], hists))
    # float16 rounding of the stored histograms, as a store would keep them: the rerank's top 10 with them
    h16 = hists.astype(np.float16).astype(np.float32)
    f16_agree = []
    for _, q in queries:
        q = q / q.sum()
        _, ids = exact.search(index_vectors(q).reshape(1, -1).astype(np.float32), K)
        f16_agree.append(len(set(top(q, ids[0], h16)) & set(top(q, ids[0], hists))) / TOP)
    print(f"  float16 histograms in the rerank: top-10 agreement {np.mean(f16_agree):.3f}")

    results: dict[str, Any] = {}
    summary.details["layouts"] = results
    summary.add("non-zero bins per histogram (median)", float(np.median(nnz)), "bins")
    summary.add("sparse float16 histogram store", float(4 * nnz.mean()), "B/photo")
    summary.add("float16 histograms: rerank top-10 agreement", float(np.mean(f16_agree)), "", ">= 0.95",
                bool(np.mean(f16_agree) >= 0.95))
    section("Layouts")
    print(f"  {'layout':<13} {'K':>4} {'B/photo':>8} {'1M RAM':>8} {'build s':>8} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'rerank p95':>10} {'agree':>6} {'agree 20% dead':>15}")
    for layout in layouts():
        layout.build(vectors)
        for k in (K, 2 * K):
            name = f"{layout.name} K={k}"
            row: dict[str, Any] = {"bytes_per_photo": round(layout.bytes_per_photo(), 1),
                                   "build_s": round(layout.build_s, 1)}
            for label, sel in (("all", None), ("tombstoned", _selector(excluded))):
                times, reranks, agree = [], [], []
                for (_, q), want in zip(queries, truth[label], strict=True):
                    q = q / q.sum()
                    hq = index_vectors(q).astype(np.float32)
                    started = time.perf_counter()
                    ids = layout.search(hq, sel, k)
                    times.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    found = top(q, ids, hists)
                    reranks.append((time.perf_counter() - started) * 1000)
                    agree.append(len(set(found) & set(want)) / TOP)
                row[label] = {"p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95),
                              "rerank_p95_ms": percentile(reranks, 95), "agreement": round(float(np.mean(agree)), 3)}
            results[name] = row
            summary.add(f"{name}: top-10 agreement, 20% tombstoned", row["tombstoned"]["agreement"], "",
                        ">= 0.95", row["tombstoned"]["agreement"] >= 0.95)
            print(f"  {layout.name:<13} {k:>4} {row['bytes_per_photo']:>8.0f} {row['bytes_per_photo'] / 1e3:>6.2f}GB "
                  f"{row['build_s']:>8.1f} {row['all']['p50_ms']:>7.2f} {row['all']['p95_ms']:>7.2f} "
                  f"{row['all']['rerank_p95_ms']:>10.1f} {row['all']['agreement']:>6.3f} "
                  f"{row['tombstoned']['agreement']:>15.3f}")
        summary.add(f"{layout.name}: index bytes per photo", layout.bytes_per_photo(), "B")
        layout.index = None  # free it before the next one is built
    return finish(args.out, "bench_layouts", summary, started_at)


if __name__ == "__main__":
    raise SystemExit(main())
