"""The search table: what containment and filtered searches scan, one row per photo, in memory.

A question such as "at least a quarter orange, taken last summer, in this folder" cannot come from an ANN
index built for whole palettes: it is answered by scanning, vectorized, a compact table of every photo
(its coarse colour cells, 144 bytes, and its filter columns), then scoring the best candidates exactly on
their histograms. At a million photos the table is ~170 MB and a scan of it a few milliseconds.

It is derived from the catalog, never the only copy of anything: loaded whole at the first search that
needs it, then brought up to date before a search when the catalog changed (rows past the last id read,
rows updated since: moved, given details; tombstones by the catalog's deleted ids). Columns grow in place
by appending, so a search holds a `TableView` (arrays cut to the rows it saw) while the next refresh adds
more; a row's liveness or folder may change under a view (a search checks its results against the catalog
anyway: `Searcher` drops rows deleted meanwhile).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from chromatica_watch.colour import arrange, contain
from chromatica_watch.colour.contain import COARSE_CELLS, TOP_BINS

if TYPE_CHECKING:
    from chromatica_watch.storage.catalog import Catalog
    from chromatica_watch.storage.catalog.details import FacetRows

logger = logging.getLogger(__name__)

NO_DATE = np.iinfo(np.int64).min
ORIENTATIONS = ("", "landscape", "portrait", "square")  # code 0: not known
SOURCES = ("", "exif", "xmp", "png", "mtime")
_COLOUR_CHUNK = 8192
_UPDATE_MARGIN = 120.0  # seconds: a transaction's updated_at is its start, which may precede our last look


@dataclass(frozen=True)
class TableView:
    """The table as one search sees it: `n` rows, by ascending id."""

    n: int
    ids: np.ndarray
    live: np.ndarray
    root: np.ndarray  # index into roots
    roots: tuple[str, ...]
    folder: np.ndarray  # index into folders
    folders: tuple[tuple[int, bytes], ...]  # (root index, folder path relative to the root: b"" for the root)
    palette: np.ndarray  # uint8 (144, n): coarse colour cells, cell-major (a cell's column is contiguous)
    top_bins: np.ndarray  # uint16 (TOP_BINS, n): each photo's heaviest fine bins
    top_shares: np.ndarray  # uint8 (TOP_BINS, n): their shares, in 1/255ths rounded up
    coloured: np.ndarray  # has colour fields
    taken: np.ndarray  # epoch seconds of the wall-clock time taken; NO_DATE
    source: np.ndarray  # index into SOURCES
    camera: np.ndarray  # index into cameras; -1: none
    cameras: tuple[str, ...]
    orientation: np.ndarray  # index into ORIENTATIONS
    monochrome: np.ndarray
    colourfulness: np.ndarray
    detailed: np.ndarray  # its header details were read
    wall_key: np.ndarray  # its place on the colour wall (arrange.wall_keys)
    wall_order: np.ndarray  # every row position, ascending by wall_key: kept so as rows come, never sorted per ask

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Row positions of these ids (each must be in the view)."""
        return np.searchsorted(self.ids, ids)

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, held): where each of these ids is, and whether the view holds it at all."""
        ids = np.asarray(ids, np.int64)
        if not self.n:
            return np.zeros(len(ids), np.intp), np.zeros(len(ids), bool)
        at = np.minimum(self.positions(ids), self.n - 1)
        return at, self.ids[at] == ids

    def holds(self, ids: np.ndarray) -> bool:
        return bool(self.n) and bool(self.lookup(ids)[1].all())

    def details_of(self, ids: np.ndarray) -> dict[int, dict[str, object]]:
        """The header details of these rows (each in the view), as `Catalog.details_of` gives them: a search's
        results need no catalog query for them."""
        out: dict[int, dict[str, object]] = {}
        for image_id, at in zip(np.asarray(ids, np.int64).tolist(), self.positions(ids).tolist(), strict=True):
            taken, camera = int(self.taken[at]), int(self.camera[at])
            read = bool(self.detailed[at])
            out[image_id] = {
                "taken": _iso(taken) if read and taken != NO_DATE else None,
                "taken_source": (SOURCES[self.source[at]] or None) if read else None,
                "camera": self.cameras[camera] if read and camera >= 0 else None,
                "orientation": (ORIENTATIONS[self.orientation[at]] or None) if read else None}
        return out


def _iso(epoch_seconds: int) -> str:
    """Wall-clock epoch seconds as the catalog writes a date taken (to the second)."""
    return (datetime(1970, 1, 1) + timedelta(seconds=epoch_seconds)).strftime("%Y-%m-%dT%H:%M:%S")


class _Codes:
    """Strings to small integer codes, in order of first sight (roots, folders, cameras)."""

    def __init__(self) -> None:
        self.values: list[object] = []
        self._code: dict[object, int] = {}

    def code(self, value: object) -> int:
        found = self._code.get(value)
        if found is None:
            found = self._code[value] = len(self.values)
            self.values.append(value)
        return found


class SearchTable:
    """The table of one catalog; `view()` brings it up to date (under its lock) and returns a snapshot."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._generation = -1  # the catalog's generation when last brought up to date
        self._last_id = 0
        self._looked = 0.0  # the catalog's clock when last brought up to date (epoch seconds)
        self._deleted = 0  # tombstones applied
        self._n = 0
        self._roots, self._folders, self._cameras = _Codes(), _Codes(), _Codes()
        self._cols: dict[str, np.ndarray] = {}
        self._palette = np.zeros((COARSE_CELLS, 0), np.uint8)
        self._top_bins = np.zeros((TOP_BINS, 0), np.uint16)
        self._top_shares = np.zeros((TOP_BINS, 0), np.uint8)
        self._wall_order = np.zeros(0, np.int64)
        self._rekey: list[np.ndarray] = []  # positions of rows whose colours were rewritten this refresh
        self._view: TableView | None = None

    def view(self) -> TableView:
        with self._lock:
            if self._view is None or self.catalog.generation != self._generation:
                generation = self.catalog.generation  # read first: a write meanwhile is seen next time
                self._refresh()
                self._generation = generation
            assert self._view is not None
            return self._view

    # -- bringing it up to date ------------------------------------------------------------------
    def _refresh(self) -> None:
        first = self._view is None
        self._grow(0)  # the columns exist, if empty
        # Rows updated since the last look, and a margin before it; never "since the latest update seen": after a
        # build or a relocate whose rows share one time, that re-read every row at each refresh (5 s at 1M).
        since = None if first else self._looked - _UPDATE_MARGIN
        looked = self.catalog.clock()  # read first: a row updated meanwhile is read next time
        rows = self.catalog.facet_rows(self._last_id, since, missing=int(NO_DATE))
        known = self._n
        self._apply(rows)
        self._colour_missing()
        self._order_wall(known)
        self._looked = looked
        self._apply_tombstones()
        self._view = self._snapshot()
        if first:
            logger.info("search table: %d photos", self._n)

    def _apply(self, rows: FacetRows) -> None:
        if not len(rows):
            return
        ids = rows.ids
        fresh = ids > self._last_id  # the rest were read before (every id up to the last one read is here)
        added = int(fresh.sum())
        self._grow(added)
        positions = np.empty(len(ids), np.intp)
        positions[fresh] = np.arange(self._n, self._n + added)
        positions[~fresh] = np.searchsorted(self._cols["ids"][:self._n], ids[~fresh])
        self._write(rows, ids, positions)
        self._n += added
        if fresh.any():
            self._last_id = int(ids[fresh].max())

    def _grow(self, more: int) -> None:
        need = self._n + more
        capacity = len(self._cols["ids"]) if self._cols else 0
        if need <= capacity and self._cols:
            return
        capacity = max(need, capacity + capacity // 8, 1024)  # ~230 B a row: grown an eighth at a time
        kinds = {"ids": np.int64, "live": bool, "root": np.int32, "folder": np.int32, "coloured": bool,
                 "taken": np.int64, "source": np.int8, "camera": np.int32, "orientation": np.int8,
                 "monochrome": bool, "colourfulness": np.float32, "detailed": bool, "wall_key": np.float64}
        for name, kind in kinds.items():
            grown = np.zeros(capacity, kind)
            if name in self._cols:
                grown[:self._n] = self._cols[name][:self._n]
            self._cols[name] = grown
        self._palette = _grown(self._palette, capacity, self._n)
        self._top_bins = _grown(self._top_bins, capacity, self._n)
        self._top_shares = _grown(self._top_shares, capacity, self._n)

    def _write(self, rows: FacetRows, ids: np.ndarray, at: np.ndarray) -> None:
        c = self._cols
        c["ids"][at] = ids
        c["live"][at] = rows.live
        c["root"][at] = [self._roots.code(r) for r in rows.roots]
        c["folder"][at] = [self._folders.code((self._roots.code(r), p.rpartition(b"/")[0]))
                           for r, p in zip(rows.roots, rows.paths, strict=True)]
        c["coloured"][at] = rows.coloured
        self._set_palettes(at, rows.palettes)
        c["taken"][at] = rows.taken
        c["source"][at] = [SOURCES.index(s) if s in SOURCES else 0 for s in rows.sources]
        c["camera"][at] = [-1 if s is None else self._cameras.code(s) for s in rows.cameras]
        c["orientation"][at] = [ORIENTATIONS.index(o) if o in ORIENTATIONS else 0 for o in rows.orientations]
        c["monochrome"][at] = rows.monochrome
        c["colourfulness"][at] = rows.colourfulness
        c["detailed"][at] = rows.detailed

    def _colour_missing(self) -> None:
        """Rows the catalog holds no colour fields for (written before they existed, merged in): computed here
        from their histograms, in memory (the daemon's details pass stores them), so that every search sees
        every photo at once, in an index of any age, read-only too."""
        missing = np.flatnonzero(self._cols["live"][:self._n] & ~self._cols["coloured"][:self._n])
        if not len(missing):
            return
        logger.info("search table: computing the colour fields of %d photo(s) from their histograms", len(missing))
        ids = self._cols["ids"][missing]
        for start in range(0, len(ids), _COLOUR_CHUNK):
            got, hists = self.catalog.histogram_rows(ids[start:start + _COLOUR_CHUNK])
            if not len(got):
                continue
            at = np.searchsorted(self._cols["ids"][:self._n], got)
            colourfulness, monochrome = contain.tone(hists)
            self._set_palettes(at, contain.palette(hists))
            self._cols["colourfulness"][at] = colourfulness
            self._cols["monochrome"][at] = monochrome
            self._cols["coloured"][at] = True

    def _set_palettes(self, at: np.ndarray, stored: np.ndarray) -> None:
        self._rekey.append(np.asarray(at, np.int64))
        cells, bins, shares = contain.split_palette(stored)
        self._palette[:, at] = cells.T
        self._top_bins[:, at] = bins.T
        self._top_shares[:, at] = shares.T

    def _order_wall(self, known: int) -> None:
        """The wall's order with this refresh's rows: new rows merged in (O(n), no sort), unless a row seen
        before changed place (its colours rewritten: a changed file), which sorts them all again."""
        rekey = np.unique(np.concatenate(self._rekey)) if self._rekey else np.zeros(0, np.int64)
        self._rekey = []
        if not len(rekey):
            return
        c = self._cols
        before = c["wall_key"][rekey].copy()
        c["wall_key"][rekey] = arrange.wall_keys(self._top_bins[:, rekey], self._top_shares[:, rekey],
                                                 c["monochrome"][rekey])
        old = rekey < known
        keys = c["wall_key"][:self._n]
        if not known or not np.array_equal(before[old], keys[rekey[old]]):
            self._wall_order = arrange.full_order(keys)
        else:
            self._wall_order = arrange.insert_ordered(self._wall_order, keys, np.arange(known, self._n))

    def _apply_tombstones(self) -> None:
        """Rows deleted since: the catalog's tombstones are few next to its rows, and only grow."""
        deleted = self.catalog.deleted_ids()
        if len(deleted) == self._deleted or not self._n:
            return
        ids = self._cols["ids"][:self._n]
        at = np.searchsorted(ids, deleted)
        ok = at < self._n
        ok[ok] = ids[at[ok]] == deleted[ok]
        self._cols["live"][at[ok]] = False
        self._deleted = len(deleted)

    def _snapshot(self) -> TableView:
        n, c = self._n, self._cols
        return TableView(
            n=n, ids=c["ids"][:n], live=c["live"][:n], root=c["root"][:n], roots=tuple(map(str, self._roots.values)),
            folder=c["folder"][:n], folders=tuple(self._folders.values),  # type: ignore[arg-type]
            palette=self._palette[:, :n], top_bins=self._top_bins[:, :n], top_shares=self._top_shares[:, :n],
            coloured=c["coloured"][:n], taken=c["taken"][:n], source=c["source"][:n],
            camera=c["camera"][:n], cameras=tuple(map(str, self._cameras.values)),
            orientation=c["orientation"][:n], monochrome=c["monochrome"][:n],
            colourfulness=c["colourfulness"][:n], detailed=c["detailed"][:n], wall_key=c["wall_key"][:n],
            wall_order=self._wall_order)


def _grown(array: np.ndarray, capacity: int, n: int) -> np.ndarray:
    """A (k, capacity) copy of a (k, _) column block, its first n columns kept."""
    out = np.zeros((array.shape[0], capacity), array.dtype)
    out[:, :n] = array[:, :n]
    return out
