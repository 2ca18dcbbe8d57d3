"""Looking at a library by colour rather than asking it: the colour wall (its photos in the wall's order,
a page at a time) and the library's palette (the colours most of its photos hold). Both read the search
table only: the wall's order is kept there as photos are indexed (`TableView.wall_order`), so a page is a
mask and a slice of it, and the palette counts the coarse cells every photo keeps (colour/arrange.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from chromatica_watch.colour import arrange
from chromatica_watch.colour.histogram import TOTAL_BINS
from chromatica_watch.colour.rerank import dominant_colors
from chromatica_watch.core.paths import absolute_key, display_path
from chromatica_watch.search.ask import Filters
from chromatica_watch.search.scan import scope
from chromatica_watch.storage.table import TableView

MAX_PAGE = 500
PALETTE_SWATCHES = 24
TILE_COLOURS = 5


@dataclass(frozen=True)
class Tile:
    id: int
    colors: list[tuple[str, float]]  # its main colours, from its heaviest bins
    path: str = ""  # where it is, shown (`named`)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path,
                "dominant_colors": [{"hex": h, "share": round(s, 4)} for h, s in self.colors]}


@dataclass(frozen=True)
class WallPage:
    tiles: list[Tile]
    start: int  # the first tile's place on the wall
    total: int  # photos on the wall
    pending: int  # photos of these folders not shown yet: their colours (or headers) are not read

    @property
    def next(self) -> int | None:
        end = self.start + len(self.tiles)
        return end if end < self.total else None

    def to_json(self) -> dict[str, Any]:
        return {"tiles": [t.to_json() for t in self.tiles], "start": self.start, "total": self.total,
                "next": self.next, "pending": self.pending}


def wall_page(view: TableView, filters: Filters, searchable: Sequence[str] | None, start: int, limit: int
              ) -> WallPage:
    """Photos `start` to `start + limit` of the wall of the photos passing `filters`."""
    limit = max(1, min(limit, MAX_PAGE))
    start = max(0, start)
    kept = scope(view, filters, searchable, colours=True)
    keep = np.zeros(view.n, bool)
    keep[kept.rows] = True
    order = view.wall_order[keep[view.wall_order]]
    page = order[start:start + limit]
    return WallPage([_tile(view, int(at)) for at in page.tolist()], start, len(order), kept.pending)


def wall_of(view: TableView, ids: Sequence[int]) -> list[Tile]:
    """These photos (a search's results) in the wall's order; ids the view does not hold are left out."""
    at, held = view.lookup(np.asarray(ids, np.int64))
    at = at[held]
    at = at[np.argsort(view.wall_key[at], kind="stable")]
    return [_tile(view, int(p)) for p in at.tolist()]


def named(tiles: list[Tile], where: Mapping[int, tuple[str, bytes, bool]]) -> list[Tile]:
    """The tiles with their paths (`Catalog.describe` of their ids), shown as every path is (`display_path`)."""
    return [replace(t, path=display_path(absolute_key(where[t.id][:2]))) if t.id in where else t for t in tiles]


def _tile(view: TableView, at: int) -> Tile:
    hist = np.zeros(TOTAL_BINS, np.float64)
    np.add.at(hist, view.top_bins[:, at].astype(np.intp), view.top_shares[:, at].astype(np.float64) / 255.0)
    return Tile(int(view.ids[at]), dominant_colors(hist, top=TILE_COLOURS, min_share=0.004))


def library_palette(view: TableView, filters: Filters, searchable: Sequence[str] | None,
                    top: int = PALETTE_SWATCHES) -> dict[str, Any]:
    """The colours held by the most photos passing `filters` (arrange.swatches), how many photos were
    looked at, and how many could not be yet."""
    kept = scope(view, filters, searchable, colours=True)
    counts = arrange.cell_counts(view.palette, kept.rows)
    weights = arrange.bin_weights(view.top_bins, view.top_shares, kept.rows)
    photos = len(kept.rows)
    return {"photos": photos, "pending": kept.pending,
            "swatches": arrange.swatches(counts, weights, photos, max(1, min(top, 144)))}
