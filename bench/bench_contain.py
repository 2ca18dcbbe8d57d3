"""Searches for colours a photo contains, colours to avoid, and filters (issue 23), at 1,000,000 photos:
latency through a real daemon's socket, and agreement with an exhaustive scan.

    flock /tmp/chromatica-bench.lock .venv/bin/python bench/bench_contain.py [--n 1000000] [--queries 50]
        [--palette-exact-max 20000] [--corpus-files 600] [--out DIR] [--rebuild]

The data set (cached in OUT/contain) is bench_million's (links of real JPEGs in folders of FILES_PER_FOLDER,
synthetic histograms, the PCA layout from 50,000) with header details: taken over 2012-2026 (10% from the
mtime, with no camera), 40 camera models and a rare one on 0.01% of rows, orientations mixed.
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
import calendar
import contextlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import BENCH_DIR, MAX_DIMENSION, Summary, begin, finish, section
from bench_million import Runs, ensure_dataset, percentiles
from bench_search import base_histograms, mixes
from bench_web import FILES_PER_FOLDER

from chromatica_watch.core.records import PhotoDetails
from chromatica_watch.search.ask import Ask, parse_ask

CONTAIN_VERSION = 1
TOP = 10
PCA_FROM = 50_000
TARGET_P95_MS = 50.0
TARGET_AGREEMENT = 0.95
TOMBSTONED = 0.2
SPAN = (calendar.timegm((2012, 1, 1, 0, 0, 0)), calendar.timegm((2026, 1, 1, 0, 0, 0)))
SOURCES = ("exif", "xmp", "mtime")
MODELS = {"Canon": "EOS R5|EOS R6|EOS 5D Mark IV|EOS 90D|EOS M50", "NIKON": "Z 6|Z 7II|D750|D850|Z fc",
          "SONY": "ILCE-7M3|ILCE-7RM4|ILCE-6400|RX100|ILCE-9", "FUJIFILM": "X-T3|X-T4|X100V|X-E4|GFX 50S",
          "OLYMPUS": "E-M1|E-M5|E-M10|PEN-F|TG-6", "Panasonic": "DC-G9|DC-GH5|DMC-LX100|DC-S5|DC-FZ1000",
          "Apple": "iPhone 8|iPhone 11|iPhone 13 Pro|iPhone 15|iPad Air",
          "Google": "Pixel 4a|Pixel 6|Pixel 7|Pixel 8|Pixel 9"}
RARE_CAMERA, RARE_EVERY = "Leica M11 Monochrom", 10_000  # on 0.01% of the rows
CAMERAS = (*(f"{make} {model}" for make, models in MODELS.items() for model in models.split("|")), RARE_CAMERA)
ORIENTATIONS = ("landscape", "portrait", "square")
KINDS = ("lone colour", "two shares", "avoid only", "contain + avoid", "whole palette")


# -- the library's details ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Library:
    """Row i's details (row i: bench_web's relpath(i), catalog id i + 1)."""

    taken: np.ndarray  # int64 epoch seconds (wall clock read as UTC)
    source: np.ndarray  # index into SOURCES
    camera: np.ndarray  # index into CAMERAS (the rare one last), -1: none
    orientation: np.ndarray

    def details(self, i: int) -> PhotoDetails:
        camera = int(self.camera[i])
        return PhotoDetails(datetime.fromtimestamp(int(self.taken[i]), UTC).replace(tzinfo=None),
                            SOURCES[self.source[i]], None if camera < 0 else CAMERAS[camera],
                            ORIENTATIONS[self.orientation[i]])


def library(n: int) -> Library:
    rng = np.random.default_rng(23)
    taken = rng.integers(SPAN[0], SPAN[1], n)
    source = rng.choice(len(SOURCES), n, p=[0.85, 0.05, 0.10])
    camera = np.where(source == SOURCES.index("mtime"), -1, rng.integers(0, len(CAMERAS) - 1, n))
    rare = np.arange(n) % RARE_EVERY == RARE_EVERY // 2
    camera[rare], source[rare] = len(CAMERAS) - 1, 0
    return Library(taken, source.astype(np.int8), camera, rng.choice(3, n, p=[0.6, 0.35, 0.05]).astype(np.int8))


# -- filters ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filter:
    label: str
    folders: tuple[str, ...] = ()
    first_folders: float = 0.0  # the folders kept: the first this many (a fraction: one folder)
    after: int | None = None
    before: int | None = None
    camera: str | None = None

    def words(self, palette: bool) -> dict[str, Any]:
        """parse_ask's keywords; a whole palette with no filter gets one keeping every photo."""
        day = lambda t: None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")  # noqa: E731
        after = "2000" if palette and self.label == "100%" else day(self.after)
        return {"folders": self.folders, "taken_after": after, "taken_before": day(self.before), "camera": self.camera}

    def mask(self, lib: Library) -> np.ndarray:
        """The rows it keeps, from the generated details alone."""
        n = len(lib.taken)
        keep = np.ones(n, bool)
        if self.folders:
            keep &= np.arange(n) // FILES_PER_FOLDER < max(self.first_folders, 1)
        if self.after is not None:
            keep &= (lib.taken >= self.after) & (lib.taken < self.before)
        if self.camera is not None:
            keep &= lib.camera == len(CAMERAS) - 1
        return keep


