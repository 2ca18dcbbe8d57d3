"""What every part of the Catalog stands on: opening a catalog (checking its meta table, rewriting a
version-1 one), its one DuckDB connection (opened again after DuckDB gave the database up), the cursors
readers use, write transactions, and the meta values."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self

import duckdb

from chromatica_watch.core.errors import IndexDirError
from chromatica_watch.storage.catalog.errors import _duckdb_errors, _mapped, _roll_back
from chromatica_watch.storage.catalog.migration import migrate_v1
from chromatica_watch.storage.catalog.schema import (
    _SCHEMA,
    CATALOG_FILE,
    SCHEMA_VERSION,
    _add_detail_columns,
    _checked_meta,
    _connect,
    _schema_version,
)

logger = logging.getLogger(__name__)


class CatalogBase:
    """One DuckDB connection, opened, checked, and reopened after a fatal error; what the Catalog's writes,
    reads, roots and verify parts share."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only
        self.lock = threading.RLock()
        self._invalidated = False
        # Writes committed through this object: what a reader derived from the catalog (the daemon's counts)
        # is still current while this is unchanged, as this process is the catalog's only writer.
        self.generation = 0
        self.schema_version = SCHEMA_VERSION  # read by _check_meta: a version-1 catalog opened read-only is 1
        # This catalog's identity (a uuid4, in its meta table): what is derived from it and kept beside it
        # (the histogram file) names it, so a catalog replaced by another is never read through it.
        self.catalog_id = ""
        # A search's candidates are fetched in two halves at once: DuckDB releases the GIL, and each row is a
        # lookup in a block of its own at a million rows (400 rows: 12 ms in two halves, 20 in one).
        self._fetchers = ThreadPoolExecutor(2, thread_name_prefix="catalog-fetch")

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, index_dir: Path, fingerprint: str | None, *, read_only: bool = False,
             must_exist: bool = False) -> Self:
        """Open (or, read-write, create) the catalog of `index_dir`, refusing one made with other
        histogram settings than `fingerprint`; read-only, None opens whatever it holds (to inspect it)."""
        path = Path(index_dir) / CATALOG_FILE
        if fingerprint is None and not read_only:
            raise ValueError("a catalog opened for writing must be checked against a fingerprint")
        if (read_only or must_exist) and not path.exists():
            raise IndexDirError(f"no catalog at {path} (nothing has been indexed there yet)")
        with _duckdb_errors(path):
            is_new = not path.exists()
            con = _connect(path, read_only)
            # From here on every way out but success closes the connection: one left open (even only held by
            # an exception's traceback) keeps DuckDB's database of this path alive in the process, and the
            # next connect to the path gets that database again, even once the file was renamed aside.
            try:
                if is_new and not path.exists():
                    raise IndexDirError(f"catalog {path}: a connection to the catalog that was there before is "
                                        "still open in this process, so a new one cannot be made; start again")
                if not read_only and _schema_version(con) == "1":
                    con.close()
                    migrate_v1(path)
                    con = _connect(path, read_only)
                if not read_only:
                    con.execute(_SCHEMA)
                    _add_detail_columns(con)
                catalog = cls(con, path, read_only)
                catalog._check_meta(fingerprint)
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.close()
                raise
        return catalog

    def _check_meta(self, fingerprint: str | None) -> None:
        self.schema_version, self.catalog_id = _checked_meta(self._con, self.path, self.read_only, fingerprint)

    @_mapped
    def fingerprint(self) -> str:
        rows = self._reader().execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchall()
        return str(rows[0][0]) if rows else ""

    @_mapped
    def meta(self, key: str) -> str | None:
        rows = self._reader().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        return str(rows[0][0]) if rows else None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_mapped
    def close(self) -> None:
        with self.lock:
            self._invalidated = False  # a closed catalog is not reopened behind the caller's back
            self._fetchers.shutdown(wait=True)
            self._con.close()

    # -- DuckDB's errors and the connection behind them --------------------------------------------
    @contextlib.contextmanager
    def _duckdb_errors(self) -> Iterator[None]:
        with _duckdb_errors(self.path, self._mark_invalidated):
            yield

    def _mark_invalidated(self) -> None:
        if not self._invalidated:
            logger.warning("catalog %s: DuckDB gave the database up after a fatal error; it is opened again "
                           "at its next use", self.path)
        self._invalidated = True

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._invalidated:
            with self.lock:
                if self._invalidated:
                    self._reconnect()
        return self._con

    def _reconnect(self) -> None:
        """Close (which closes every cursor too, releasing the invalidated database) and connect again; the
        WAL is replayed, so everything committed is back. If connecting fails, the next use tries again."""
        with contextlib.suppress(duckdb.Error):
            self._con.close()
        self._con = _connect(self.path, self.read_only)
        self._invalidated = False
        logger.info("catalog %s opened again", self.path)

    def _reader(self) -> duckdb.DuckDBPyConnection:
        """A cursor of the connection: readers in other threads do not wait for the writer's lock."""
        return self._connection().cursor()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction: committed when the block ends, rolled back (first error kept) if it raises."""
        with self.lock:
            con = self._connection()
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                _roll_back(con)
                raise
            finally:
                self.generation += 1  # a failed COMMIT may still have landed: counted as a change
