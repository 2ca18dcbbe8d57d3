"""The Catalog's writes: a batch of changes committed at once (new rows, tombstones, moves, failure records),
failure records cleared, rows made stale for a new decoder, meta values set."""

from __future__ import annotations

import logging

import duckdb
import numpy as np
import pyarrow as pa

from chromatica_watch.core.records import Changes, Failure, NewImage
from chromatica_watch.storage.catalog.base import CatalogBase
from chromatica_watch.storage.catalog.details import colour_columns, detail_columns
from chromatica_watch.storage.catalog.errors import _mapped
from chromatica_watch.storage.catalog.schema import _histogram_column, _next_id

logger = logging.getLogger(__name__)


class CatalogWrites(CatalogBase):
    """Every write takes the Catalog's lock: this process is the catalog's only writer."""

    @_mapped
    def next_id(self) -> int:
        return _next_id(self._connection())

    @_mapped
    def apply(self, changes: Changes) -> list[int]:
        """Commit one batch atomically; returns the ids given to `changes.added`, in order. On any error
        nothing of the batch is stored and the error raised is the first one, never the rollback's."""
        with self._transaction() as con:
            return self._write(con, changes)

    def _write(self, con: duckdb.DuckDBPyConnection, changes: Changes) -> list[int]:
        ids = self._insert(con, changes.added)
        if changes.tombstoned:
            con.execute("UPDATE images SET deleted_at = now() WHERE deleted_at IS NULL "
                        "AND id IN (SELECT unnest(?::BIGINT[]))", [list(changes.tombstoned)])
        for m in changes.moved:
            con.execute("UPDATE images SET root = ?, path = ?, size = ?, mtime_ns = ?, ctime_ns = ?, "
                        "updated_at = now() WHERE id = ?",
                        [m.root, m.path, m.size, m.mtime_ns, m.ctime_ns, m.image_id])
        done = [(a.root, a.path) for a in changes.added] + [(m.root, m.path) for m in changes.moved]
        self._delete_failures(con, done + list(changes.cleared_failures))
        self._upsert_failures(con, changes.failed)
        return ids

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, added: list[NewImage]) -> list[int]:
        if not added:
            return []
        first = _next_id(con)
        ids = list(range(first, first + len(added)))
        hists = np.stack([a.histogram for a in added])
        table = pa.table({
            **colour_columns(hists),
            **detail_columns([a.details for a in added]),
            "id": pa.array(ids, pa.int64()),
            "root": pa.array([a.root for a in added], pa.string()),
            "path": pa.array([a.path for a in added], pa.binary()),
            "size": pa.array([a.size for a in added], pa.int64()),
            "mtime_ns": pa.array([a.mtime_ns for a in added], pa.int64()),
            "ctime_ns": pa.array([a.ctime_ns for a in added], pa.int64()),
            "content_hash": pa.array([a.content_hash for a in added], pa.string()),
            "width": pa.array([a.width for a in added], pa.int32()),
            "height": pa.array([a.height for a in added], pa.int32()),
            "histogram": _histogram_column(hists),
        })
        con.register("_new_images", table)
        try:
            columns = ", ".join(table.column_names)
            con.execute(f"INSERT INTO images ({columns}) SELECT {columns} FROM _new_images")
        finally:
            con.unregister("_new_images")
        return ids

    @_mapped
    def fill_ctimes(self, rows: list[tuple[int, int]]) -> None:
        """Set the inode change time of rows that had none (id, ctime_ns), as a scan found their unchanged
        files: one UPDATE, no file read."""
        if not rows:
            return
        table = pa.table({"id": pa.array([i for i, _ in rows], pa.int64()),
                          "ctime_ns": pa.array([c for _, c in rows], pa.int64())})
        with self._transaction() as con:
            con.register("_ctimes", table)
            try:
                con.execute("UPDATE images SET ctime_ns = c.ctime_ns FROM _ctimes c WHERE images.id = c.id")
            finally:
                con.unregister("_ctimes")

    @staticmethod
    def _delete_failures(con: duckdb.DuckDBPyConnection, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            return
        table = pa.table({"root": pa.array([k[0] for k in keys], pa.string()),
                          "path": pa.array([k[1] for k in keys], pa.binary())})
        con.register("_done_keys", table)
        try:
            con.execute("DELETE FROM failures f USING _done_keys d WHERE f.root = d.root AND f.path = d.path")
        finally:
            con.unregister("_done_keys")

    @staticmethod
    def _upsert_failures(con: duckdb.DuckDBPyConnection, failed: list[Failure]) -> None:
        for f in failed:
            con.execute(
                "INSERT INTO failures (root, path, size, mtime_ns, reason, attempts) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (root, path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
                "reason = excluded.reason, attempts = failures.attempts + 1, failed_at = now()",
                [f.root, f.path, f.size, f.mtime_ns, f.reason, f.attempts])

    @_mapped
    def clear_failures(self, root: str | None = None) -> int:
        """Delete the failure records (of one root, or all); returns how many there were."""
        with self.lock:
            con = self._connection()
            if root is None:
                row = con.execute("DELETE FROM failures").fetchone()
            else:
                row = con.execute("DELETE FROM failures WHERE root = ?", [root]).fetchone()
            self.generation += 1
        return int(row[0]) if row else 0

    @_mapped
    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as con:
            self._put_meta(con, key, value)

    @staticmethod
    def _put_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
        con.execute("DELETE FROM meta WHERE key = ?", [key])
        con.execute("INSERT INTO meta VALUES (?, ?)", [key, value])

    @_mapped
    def mark_stale(self, suffixes: list[str], key: str, value: str) -> int:
        """Make the live rows of files with these extensions match no file (mtime_ns -1) and no content (an
        empty hash), so that the next comparison with the folder decodes them again (a file whose bytes hash
        to a stored row is otherwise not decoded), and set a meta value, in one transaction."""
        with self._transaction() as con:
            self._put_meta(con, key, value)
            if not suffixes:
                return 0
            # a path is raw bytes: cast to text its non-UTF-8 bytes come out escaped, its extension intact
            row = con.execute("UPDATE images SET mtime_ns = -1, content_hash = '' WHERE deleted_at IS NULL AND "
                              r"list_contains(?, lower(regexp_extract(CAST(path AS VARCHAR), '(\.[^./]*)$', 1)))",
                              [suffixes]).fetchone()
            return int(row[0]) if row else 0
