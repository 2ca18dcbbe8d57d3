"""Searches for colours a photo contains, colours to avoid, and filters (issue 23), at 1,000,000 photos:
latency through a real daemon's socket, and agreement with an exhaustive scan.

    flock /tmp/chromatica-bench.lock .venv/bin/python bench/bench_contain.py [--n 1000000] [--queries 50]
        [--palette-exact-max 20000] [--corpus-files 600] [--out DIR] [--rebuild]

The data set (cached in OUT/contain) is bench_million's (links of real JPEGs in folders of FILES_PER_FOLDER,
synthetic histograms, the PCA layout from 50,000) with header details, made in contain_queries.py as are the
queries: taken over 2012-2026 (10% from the mtime, with no camera), 40 camera models and a rare one on 0.01%
of rows, orientations mixed.
Filters, each printed with the share `scan.scope` keeps beside what the generated details say: 100% (none;
a whole palette gets "taken since 2000", so its filtered path runs), 10% (globs on the first tenth of the
folders), 1% (those and a tenth of the dates), 0.01% (one absolute folder at a million; below a folder, one
and a date range), 0.01% by camera. Kinds (colours from the data's palette: dominant colours of mixes of
the histograms the rows mix): a lone colour, two shares summing below 1, a colour to avoid alone (newest
first), a colour and one to avoid, a whole palette (weights summing to 1).

1. A daemon (`workers = 1`); through its socket (`DaemonIndex.find`, k = 10) `--queries` per kind x filter:
   p50/p95 (target p95 <= 50 ms), searches with fewer than k results when k exist, errors.
2. The daemon stopped, a copy of the index dir with 20% of its rows tombstoned in the catalog: the same
   queries through `Finder` in-process (as `LocalIndex.find`, with the daemon's histogram file) against
   every live photo of the filter scored as the search scores it (`contain.containment_score`, `held` for
   colours to avoid; a whole palette by exact EMD, `rerank.emd_many`, over filters of at most
   --palette-exact-max live rows): top-10 agreement per kind (target >= 0.95), and the time of each stage
   in-process (view, scope, the scan or palette search, the whole find; histograms the scan read).
Prints the figures and writes OUT/bench_contain.json. Not a pytest test.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import BENCH_DIR, MAX_DIMENSION, Summary, begin, finish, section
from bench_million import Runs, ensure_dataset, percentiles
from bench_search import base_histograms, mixes
from contain_queries import KINDS, Filter, Library, library, make_cells, make_filters

from chromatica_watch.search.ask import Ask, parse_ask

CONTAIN_VERSION = 1
TOP = 10
PCA_FROM = 50_000
TARGET_P95_MS = 50.0
TARGET_AGREEMENT = 0.95
TOMBSTONED = 0.2


# -- 1. through the daemon's socket -------------------------------------------------------------------

def socket_latency(socket_path: Path, cells: dict[tuple[str, str], list[Ask]], sizes: dict[str, int]
                   ) -> dict[str, Any]:
    from chromatica_watch.access.remote import DaemonIndex
    from chromatica_watch.core.errors import ChromaticaError

    client = DaemonIndex(socket_path)
    for asks in cells.values():  # warm-up: the search table, the histogram file's pages, the index
        for ask in asks[:2]:
            with contextlib.suppress(ChromaticaError):
                client.find(ask, TOP)
    out: dict[str, Any] = {}
    for (kind, label), asks in cells.items():
        times, short, errors = [], 0, []
        for ask in asks:
            started = time.perf_counter()
            try:
                matches, _ = client.find(ask, TOP)
            except ChromaticaError as exc:  # the daemon's answer to this query was an error: counted, not timed
                errors.append(str(exc))
                continue
            times.append((time.perf_counter() - started) * 1000)
            short += not ask.avoid and len(matches) < min(TOP, sizes[label])  # with no colour to avoid every row counts
        cell = out[f"{kind} | {label}"] = {**percentiles(times or [np.nan]), "short": short, "errors": len(errors),
                                           "first_error": errors[0] if errors else None}
        print(f"  {kind:>16} | {label:<13} p50 {cell['p50']:7.2f} ms  p95 {cell['p95']:7.2f} ms"
              f"{f'  SHORT {short}' if short else ''}{f'  ERRORS {len(errors)}: {errors[0]}' if errors else ''}",
              flush=True)
    return out


# -- 2. against an exhaustive scan --------------------------------------------------------------------

def tombstoned_copy(index_dir: Path, copy: Path, n: int) -> np.ndarray:
    """A copy of the index dir with a share of its rows tombstoned in the catalog; a bool mask by id of the
    rows left alive."""
    from chromatica_watch.colour import histogram
    from chromatica_watch.core.records import Changes
    from chromatica_watch.storage.catalog import Catalog

    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(index_dir, copy)
    dead = np.sort(np.random.default_rng(3).choice(np.arange(1, n + 1), int(n * TOMBSTONED), replace=False))
    with Catalog.open(copy, histogram.fingerprint(MAX_DIMENSION)) as catalog:
        if not np.array_equal(np.sort(catalog.live_ids()), np.arange(1, n + 1)):
            raise SystemExit("the catalog's ids are not 1..n: row i is not id i + 1")
        catalog.apply(Changes(tombstoned=dead.tolist()))
    alive = np.ones(n + 1, bool)
    alive[0] = False
    alive[dead] = False
    return alive


@dataclass
class Best:
    """The exhaustive top k of one query: keys (primary, secondary) and ids, and how many rows qualified."""

    k1: np.ndarray = field(default_factory=lambda: np.zeros(0))
    k2: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    eligible: int = 0

    def merge(self, k1: np.ndarray, k2: np.ndarray, ids: np.ndarray) -> None:
        k1, k2, ids = (np.concatenate(p) for p in ((self.k1, k1), (self.k2, k2), (self.ids, ids)))
        order = np.lexsort((k2, k1))[:TOP]
        self.k1, self.k2, self.ids = k1[order], k2[order], ids[order]


def keys(ask: Ask, ids: np.ndarray, hists: np.ndarray, taken_by_id: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(passes the colours to avoid, primary key, secondary key) of rows, lowest first, as the search ranks
    them: EMD to a whole palette, the containment score, or (avoidance alone) the newest taken first."""
    from chromatica_watch.colour import contain, rerank

    ok = np.ones(len(ids), bool)
    for colour in ask.avoid:
        ok &= contain.held(hists, colour.lab) <= colour.share
    if ask.histogram is not None:
        return ok, rerank.emd_many(ask.histogram / ask.histogram.sum(), hists), ids.astype(float)
    if ask.contains:
        return ok, contain.containment_score(hists, [c.wanted for c in ask.contains])[0], ids.astype(float)
    return ok, -taken_by_id[ids].astype(float), -ids.astype(float)


