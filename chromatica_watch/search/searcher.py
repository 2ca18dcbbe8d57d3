"""Search: ANN candidates from the live index, reranked by Earth Mover's Distance on their histograms.

Stage 1 asks the live index (HNSW on smoothed Hellinger vectors, `histogram.index_vectors`, or their PCA
projection; tombstones excluded by its IDSelector) for `k_candidates` neighbours, and reads their
histograms from the daemon's histogram file, or from the catalog what the file does not hold.
Stage 2 reranks them by EMD (`rerank.rerank`); the best k are looked up in the catalog for their paths,
and any tombstoned since the index answered (the catalog commits first) is dropped and the rest
ranked again. Each result carries its dominant colours, so it explains itself.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from chromatica_watch.colour import histogram, rerank
from chromatica_watch.core.errors import UsageError
from chromatica_watch.core.filetypes import group_sidecars
from chromatica_watch.core.paths import display_path
from chromatica_watch.core.records import order_as

if TYPE_CHECKING:  # imported where used: a CLI search through the daemon never loads DuckDB or FAISS
    from chromatica_watch.storage.catalog import Catalog
    from chromatica_watch.storage.histfile import HistogramFile
    from chromatica_watch.storage.index import LiveIndex

logger = logging.getLogger(__name__)

DEFAULT_K = 10
DEFAULT_K_CANDIDATES = 200
MAX_K = 1000
DOMINANT_COLORS = 5
# similarity = exp(-score / SIMILARITY_SCALE): 1 for the same colours, 1/e when every bit of colour
# must move 20 delta E on average (clearly different), ~0.05 at 60.
SIMILARITY_SCALE = 20.0

Row = tuple[str, bytes, bool]  # (root, path, live)


@dataclass(frozen=True)
class Result:
    id: int
    root: str
    path: bytes  # the catalog key: relative to root, raw bytes
    display_path: str  # absolute, printable on one line
    score: float  # EMD in delta E units: lower is more similar, 0 for the same colours
    similarity: float  # exp(-score / 20), in [0, 1]
    dominant_colors: tuple[tuple[str, float], ...]  # ('#rrggbb', share), largest share first
    offline: bool = False  # its root is not reachable now (an unplugged drive): found, not openable
    sidecars: tuple[str, ...] = ()  # with grouping: the other files of a RAW+JPEG pair, shown as this one
    details: dict[str, object] | None = None  # what filters use: taken, taken_source, camera, orientation, ...
    shares: tuple[tuple[str, float], ...] = ()  # ('#rrggbb', share held) of each colour the query asked about
    fs_sidecars: tuple[str, ...] = ()  # the sidecars as the file system names them (see `fs_path`)

    @property
    def fs_path(self) -> str:
        """The absolute path as the file system names it, for opening: its bytes through surrogateescape
        (`os.fsencode` gives them back exactly); `display_path` is for showing."""
        return os.fsdecode(os.path.join(os.fsencode(self.root), self.path))

    def to_json(self) -> dict[str, object]:
        return {
            **(self.details or {}),
            "shares": [{"hex": h, "share": round(s, 4)} for h, s in self.shares],
            "id": self.id,
            "root": display_path(self.root),
            "path": self.display_path,
            "relative_path": display_path(self.path),
            "score": round(self.score, 4),
            "similarity": round(self.similarity, 4),
            "dominant_colors": [{"hex": h, "share": round(s, 4)} for h, s in self.dominant_colors],
            "offline": self.offline,
            "sidecars": list(self.sidecars),
            "fs_path": self.fs_path,
            "fs_sidecars": list(self.fs_sidecars),
        }


def normalized_query(query_hist: np.ndarray) -> np.ndarray:
    """A query histogram summing to 1; UsageError for anything else than 1152 finite non-negative bins."""
    query = np.asarray(query_hist, dtype=np.float32).reshape(-1)
    if query.shape != (histogram.TOTAL_BINS,) or not np.all(np.isfinite(query)) or np.any(query < 0) \
            or not query.sum() > 0:
        raise UsageError(f"bad query histogram: expected {histogram.TOTAL_BINS} finite non-negative bins")
    return query / query.sum()


def similarity(score: float) -> float:
    return math.exp(-max(score, 0.0) / SIMILARITY_SCALE)


class Searcher:
    """Answers queries against a catalog and its live index; safe to call from several threads."""

    def __init__(self, catalog: Catalog, live_index: LiveIndex, k_candidates: int = DEFAULT_K_CANDIDATES,
                 refine: int = rerank.DEFAULT_REFINE, histograms: HistogramFile | None = None) -> None:
        if k_candidates < 1:
            raise ValueError("k_candidates must be at least 1")
        self.catalog = catalog
        self.live_index = live_index
        self.histograms = histograms  # the catalog's histogram file: what it holds is read from it
        self.k_candidates = k_candidates
        self.refine = refine

    def candidates(self, query_hist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1: ids of the nearest index vectors (tombstones excluded) and their histograms (see
        `histogram_rows`). A projection (the PCA layout) is asked for no more than an exact index: smoothed
        vectors live in few dimensions, so its neighbours are theirs (at 100,000 photos the EMD top 10 is
        found as often with as without narrowing twice as many by their exact distance: 0.95, in half the
        time)."""
        ids, _ = self.live_index.search(query_hist, max(self.k_candidates, k))
        return self.histogram_rows(ids)

    def histogram_rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The candidates' histograms, in their order: from the histogram file (~1 us a row), the rest from
        the catalog (~35 us a row at a million rows)."""
        if self.histograms is None:
            return self.catalog.histogram_rows(ids)
        found, hists = self.histograms.read(ids)
        if len(found) == len(ids):
            return found, hists
        more, more_hists = self.catalog.histogram_rows(ids[~np.isin(ids, found)])
        every = np.concatenate([found, more])
        order = order_as(ids, every)
        return every[order], np.concatenate([hists, more_hists])[order]

    def search(self, query_hist: np.ndarray, k: int = DEFAULT_K, *, group_sidecars: bool = False) -> list[Result]:
        """The k best matches, best first. `group_sidecars`: a camera's RAW and the JPEG or HEIF it wrote
        beside it count as one result (the better ranked shows, the other is listed in its `sidecars`)."""
        if not 1 <= k <= MAX_K:
            raise UsageError(f"bad number of results {k}: must be between 1 and {MAX_K}")
        query = normalized_query(query_hist)
        # Grouping looks at twice as many: enough for k results when every one of them is a pair.
        window = min(2 * k, MAX_K) if group_sidecars else k
        ids, hists = self.candidates(query, window)
        return self.rank(query, ids, hists, k, group_sidecars=group_sidecars)

    def rank(self, query: np.ndarray, ids: np.ndarray, hists: np.ndarray, k: int, *,
             group_sidecars: bool = False) -> list[Result]:
        """Stage 2 on these candidates: the k best by EMD to the query, checked live in the catalog."""
        window = min(2 * k, MAX_K) if group_sidecars else k
        accurate = k  # how many of the ranking's top carry the accurate distance
        while len(ids):
            order, distances = rerank.rerank(query, ids, hists, k=accurate, refine=self.refine)
            shown = order[:window].tolist()
            rows = self.catalog.describe(shown)
            dead = [i for i in shown if not rows.get(i, ("", b"", False))[2]]
            if not dead:
                groups = (group_sidecars_of(shown, rows) if group_sidecars else [[n] for n in range(len(shown))])[:k]
                if groups and groups[-1][0] >= accurate:  # pairs pulled in results ranked past k: rank those too
                    accurate = window
                    continue
                return self.results_of(shown, distances, rows, ids, hists, groups)
            # Tombstoned since the index answered (the catalog commits first): rank the rest again, so
            # that every result shown carries an accurate distance.
            logger.debug("search: %d of the best %d were deleted meanwhile", len(dead), k)
            alive = ~np.isin(ids, dead)
            ids, hists = ids[alive], hists[alive]
        return []

    def results_of(self, shown: list[int], distances: np.ndarray, rows: dict[int, Row], ids: np.ndarray,
                   hists: np.ndarray, groups: list[list[int]]) -> list[Result]:
        """Results of ranked live ids (their scores in `distances`), in groups (a RAW+JPEG pair shows as one)."""
        leaders = np.array([shown[g[0]] for g in groups], dtype=np.int64)
        results = self._results(leaders, np.array([distances[g[0]] for g in groups]), rows, ids, hists)
        return [replace(r, sidecars=tuple(_display(rows[shown[n]]) for n in g[1:]),
                        fs_sidecars=tuple(_fs(rows[shown[n]]) for n in g[1:])) if len(g) > 1 else r
                for r, g in zip(results, groups, strict=True)]

    @staticmethod
    def _results(order: np.ndarray, distances: np.ndarray, rows: dict[int, Row], ids: np.ndarray,
                 hists: np.ndarray) -> list[Result]:
        position = {image_id: n for n, image_id in enumerate(ids.tolist())}
        online = {root: os.path.isdir(root) for root, _, _ in rows.values()}  # one stat per root shown
        results = []
        for image_id, score in zip(order.tolist(), distances.tolist(), strict=True):
            root, path, _ = rows[image_id]
            results.append(Result(
                id=image_id, root=root, path=path, display_path=_display(rows[image_id]),
                score=float(score), similarity=similarity(score),
                dominant_colors=tuple(rerank.dominant_colors(hists[position[image_id]], top=DOMINANT_COLORS)),
                offline=not online[root]))
        return results


def _display(row: Row) -> str:
    return display_path(os.path.join(os.fsencode(row[0]), row[1]))


def _fs(row: Row) -> str:
    return os.fsdecode(os.path.join(os.fsencode(row[0]), row[1]))


def group_sidecars_of(ranked_ids: list[int], rows: dict[int, Row]) -> list[list[int]]:
    """`filetypes.group_sidecars` of ranked ids, by their rows."""
    return group_sidecars([(rows[i][0], rows[i][1]) for i in ranked_ids])
