"""Reading a whole catalog back (`validate`, and the daemon's periodic check): every value of every table and
every primary-key index walked end to end, so that damage anywhere is found now rather than by some later
read."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from chromatica_watch.core.errors import CatalogDamaged
from chromatica_watch.storage.catalog.base import CatalogBase
from chromatica_watch.storage.catalog.errors import _first_line, _mapped, _roll_back

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verified:
    """What Catalog.verify read back: rows per table (every column of each), the primary-key indexes
    walked end to end, and those it could not walk (a composite key, on a read-only connection)."""

    rows: dict[str, int]
    indexes_walked: list[str]
    indexes_not_walked: list[str]
    seconds: float


class CatalogVerify(CatalogBase):
    """The Catalog's read-back of itself."""

    @_mapped
    def verify(self) -> Verified:
        """Read back every block the catalog uses, so that damage anywhere is found now rather than by some
        later read: every value of every column of every table (data blocks, row-group and delete metadata;
        the headers and the schema were read at open), and every primary-key index end to end. Free blocks
        are not read: nothing reads them, and DuckDB writes a block whole before using it again. Raises
        CatalogDamaged naming the damage."""
        started = time.perf_counter()
        cur = self._reader()
        try:
            with _index_scans_forced(cur):
                cur.execute("BEGIN TRANSACTION")  # one snapshot, so the counts agree while the daemon writes
                try:
                    rows = {table: _read_every_value(cur, table) for table in _tables(cur)}
                    walked, not_walked = self._walk_indexes(cur)
                finally:
                    _roll_back(cur)
        finally:
            with contextlib.suppress(duckdb.Error):
                cur.close()
        verified = Verified(rows, walked, not_walked, time.perf_counter() - started)
        logger.info("catalog %s read back in %.2f s: %s rows; indexes walked %s, not walked %s", self.path,
                    verified.seconds, rows, walked, not_walked)
        return verified

    def _walk_indexes(self, cur: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
        walked: list[str] = []
        not_walked: list[str] = []
        for table, columns in _primary_keys(cur):
            name = f"{table}({', '.join(columns)})"
            if len(columns) == 1:
                _walk_single_key(cur, self.path, table, columns[0])
            elif self.read_only or not self._walk_composite_key(cur, table, columns[-1]):
                not_walked.append(name)
                continue
            walked.append(name)
        return walked, not_walked

    def _walk_composite_key(self, cur: duckdb.DuckDBPyConnection, table: str, last: str) -> bool:
        """DuckDB 2.0 has no range scan over a composite key, but checking a new key for conflicts walks
        the index down to the existing key it extends. So every key, its last column extended by one
        byte, is inserted and rolled back: every node of the index is read. (A NUL byte: no POSIX path
        holds one, so no extended key can exist already.) False if the last column cannot be extended."""
        kind = _column_type(cur, table, last)
        suffix = {"BLOB": "'\\x00'::BLOB", "VARCHAR": "chr(0)"}.get(kind)
        if suffix is None:
            return False
        with self.lock:
            con = self._connection()
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f'INSERT INTO "{table}" SELECT * REPLACE ("{last}" || {suffix} AS "{last}") '
                            f'FROM "{table}"')
            finally:
                _roll_back(con)
        return True


def _tables(cur: duckdb.DuckDBPyConnection) -> list[str]:
    return [t for (t,) in cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND NOT temporary "
        "ORDER BY table_name").fetchall()]


def _primary_keys(cur: duckdb.DuckDBPyConnection) -> list[tuple[str, list[str]]]:
    return [(t, list(cols)) for t, cols in cur.execute(
        "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
        "WHERE constraint_type = 'PRIMARY KEY' AND database_name = current_database() ORDER BY table_name"
    ).fetchall()]


def _column_type(cur: duckdb.DuckDBPyConnection, table: str, column: str) -> str:
    row = cur.execute("SELECT data_type FROM duckdb_columns() WHERE database_name = current_database() "
                      "AND table_name = ? AND column_name = ?", [table, column]).fetchone()
    return str(row[0]) if row else ""


def _read_every_value(cur: duckdb.DuckDBPyConnection, table: str) -> int:
    """Rows of a table, after hashing every value of every column (so that every block is read)."""
    row = cur.execute(f'SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM "{table}"').fetchone()
    assert row is not None
    return int(row[0])


@contextlib.contextmanager
def _index_scans_forced(cur: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB scans a key range through its index only when few rows match (index_scan_max_count,
    index_scan_percentage; global settings): lift both while walking, then put them back."""
    row = cur.execute("SELECT current_setting('index_scan_max_count'), "
                      "current_setting('index_scan_percentage')").fetchone()
    assert row is not None
    cur.execute(f"SET index_scan_max_count = {2**62}")
    cur.execute("SET index_scan_percentage = 1.0")
    try:
        yield
    finally:
        try:
            cur.execute(f"SET index_scan_max_count = {int(row[0])}")
            cur.execute(f"SET index_scan_percentage = {float(row[1])}")
        except duckdb.Error as exc:  # an invalidated database refuses even this; the first error matters
            logger.debug("index scan settings not restored: %s", _first_line(str(exc)))


def _walk_single_key(cur: duckdb.DuckDBPyConnection, path: Path, table: str, column: str) -> None:
    """Scan the whole key range through the index, in two halves: one range holding every key is dropped by
    the optimizer as always true (column statistics) and read as a plain table scan instead."""
    col = f'"{column}"'
    row = cur.execute(f'SELECT min({col}), max({col}), count(*) FROM "{table}"').fetchone()
    assert row is not None
    low, high, n = row
    if n == 0:
        return
    mid = cur.execute(f'SELECT {col} FROM "{table}" ORDER BY {col} LIMIT 1 OFFSET ?', [n // 2]).fetchone()
    assert mid is not None
    below = cur.execute(f'SELECT count(*) FROM "{table}" WHERE {col} >= ? AND {col} < ?', [low, mid[0]]).fetchone()
    above = cur.execute(f'SELECT count(*) FROM "{table}" WHERE {col} >= ? AND {col} <= ?', [mid[0], high]).fetchone()
    assert below is not None and above is not None
    if below[0] + above[0] != n:
        raise CatalogDamaged(path, f"the index of {table}({column}) finds {below[0] + above[0]} of its {n} rows")