def range_globs(root: str, count: int, width: int = 4) -> tuple[str, ...]:
    """Globs (or absolute folders) on bench_web's folders d0000... for exactly the first `count` of them."""
    out, start = [], 0
    while start < count:
        block = 1
        while start % (block * 10) == 0 and start + block * 10 <= count:
            block *= 10
        fixed = width - len(str(block)) + 1
        out.append(f"{root}/d{f'{start:0{width}d}'[:fixed]}{'*' if block > 1 else ''}")
        start += block
    return tuple(out)


def make_filters(n: int, root: str) -> list[Filter]:
    folders = -(-n // FILES_PER_FOLDER)
    span = SPAN[1] - SPAN[0]
    after = SPAN[0] + int(0.3 * span)

    def share(label: str, of_folders: float, of_dates: float = 1.0) -> Filter:
        count = folders * of_folders
        if count < 1:  # less than a folder: the first one and a share of the dates
            of_dates *= count
        globs = range_globs(root, max(round(count), 1))
        dates = {} if of_dates >= 1 else {"after": after, "before": after + int(of_dates * span)}
        return Filter(label, globs, count, **dates)

    return [Filter("100%"), share("10%", 0.1), share("1%", 0.1, 0.1), share("0.01%", 0.0001),
            Filter("0.01% camera", camera=RARE_CAMERA.split()[0])]


# -- queries ------------------------------------------------------------------------------------------

def colour_words(kind: str, count: int, base: np.ndarray) -> list[dict[str, list[str]]]:
    """parse_ask's colours and colours to avoid for `count` queries of one kind, from the data's palette."""
    from chromatica_watch.colour.rerank import dominant_colors

    rng = np.random.default_rng(KINDS.index(kind) + 100)

    def dominant(least: int = 1) -> list[tuple[str, float]]:
        while True:
            found = dominant_colors(mixes(base, 1, rng)[0], top=4, min_share=0.02)
            if len(found) >= least:
                return found

    out: list[dict[str, list[str]]] = []
    while len(out) < count:
        if kind == "lone colour":
            found = dominant()
            out.append({"colors": [found[int(rng.integers(0, min(2, len(found))))][0]], "avoid": []})
        elif kind == "two shares":
            (a, _), (b, _) = dominant(2)[:2]
            sa, sb = rng.uniform(0.05, 0.45, 2)
            out.append({"colors": [f"{a}:{sa:.2f}", f"{b}:{sb:.2f}"], "avoid": []})
        elif kind == "avoid only":
            out.append({"colors": [], "avoid": [dominant()[0][0]]})
        elif kind == "contain + avoid":
            a, b = dominant()[0][0], dominant()[0][0]
            if np.linalg.norm(np.subtract(*(parse_ask([c]).contains[0].lab for c in (a, b)))) > 30:
                out.append({"colors": [a], "avoid": [b]})
        else:
            colours = dominant(2)
            weights = np.array([s for _, s in colours])
            percent = np.maximum(np.round(weights / weights.sum() * 100).astype(int), 1)
            percent[0] += 100 - percent.sum()
            out.append({"colors": [f"{h}:{p / 100:.2f}" for (h, _), p in zip(colours, percent, strict=True)],
                        "avoid": []})
    return out


def make_cells(filters: Sequence[Filter], count: int) -> dict[tuple[str, str], list[Ask]]:
    cells, base = {}, base_histograms()
    for kind in KINDS:
        words = colour_words(kind, count, base)
        for f in filters:
            cells[kind, f.label] = [parse_ask(w["colors"], avoid=w["avoid"], **f.words(kind == "whole palette"))
                                    for w in words]
    return cells


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


def exhaustive(catalog: Any, cells: dict[tuple[str, str], list[Ask]], members: dict[str, np.ndarray],
               taken_by_id: np.ndarray, exact_max: int) -> dict[tuple[str, str], list[Best | None]]:
    """Every live row of each filter scored as the search scores it: one pass over the catalog's histograms."""
    from chromatica_watch.colour import contain, rerank

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
                    ok = np.ones(len(i), bool)
                    for colour in ask.avoid:
                        ok &= contain.held(h, colour.lab) <= colour.share
                    b.eligible += int(ok.sum())
                    io, ho = (i, h) if ok.all() else (i[ok], h[ok])
                    if ask.contains:
                        score = contain.containment_score(ho, [c.wanted for c in ask.contains])[0]
                        b.merge(score, io.astype(float), io)
                    else:  # newest taken first, then the newest indexed
                        b.merge(-taken_by_id[io].astype(float), -io.astype(float), io)
    print(f"  exhaustive containment and avoidance: {time.perf_counter() - started:.0f} s", flush=True)
    for label, parts in palette_rows.items():
        started = time.perf_counter()
        i, h = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        for ask, b in zip(cells["whole palette", label], best["whole palette", label], strict=True):
            assert b is not None and ask.histogram is not None
            b.merge(rerank.emd_many(ask.histogram / ask.histogram.sum(), h), i.astype(np.float64), i)
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
            overlaps, short = [], 0
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
            cell = {"agreement": round(float(np.mean(overlaps)), 3) if overlaps else None, "short": short,
                    "errors": len(errors), "first_error": errors[0] if errors else None,
                    "stages_ms": {k: percentiles(v or [np.nan]) for k, v in stages.items()}}
            out["cells"][f"{kind} | {label}"] = cell
            print(f"  {kind:>16} | {label:<13} agreement {cell['agreement']}  short {short}  p50/p95 in-process: "
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
    summary, started_at = begin("bench_contain", {"n": args.n, "queries": args.queries,
                                                  "palette_exact_max": args.palette_exact_max})
    section(f"Data set: {args.n} photos with header details")
    lib = library(args.n)
    ds = ensure_dataset(data, args.n, args.corpus_files, {"pca": PCA_FROM}, args.rebuild, lib.details,
                        name=f"contain-v{CONTAIN_VERSION}")
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
        measured = {key.split(" | ")[1]: c["agreement"] for key, c in rows["agreement"]["cells"].items()
                    if key.startswith(f"{kind} |") and c["agreement"] is not None}
        value = float(np.mean(list(measured.values())))
        rows.setdefault("agreement_by_kind", {})[kind] = {"mean": value, "filters": list(measured)}
        summary.add(f"top-10 agreement, {kind}", value, "", f">= {TARGET_AGREEMENT}", value >= TARGET_AGREEMENT)
    every = [*rows["socket"].values(), *rows["agreement"]["cells"].values()]
    for figure, key in (("fewer than k results when k exist", "short"), ("searches answered by an error", "errors")):
        count = sum(c[key] for c in every)
        summary.add(figure, count, "", "0", count == 0)


if __name__ == "__main__":
    raise SystemExit(main())
