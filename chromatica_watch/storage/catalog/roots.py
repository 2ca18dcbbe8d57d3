"""The Catalog's roots: what it knows of each watched root (live rows, failure records, retired when, last
scanned), which roots are configured, and a root moved, dropped or sampled as a whole."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import duckdb
import numpy as np

from chromatica_watch.core.records import LiveFile, Relocated, RootRecord
from chromatica_watch.storage.catalog.base import CatalogBase
from chromatica_watch.storage.catalog.errors import _mapped

logger = logging.getLogger(__name__)


class CatalogRoots(CatalogBase):
    """The roots table, and the rows of the images and failures tables taken a root at a time."""

    def _roots_table(self, cur: duckdb.DuckDBPyConnection) -> str:
        """The roots table, or an empty stand-in in a catalog made before it existed (opened read-only)."""
        found = cur.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                            "AND table_name = 'roots'").fetchall()[0][0]
        return "roots" if found else ("(SELECT NULL::VARCHAR AS root, NULL::DOUBLE AS retired_at, "
                                      "NULL::DOUBLE AS last_scan, NULL::BIGINT AS last_scan_files LIMIT 0)")

    @_mapped
    def root_records(self) -> dict[str, RootRecord]:
        """Every root the catalog knows: one with live photos, failure records or a roots entry."""
        cur = self._reader()
        roots = self._roots_table(cur)
        rows = cur.execute(f"""
            WITH img AS (SELECT root, count(*) AS live FROM images WHERE deleted_at IS NULL GROUP BY root),
                 fail AS (SELECT root, count(*) AS failed FROM failures GROUP BY root),
                 r AS (SELECT * FROM {roots}),
                 names AS (SELECT root FROM img UNION SELECT root FROM fail UNION SELECT root FROM r)
            SELECT names.root, coalesce(img.live, 0), coalesce(fail.failed, 0), r.retired_at, r.last_scan,
                   r.last_scan_files
            FROM names LEFT JOIN img USING (root) LEFT JOIN fail USING (root) LEFT JOIN r USING (root)
            ORDER BY names.root""").fetchall()
        return {root: RootRecord(root, int(live), int(failed), retired, scanned,
                                 None if files is None else int(files))
                for root, live, failed, retired, scanned, files in rows}

    @_mapped
    def holds(self, root: str) -> bool:
        """Whether the catalog has a live row or a failure record of this root."""
        row = self._reader().execute(
            "SELECT EXISTS (SELECT 1 FROM images WHERE root = ? AND deleted_at IS NULL) "
            "OR EXISTS (SELECT 1 FROM failures WHERE root = ?)", [root, root]).fetchone()
        return bool(row and row[0])

    @_mapped
    def sync_roots(self, configured: Iterable[str], now: float) -> list[str]:
        """Record which roots are configured: the others become retired (at `now`, unless they already
        were); a configured root is never retired. Returns the roots retired by this call."""
        configured = list(dict.fromkeys(configured))
        known = self.root_records()
        newly = [r for r, rec in known.items() if r not in configured and rec.retired_at is None]
        with self._transaction() as con:
            for root in configured:
                con.execute("INSERT INTO roots (root) VALUES (?) ON CONFLICT (root) DO UPDATE SET retired_at = NULL",
                            [root])
            for root in newly:
                con.execute("INSERT INTO roots (root, retired_at) VALUES (?, ?) "
                            "ON CONFLICT (root) DO UPDATE SET retired_at = excluded.retired_at", [root, now])
        return newly

    @_mapped
    def note_scan(self, root: str, when: float, files: int) -> None:
        """A full scan of `root` finished at `when` (epoch seconds) and found `files` files."""
        with self._transaction() as con:
            con.execute("INSERT INTO roots (root, last_scan, last_scan_files) VALUES (?, ?, ?) ON CONFLICT (root) "
                        "DO UPDATE SET last_scan = excluded.last_scan, last_scan_files = excluded.last_scan_files",
                        [root, when, files])

    @_mapped
    def relocate(self, old: str, new: str) -> Relocated:
        """Rewrite the root of every live row of `old` to `new`, in one transaction, reading no image. Where
        `new` already has a live row at the same path, that row (the fresher record) wins and the old one
        is tombstoned. Failure records move along; the roots entry of `old` goes (its scan time moves). The
        rows' inode change times are forgotten (a folder copied elsewhere has new ones): the next scan fills
        them in, without reading a file."""
        with self._transaction() as con:
            superseded = [int(i) for (i,) in con.execute(
                "SELECT o.id FROM images o JOIN images n ON o.path = n.path WHERE o.root = ? AND n.root = ? "
                "AND o.deleted_at IS NULL AND n.deleted_at IS NULL ORDER BY o.id", [old, new]).fetchall()]
            if superseded:
                con.execute("UPDATE images SET deleted_at = now() WHERE id IN (SELECT unnest(?::BIGINT[]))",
                            [superseded])
            moved = con.execute("UPDATE images SET root = ?, ctime_ns = NULL, updated_at = now() WHERE root = ? "
                                "AND deleted_at IS NULL", [new, old]).fetchall()[0][0]
            # A key of `failures` cannot be updated in place (DuckDB checks it as delete + insert): copy
            # the records the new root has no record of, then drop the old ones.
            con.execute("INSERT INTO failures SELECT ? AS root, f.path, f.size, f.mtime_ns, f.reason, f.attempts, "
                        "f.failed_at FROM failures f WHERE f.root = ? AND NOT EXISTS (SELECT 1 FROM failures g "
                        "WHERE g.root = ? AND g.path = f.path) AND NOT EXISTS (SELECT 1 FROM images i WHERE "
                        "i.root = ? AND i.path = f.path AND i.deleted_at IS NULL)", [new, old, new, new])
            con.execute("DELETE FROM failures WHERE root = ?", [old])
            con.execute("INSERT INTO roots (root, last_scan, last_scan_files) SELECT ?, last_scan, last_scan_files "
                        "FROM roots WHERE root = ? ON CONFLICT (root) DO UPDATE SET "
                        "last_scan = coalesce(roots.last_scan, excluded.last_scan), "
                        "last_scan_files = coalesce(roots.last_scan_files, excluded.last_scan_files)", [new, old])
            con.execute("DELETE FROM roots WHERE root = ?", [old])
        return Relocated(int(moved), superseded)

    @_mapped
    def drop_root(self, root: str) -> list[int]:
        """Forget a root: its live rows are tombstoned (returned), its failure records and entry deleted."""
        with self._transaction() as con:
            ids = [int(i) for (i,) in con.execute(
                "SELECT id FROM images WHERE root = ? AND deleted_at IS NULL ORDER BY id", [root]).fetchall()]
            if ids:
                con.execute("UPDATE images SET deleted_at = now() WHERE id IN (SELECT unnest(?::BIGINT[]))", [ids])
            con.execute("DELETE FROM failures WHERE root = ?", [root])
            con.execute("DELETE FROM roots WHERE root = ?", [root])
        return ids

    @_mapped
    def ids_outside(self, roots: Iterable[str]) -> np.ndarray:
        """Ids of the live rows whose root is not one of `roots` (hidden from searches)."""
        rows = self._reader().execute(
            "SELECT id FROM images WHERE deleted_at IS NULL AND NOT list_contains(?::VARCHAR[], root) ORDER BY id",
            [list(roots)]).fetchnumpy()
        return np.asarray(rows["id"], dtype=np.int64)

    @_mapped
    def sample_live(self, root: str, n: int) -> dict[bytes, LiveFile]:
        """Up to n live rows of a root, the same ones each time (ordered by a hash of the path)."""
        rows = self._reader().execute(
            "SELECT path, id, size, mtime_ns, content_hash FROM images WHERE root = ? AND deleted_at IS NULL "
            "ORDER BY hash(path), id LIMIT ?", [root, int(n)]).fetchall()
        return {bytes(p): LiveFile(i, s, m, h) for p, i, s, m, h in rows}
