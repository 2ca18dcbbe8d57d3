"""Every kind of search, from an `Ask`: the whole-palette search of the live index alone (`Searcher`), or the
search table's scan for colours to contain, colours to avoid and filters (`scan`), then results that carry
what the filters used (date taken and its source, camera, orientation, tone) and the share of each asked
colour a photo holds.

A whole palette with filters: a filter keeping at least a fifth of the photos searches the live index among
its rows only (HNSW with an id bitmap, exploring more of the graph the fewer it keeps); a narrower one ranks
its rows by their coarse colour cells (Hellinger on the 144 cells), then the best of those by the vectors the
live index holds for them (exactly as its search measures them: no walk of the graph, and with a filter
keeping 100 photos of a million, no graph that fails to reach them). Both then rerank by EMD as usual.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from chromatica_watch.colour import contain
from chromatica_watch.core.errors import UsageError
from chromatica_watch.search.ask import Ask, Colour
from chromatica_watch.search.scan import Scored, TableSearch, scope
from chromatica_watch.search.searcher import MAX_K, Result, Searcher, group_sidecars_of, normalized_query
from chromatica_watch.storage.table import TableView

logger = logging.getLogger(__name__)

# A filter keeping at least this share of the photos searches the live index among them. Below it, ranking
# by stored vectors is the faster and the better: at a million photos, a tenth kept, 25 ms against 33, and
# 0.945 of the EMD top 10 found against 0.93 (the graph, told to skip nine photos of ten, walks far).
WIDE = 0.2
MAX_EF = 4096
# A narrow filter's rows, by their coarse cells, whose stored vectors are compared (~0.3 us a row): past 4,000
# of 100,000 rows more finds nothing more of the EMD top 10; 1,000 found 0.91 of it.
PROXY_NEAREST = 4000


@dataclass(frozen=True)
class Found:
    results: list[Result]
    pending: int  # photos in scope the filters could not judge yet (headers or colours not read)

    def to_json(self) -> dict[str, object]:
        return {"results": [r.to_json() for r in self.results], "pending": self.pending}


class Finder:
    """One search over a searcher (catalog, live index, histograms) and the search table: `table` gives its
    view, up to date (loading or refreshing it), asked for only by a search that scans it (a whole palette
    alone never waits for it)."""

    def __init__(self, searcher: Searcher, table: Callable[[], TableView], searchable: tuple[str, ...] | None) -> None:
        self.searcher = searcher
        self.table_view = table
        self.searchable = searchable

    def find(self, ask: Ask, k: int, group_sidecars: bool = False) -> Found:
        if not 1 <= k <= MAX_K:
            raise UsageError(f"bad number of results {k}: must be between 1 and {MAX_K}")
        if ask.plain:
            assert ask.histogram is not None
            return Found(detailed(self.searcher, self.searcher.search(ask.histogram, k, group_sidecars=group_sidecars),
                                  ask), 0)
        view = self.table_view()
        table = TableSearch(view, self.searcher.histogram_rows)
        rows = scope(view, ask.filters, self.searchable, colours=bool(ask.contains or ask.avoid))
        window = min(2 * k, MAX_K) if group_sidecars else k
        if ask.histogram is not None:
            results = self._palette(view, ask, rows.rows, k, group_sidecars)
        else:
            found = (table.contains(ask, rows.rows, window) if ask.contains
                     else table.browse(ask, rows.rows, window))
            results = self._scored(found, ask, k, group_sidecars)
        return Found(detailed(self.searcher, results, ask, view), rows.pending)

    # -- a whole palette among a filter's rows ---------------------------------------------------
    def _palette(self, view: TableView, ask: Ask, rows: np.ndarray, k: int, group_sidecars: bool) -> list[Result]:
        assert ask.histogram is not None
        query = normalized_query(ask.histogram)
        want = max(self.searcher.k_candidates, 2 * k) * (2 if ask.avoid else 1)
        if not len(rows):
            return []
        share = len(rows) / max(int(view.live.sum()), 1)
        if share >= WIDE:
            ef = min(MAX_EF, math.ceil(max(want, 64) / share))
            ids, _ = self.searcher.live_index.search_among(query, want, view.ids[rows], ef)
            ids, hists = self.searcher.histogram_rows(ids)
        else:  # the nearest by the coarse cells' proxy, then by the vectors the index holds for them
            near = _proxy(view, query, rows, want)
            distances = self.searcher.live_index.distances_to(query, near)
            ids, hists = self.searcher.histogram_rows(near[np.argsort(distances, kind="stable")[:want]])
        ok = np.ones(len(ids), bool)
        for colour in ask.avoid:
            ok &= contain.held(hists, colour.lab) <= colour.share
        return self.searcher.rank(query, ids[ok], hists[ok], k, group_sidecars=group_sidecars)

    # -- results of the table's scan -------------------------------------------------------------
    def _scored(self, found: list[Scored], ask: Ask, k: int, group_sidecars: bool) -> list[Result]:
        ids = np.array([s.image_id for s in found], np.int64)
        rows = self.searcher.catalog.describe(ids.tolist())
        alive = [s for s in found if rows.get(s.image_id, ("", b"", False))[2]]
        shown = [s.image_id for s in alive]
        got, hists = self.searcher.histogram_rows(np.array(shown, np.int64))
        scores = np.array([s.score for s in alive], np.float64)
        groups = (group_sidecars_of(shown, rows) if group_sidecars else [[n] for n in range(len(shown))])[:k]
        results = self.searcher.results_of(shown, scores, rows, got, hists, groups)
        if ask.contains:  # a containment score is in [0, 1 + SHADE_WEIGHT]: similarity 1 when fully held
            scale = 1.0 + contain.SHADE_WEIGHT
            results = [replace(r, similarity=max(0.0, 1.0 - r.score / scale)) for r in results]
        return results



def detailed(searcher: Searcher, results: list[Result], ask: Ask, view: TableView | None = None) -> list[Result]:
    """What each result carries: its header details (from the search table's view when the search had one,
    else a lookup of the k rows in the catalog), its tone and the shares of the colours asked about (from its
    histogram)."""
    if not results:
        return results
    ids = np.array([r.id for r in results], np.int64)
    stored = view.details_of(ids) if view is not None and view.holds(ids) else searcher.catalog.details_of(ids.tolist())
    got, hists = searcher.histogram_rows(ids)
    colourfulness, monochrome = contain.tone(hists)
    colours: tuple[Colour, ...] = ask.contains + ask.avoid
    held = np.stack([contain.held(hists, c.lab) for c in colours], axis=1) if colours else np.zeros((len(got), 0))
    about = {int(i): ({**stored.get(int(i), {}), "monochrome": bool(m), "colourfulness": round(float(c), 1)},
                      tuple((colour.hex, float(v)) for colour, v in zip(colours, row, strict=True)))
             for i, c, m, row in zip(got.tolist(), colourfulness, monochrome, held, strict=True)}
    return [replace(r, details=about[r.id][0], shares=about[r.id][1]) if r.id in about else r for r in results]


def _proxy(view: TableView, query: np.ndarray, rows: np.ndarray, want: int) -> np.ndarray:
    """Ids of the rows nearest the query by the Hellinger distance of their coarse colour cells."""
    closeness = contain.coarse_affinity(view.palette, query, rows)
    take = min(len(rows), max(PROXY_NEAREST, 4 * want))
    best = np.argpartition(-closeness, take - 1)[:take] if take < len(rows) else np.arange(len(rows))
    return view.ids[rows[best]]