def exhaustive(catalog: Any, cells: dict[tuple[str, str], list[Ask]], members: dict[str, np.ndarray],
               taken_by_id: np.ndarray, exact_max: int) -> dict[tuple[str, str], list[Best | None]]:
    """Every live row of each filter scored as the search scores it: one pass over the catalog's histograms."""
    best: dict[tuple[str, str], list[Best | None]] = {
        cell: [None if a.histogram is not None and members[cell[1]].sum() > exact_max else Best() for a in asks]
        for cell, asks in cells.items()}
    palette_rows: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    started = time.perf_counter()
    for ids, hists in catalog.iter_histograms():
        for label in dict.fromkeys(label for _, label in cells):
            keep = members[label][ids]
            if not keep.any():
                continue
            i, h = (ids, hists) if keep.all() else (ids[keep], hists[keep])
            if best["whole palette", label][0] is not None:
                palette_rows.setdefault(label, []).append((i, h))
            for kind in KINDS[:-1]:
                for ask, b in zip(cells[kind, label], best[kind, label], strict=True):
                    assert b is not None
                    ok, k1, k2 = keys(ask, i, h, taken_by_id)
                    b.eligible += int(ok.sum())
                    b.merge(k1[ok], k2[ok], i[ok])
    print(f"  exhaustive containment and avoidance: {time.perf_counter() - started:.0f} s", flush=True)
    for label, parts in palette_rows.items():
        started = time.perf_counter()
        i, h = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        for ask, b in zip(cells["whole palette", label], best["whole palette", label], strict=True):
            assert b is not None
            b.merge(*keys(ask, i, h, taken_by_id)[1:], i)
            b.eligible = len(i)
        print(f"  exact EMD over {len(i)} rows ({label}): {time.perf_counter() - started:.0f} s", flush=True)
    return best


