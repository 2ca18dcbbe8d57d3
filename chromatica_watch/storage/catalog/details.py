"""What searches filter on, per photo: its colour fields (the coarse colour table, colourfulness, whether it is
monochrome), derived from its histogram when the row is written; and its header details (date taken and
where that date comes from, camera, orientation), read by the ingest workers from the file's headers.

A row written before these columns existed, or without details (a copy, a merge), has `details` NULL: the
daemon's details pass reads its headers (never decoding it again) and fills them, a chunk at a time.
The search table (storage/table.py) reads them all at once, then what is new.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chromatica_watch.colour import contain
from chromatica_watch.core.records import PhotoDetails
from chromatica_watch.storage.catalog.base import CatalogBase
from chromatica_watch.storage.catalog.errors import _mapped
from chromatica_watch.storage.catalog.schema import DETAILS_VERSION, _histograms_of

logger = logging.getLogger(__name__)

FACET_COLUMNS = ("id, root, path, deleted_at IS NULL AS live, palette, floor(epoch(taken))::BIGINT AS taken, "
                 "taken_source, camera, orientation, monochrome, colourfulness, details IS NOT NULL AS detailed")


def colour_columns(hists: np.ndarray) -> dict[str, pa.Array]:
    """The colour fields of rows with these histograms, as Arrow columns."""
    colourfulness, monochrome = contain.tone(hists)
    palettes = contain.palette(hists)
    return {"palette": pa.array([row.tobytes() for row in palettes], pa.binary()),
            "colourfulness": pa.array(colourfulness, pa.float32()),
            "monochrome": pa.array(monochrome, pa.bool_())}


def detail_columns(details: Sequence[PhotoDetails | None]) -> dict[str, pa.Array]:
    """The header fields of rows (None: not read yet), as Arrow columns."""
    return {"taken": pa.array([d.taken if d else None for d in details], pa.timestamp("us")),
            "taken_source": pa.array([d.taken_source if d else None for d in details], pa.string()),
            "camera": pa.array([d.camera if d else None for d in details], pa.string()),
            "orientation": pa.array([d.orientation if d else None for d in details], pa.string()),
            "details": pa.array([DETAILS_VERSION if d else None for d in details], pa.int16())}


@dataclass(frozen=True)
class FacetRows:
    """Rows as the search table keeps them, in id order: numpy columns and Python lists."""

    ids: np.ndarray  # int64
    live: np.ndarray  # bool
    roots: list[str]
    paths: list[bytes]
    palettes: np.ndarray  # uint8 (n, PALETTE_BYTES), as `contain.palette` stores it; zeros where not `coloured`
    coloured: np.ndarray  # bool
    taken: np.ndarray  # int64 epoch seconds of the wall-clock time taken; `missing` where unknown
    sources: list[str | None]
    cameras: list[str | None]
    orientations: list[str | None]
    monochrome: np.ndarray  # bool
    colourfulness: np.ndarray  # float32
    detailed: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.ids)


def _facets(table: pa.Table, missing: int) -> FacetRows:
    def flags(name: str) -> np.ndarray:
        return np.asarray(table.column(name).fill_null(False).to_numpy(zero_copy_only=False), bool)

    palettes = table.column("palette").combine_chunks()
    # A palette of another length is of an earlier form: computed again, as if missing.
    coloured = np.asarray(pc.equal(pc.binary_length(palettes), contain.PALETTE_BYTES).fill_null(False)
                          .to_numpy(zero_copy_only=False), bool)
    blocks = np.zeros((table.num_rows, contain.PALETTE_BYTES), np.uint8)
    if coloured.any():
        blob = b"".join(palettes.filter(pa.array(coloured)).to_pylist())
        blocks[coloured] = np.frombuffer(blob, np.uint8).reshape(-1, contain.PALETTE_BYTES)
    taken = table.column("taken")
    known = np.asarray(taken.is_valid().to_numpy(zero_copy_only=False), bool)
    return FacetRows(
        ids=table.column("id").to_numpy().astype(np.int64), live=flags("live"),
        roots=table.column("root").to_pylist(), paths=table.column("path").to_pylist(), palettes=blocks,
        coloured=coloured,
        taken=np.where(known, taken.fill_null(0).to_numpy(zero_copy_only=False), missing).astype(np.int64),
        sources=table.column("taken_source").to_pylist(), cameras=table.column("camera").to_pylist(),
        orientations=table.column("orientation").to_pylist(), monochrome=flags("monochrome"),
        colourfulness=np.asarray(table.column("colourfulness").fill_null(0.0).to_numpy(zero_copy_only=False),
                                 np.float32),
        detailed=flags("detailed"))


@dataclass(frozen=True)
class Undetailed:
    """A live row whose details are not read yet."""

    image_id: int
    root: str
    path: bytes
    mtime_ns: int
    width: int
    height: int


class CatalogDetails(CatalogBase):
    """Reads and writes of the detail columns."""

    @_mapped
    def undetailed(self, limit: int) -> list[Undetailed]:
        """Up to `limit` live rows whose details are not read yet, oldest first."""
        rows = self._reader().execute(
            "SELECT id, root, path, mtime_ns, width, height FROM images WHERE details IS NULL AND deleted_at IS NULL "
            "ORDER BY id LIMIT ?", [int(limit)]).fetchall()
        return [Undetailed(int(i), r, bytes(p), int(m), int(w), int(h)) for i, r, p, m, w, h in rows]

    @_mapped
    def count_undetailed(self) -> int:
        return int(self._reader().execute(
            "SELECT count(*) FROM images WHERE details IS NULL AND deleted_at IS NULL").fetchall()[0][0])

    @_mapped
    def set_details(self, ids: Sequence[int], details: Sequence[PhotoDetails]) -> None:
        """Fill the detail columns of these rows (their colour fields too, from their stored histograms)."""
        if not ids:
            return
        given = dict(zip((int(i) for i in ids), details, strict=True))
        with self._transaction() as con:
            found, hists = _stored_histograms(con, list(given))
            if len(found):
                _update_rows(con, pa.table({"id": pa.array(found, pa.int64()), **colour_columns(hists),
                                            **detail_columns([given[int(i)] for i in found])}))

    @_mapped
    def facet_rows(self, after_id: int, updated_since: float | None = None, *, missing: int = 0) -> FacetRows:
        """What the search table keeps, of the rows past `after_id` (and of those updated since then: moved,
        given details); a catalog older than version 3 has none of the detail columns (all NULL). An unknown
        date taken reads as `missing`."""
        columns = FACET_COLUMNS if self.schema_version >= 3 else (
            "id, root, path, deleted_at IS NULL AS live, NULL::BLOB AS palette, NULL::BIGINT AS taken, "
            "NULL::VARCHAR AS taken_source, NULL::VARCHAR AS camera, NULL::VARCHAR AS orientation, "
            "NULL::BOOLEAN AS monochrome, NULL::REAL AS colourfulness, false AS detailed")
        where: str = "id > ?"
        params: list[object] = [int(after_id)]
        if updated_since is not None:
            where, params = "id > ? OR epoch(updated_at) >= ?", [int(after_id), float(updated_since)]
        cur = self._reader()
        try:
            table = cur.sql(f"SELECT {columns} FROM images WHERE {where} ORDER BY id", params=params).to_arrow_table()
        finally:
            cur.close()
        return _facets(table, missing)

    @_mapped
    def details_of(self, ids: Sequence[int]) -> dict[int, dict[str, object]]:
        """The header details of these rows, as results show them (a row not read yet: all None)."""
        if not ids or self.schema_version < 3:
            return {}
        listed = ",".join(str(int(i)) for i in ids)
        cur = self._reader()
        try:
            rows = cur.execute("SELECT id, strftime(taken, '%Y-%m-%dT%H:%M:%S'), taken_source, camera, orientation "
                               f"FROM images WHERE id IN ({listed})").fetchall()
        finally:
            cur.close()
        return {int(i): {"taken": t, "taken_source": s, "camera": c, "orientation": o} for i, t, s, c, o in rows}

    @_mapped
    def clock(self) -> float:
        """The catalog's time now, epoch seconds, as `updated_at` is written and read (its time zone's wall
        clock): what a reader compares `updated_at` with."""
        cur = self._reader()
        try:
            return float(cur.execute("SELECT epoch(now()::TIMESTAMP)").fetchall()[0][0])
        finally:
            cur.close()

    @_mapped
    def uncoloured(self, limit: int) -> np.ndarray:
        """Ids of up to `limit` live rows without colour fields (written before they existed, or merged)."""
        rows = self._reader().execute(
            "SELECT id FROM images WHERE (palette IS NULL OR octet_length(palette) != ?) AND deleted_at IS NULL "
            "ORDER BY id LIMIT ?", [contain.PALETTE_BYTES, int(limit)]).fetchall()
        return np.array([r[0] for r in rows], np.int64)

    @_mapped
    def set_colours(self, ids: np.ndarray) -> None:
        """Fill the colour fields of these rows from their stored histograms."""
        with self._transaction() as con:
            found, hists = _stored_histograms(con, [int(i) for i in ids])
            if len(found):
                _update_rows(con, pa.table({"id": pa.array(found, pa.int64()), **colour_columns(hists)}))


def _stored_histograms(con: duckdb.DuckDBPyConnection, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(ids found, their histograms) of these rows, read inside the caller's transaction."""
    stored = con.sql("SELECT id, histogram FROM images WHERE id IN (SELECT unnest(?::BIGINT[]))",
                     params=[ids]).to_arrow_table()
    return stored.column(0).to_numpy().astype(np.int64), _histograms_of(stored.column(1))


def _update_rows(con: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    """Set every column of `table` but `id` on the rows of its ids (and their updated_at: the search table
    reads what changed since)."""
    con.register("_updates", table)
    try:
        sets = ", ".join([f"{c} = u.{c}" for c in table.column_names if c != "id"] + ["updated_at = now()"])
        con.execute(f"UPDATE images SET {sets} FROM _updates u WHERE images.id = u.id")
    finally:
        con.unregister("_updates")