def staged(table: Any, finder: Any, searchable: tuple[str, ...], ask: Ask, stages: dict[str, list[float]]
           ) -> list[int]:
    """The ids `finder.find` returns, with the time of each stage the daemon runs (the table's view, the
    filter's scope, the scan or palette search) and of the whole find, and the histograms the scan read."""
    from chromatica_watch.search.scan import TableSearch, scope

    read: list[int] = []

    def counting(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        got = finder.searcher.histogram_rows(ids)
        read.append(len(got[0]))
        return tuple(got)

    t0 = time.perf_counter()
    view = table.view()
    t1 = time.perf_counter()
    rows = scope(view, ask.filters, searchable, colours=bool(ask.contains or ask.avoid)).rows
    t2 = time.perf_counter()
    if ask.histogram is not None:
        finder._palette(view, ask, rows, TOP, False)
    elif ask.contains:
        TableSearch(view, counting).contains(ask, rows, TOP)
    else:
        TableSearch(view, counting).browse(ask, rows, TOP)
    t3 = time.perf_counter()
    found = [r.id for r in finder.find(ask, TOP).results]
    t4 = time.perf_counter()
    for name, value in zip(stages, ((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3, sum(read)),
                           strict=True):
        stages[name].append(value)
    return found


def tie_aware(ask: Ask, b: Best, found: list[int], searcher: Any, member: np.ndarray, taken_by_id: np.ndarray
              ) -> float:
    """The share of the exact top k the search found, a result counting when it is in the filter, passes the
    colours to avoid and ranks no worse than the exact k-th (any of several photos tied there is right)."""
    if len(b.ids) < TOP:  # every photo that qualifies should be found
        return len(set(b.ids.tolist()) & set(found)) / len(b.ids) if len(b.ids) else float(not found)
    got, hists = searcher.histogram_rows(np.array(found, np.int64))
    ok, k1, _ = keys(ask, got, hists, taken_by_id)
    return int((ok & member[got] & (k1 <= b.k1[-1] + 1e-6)).sum()) / TOP


def agreement(index_dir: Path, work: Path, lib: Library, filters: Sequence[Filter],
              cells: dict[tuple[str, str], list[Ask]], exact_max: int) -> dict[str, Any]:
    from chromatica_watch.search.finder import Finder
    from chromatica_watch.search.readonly import open_readonly
    from chromatica_watch.search.scan import scope
    from chromatica_watch.search.searcher import Searcher
    from chromatica_watch.storage.histfile import HISTOGRAM_FILE, HistogramFile
    from chromatica_watch.storage.table import SearchTable

    n = len(lib.taken)
    copy = work / "tombstoned"
    alive = tombstoned_copy(index_dir, copy, n)
    catalog, live = open_readonly(copy, MAX_DIMENSION)
    hist_file = HistogramFile(copy / HISTOGRAM_FILE, catalog.catalog_id)
    out: dict[str, Any] = {"filters": {}, "cells": {}}
    try:
        hist_file.start(catalog.live_ids, catalog.histogram_rows)
        hist_file.ready.wait(900)
        searchable = tuple(catalog.roots())
        table = SearchTable(catalog)
        searcher = Searcher(catalog, live, 200, histograms=hist_file)
        finder = Finder(searcher, table.view, searchable)
        view = table.view()
        members = {}
        for f in filters:
            ask = parse_ask(["#808080"], **f.words(False))
            kept = view.ids[scope(view, ask.filters, searchable, colours=True).rows]
            members[f.label] = np.zeros(n + 1, bool)
            members[f.label][kept] = True
            expected = int((f.mask(lib) & alive[1:]).sum())
            share = len(kept) / int(alive.sum())
            out["filters"][f.label] = {"kept": len(kept), "share": share, "generated": expected,
                                       "words": f.words(False)}
            print(f"  filter {f.label:<13} keeps {len(kept):8d} live photos ({share:.4%}); the generated details "
                  f"say {expected}{'' if expected == len(kept) else ' MISMATCH'}: {f.words(False)}", flush=True)
        taken_by_id = np.concatenate([[0], lib.taken])
        exact = exhaustive(catalog, cells, members, taken_by_id, exact_max)
        for (kind, label), asks in cells.items():
            stages: dict[str, list[float]] = {"view": [], "scope": [], "scan": [], "find": [], "read": []}
            overlaps, tied, short = [], [], 0
            errors: list[str] = []
            for ask, b in zip(asks, exact[kind, label], strict=True):
                try:
                    found = staged(table, finder, searchable, ask, stages)
                except Exception as exc:  # counted, and the query left out of the agreement
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if not alive[found].all():
                    raise SystemExit(f"a tombstoned photo was returned for {kind} | {label}")
                eligible = int(members[label].sum()) if b is None else b.eligible
                short += len(found) < min(TOP, eligible)
                if b is not None:
                    want = set(b.ids.tolist())
                    overlaps.append(len(want & set(found)) / len(want) if want else float(not found))
                    tied.append(tie_aware(ask, b, found, finder.searcher, members[label], taken_by_id))
            cell = {"agreement": round(float(np.mean(tied)), 3) if tied else None,
                    "agreement_ids": round(float(np.mean(overlaps)), 3) if overlaps else None, "short": short,
                    "errors": len(errors), "first_error": errors[0] if errors else None,
                    "stages_ms": {k: percentiles(v or [np.nan]) for k, v in stages.items()}}
            out["cells"][f"{kind} | {label}"] = cell
            print(f"  {kind:>16} | {label:<13} agreement {cell['agreement']} (ids {cell['agreement_ids']})  "
                  f"short {short}  p50/p95 in-process: "
                  + "  ".join(f"{k} {v['p50']}/{v['p95']}" for k, v in cell["stages_ms"].items())
                  + (f"  ERRORS {len(errors)}: {errors[0]}" if errors else ""), flush=True)
    finally:
        hist_file.close()
        catalog.close()
        shutil.rmtree(copy, ignore_errors=True)
    return out


# -- the run ------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=50, help="per kind and filter (50)")
    ap.add_argument("--palette-exact-max", type=int, default=20_000,
                    help="whole-palette agreement only over filters keeping at most this many live rows (20000)")
    ap.add_argument("--corpus-files", type=int, default=600)
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args(argv)
    data = args.out / "contain"
    data.mkdir(parents=True, exist_ok=True)
    git = lambda *a: subprocess.run(["git", *a], cwd=BENCH_DIR, capture_output=True, text=True).stdout.strip()  # noqa: E731
    summary, started_at = begin("bench_contain", {
        "n": args.n, "queries": args.queries, "palette_exact_max": args.palette_exact_max, "commit": git("rev-parse",
        "--short", "HEAD"), "package_changes": git("status", "--porcelain", "--", "../chromatica_watch").splitlines()})
    section(f"Data set: {args.n} photos with header details")
    lib = library(args.n)
    from chromatica_watch.colour import contain  # the palette's stored form: a data set of another is made again

    form = getattr(contain, "PALETTE_BYTES", contain.COARSE_CELLS)
    ds = ensure_dataset(data, args.n, args.corpus_files, {"pca": PCA_FROM}, args.rebuild, lib.details,
                        name=f"contain-v{CONTAIN_VERSION}-p{form}")
    root = str(ds.photos.resolve())
    filters = make_filters(args.n, root)
    sizes = {f.label: int(f.mask(lib).sum()) for f in filters}
    cells = make_cells(filters, args.queries)
    rows: dict[str, Any] = {"filter_sizes": sizes}
    summary.details["run"] = rows

    section(f"1. Through the daemon's socket, k = {TOP}, {args.queries} queries per cell")
    runs = Runs(data / f"run-{args.n}", ds.photos, ds.index_dirs["pca"], PCA_FROM)
    try:
        probe = mixes(base_histograms(), 1, np.random.default_rng(9))[0]
        with runs.daemon(probe) as d:
            print(f"  ready in {d.ready_s:.1f} s", flush=True)
            runs.wait_idle(d)
            rows["socket"] = socket_latency(d.socket_path, cells, sizes)
    finally:
        runs.close()

    section(f"2. Agreement with an exhaustive scan, {TOMBSTONED:.0%} tombstoned (in-process, the daemon stopped)")
    rows["agreement"] = agreement(ds.index_dirs["pca"], runs.work, lib, filters, cells, args.palette_exact_max)
    report(filters, rows, summary)
    return finish(args.out, "bench_contain", summary, started_at)


def report(filters: Sequence[Filter], rows: dict[str, Any], summary: Summary) -> None:
    labels = [f.label for f in filters]
    section("Socket search p50 / p95 (ms), kind x filter (share kept, 20%-tombstoned copy)")
    shares = rows["agreement"]["filters"]
    heads = [f"{lb} ({shares[lb]['share']:.3%})" for lb in labels]
    print(f"  {'':>16} " + " ".join(f"{h:>24}" for h in heads))
    for kind in KINDS:
        cells = [rows["socket"][f"{kind} | {lb}"] for lb in labels]
        print(f"  {kind:>16} " + " ".join(f"{'{:.1f} / {:.1f}'.format(c['p50'], c['p95']):>24}" for c in cells))
    for f in filters:
        summary.add(f"filter {f.label}: share kept", shares[f.label]["share"] * 100, "%")
    for kind in KINDS:
        for lb in labels:
            p95 = rows["socket"][f"{kind} | {lb}"]["p95"]
            summary.add(f"p95 {kind} | {lb}", p95, "ms", f"<= {TARGET_P95_MS:g}", p95 <= TARGET_P95_MS)
    for kind in KINDS:
        measured = {key.split(" | ")[1]: c for key, c in rows["agreement"]["cells"].items()
                    if key.startswith(f"{kind} |") and c["agreement"] is not None}
        value, ids = (float(np.mean([c[key] for c in measured.values()])) for key in ("agreement", "agreement_ids"))
        rows.setdefault("agreement_by_kind", {})[kind] = {"mean": value, "ids": ids, "filters": list(measured)}
        summary.add(f"top-10 agreement, {kind}", value, "", f">= {TARGET_AGREEMENT}", value >= TARGET_AGREEMENT)
        summary.add(f"  the same ids (ties by id), {kind}", ids, "")
    every = [*rows["socket"].values(), *rows["agreement"]["cells"].values()]
    for figure, key in (("fewer than k results when k exist", "short"), ("searches answered by an error", "errors")):
        count = sum(c[key] for c in every)
        summary.add(figure, count, "", "0", count == 0)


if __name__ == "__main__":
    raise SystemExit(main())
