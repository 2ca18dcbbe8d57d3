"""The catalog: the committed record of what is indexed (DuckDB). The only module importing duckdb.

A file is keyed by (root, path): the watched root's absolute path and the file's path relative to it
as raw bytes (POSIX form), so names that are not valid UTF-8 survive exactly. Ids are never reused;
the live index is derived from this table and can always be rebuilt from it.

No DuckDB exception leaves this module: every public Catalog method raises StorageError (the disk is full
or failing: retry later), CatalogDamaged (the file does not read back: set it aside with `quarantine`),
IndexDirBusy or IndexDirError.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import duckdb
import numpy as np
import pyarrow as pa

from chromatica_watch.colour.histogram import TOTAL_BINS, pack, unpack
from chromatica_watch.core.errors import CatalogDamaged, ChromaticaError, IndexDirBusy, IndexDirError, StorageError
from chromatica_watch.core.fsutil import fsync_dir
from chromatica_watch.core.records import (
    Changes,
    Failure,
    LiveFile,
    Move,
    NewImage,
    Relocated,
    RootRecord,
    StoredImage,
    order_as,
)

logger = logging.getLogger(__name__)

# The records live in records.py; callers name them here too.
__all__ = ["CATALOG_FILE", "Catalog", "Changes", "Failure", "LiveFile", "Move", "NewImage", "Relocated",
           "RootRecord", "StoredImage", "Verified", "quarantine"]

CATALOG_FILE = "chromatica_metadata.db"
# 2: histograms stored sparse in float16 (histogram.pack), 0.5 KB instead of 4.6 KB a photo. A version-1
# catalog (dense FLOAT[1152]) is read as it is, and rewritten in version 2 when opened for writing.
SCHEMA_VERSION = 2
READABLE_VERSIONS = ("1", "2")
MIGRATING_SUFFIX = ".migrating"
# DuckDB's cache of the blocks it read, per process (its default is 80% of the machine's memory): the
# daemon's searches read a few hundred histograms each, scattered over the whole table.
MEMORY_LIMIT = "256MB"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id BIGINT PRIMARY KEY,
    root VARCHAR NOT NULL,
    path BLOB NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    content_hash VARCHAR NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    histogram BLOB NOT NULL,
    indexed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS failures (
    root VARCHAR NOT NULL,
    path BLOB NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    reason VARCHAR NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    failed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (root, path)
);
CREATE TABLE IF NOT EXISTS roots (
    root VARCHAR PRIMARY KEY,
    retired_at DOUBLE,
    last_scan DOUBLE,
    last_scan_files BIGINT
);
"""


# -- DuckDB's errors, mapped to ours ---------------------------------------------------------------
# What DuckDB 2.0.1 raised here, with a real tmpfs filled up and real catalog files damaged on purpose:
# - COMMIT on a full disk, writing the WAL: TransactionException "TransactionContext Error: Failed to commit:
#   Could not write file ".../chromatica_metadata.db.wal": No space left on device". DuckDB has already ended
#   the transaction (a ROLLBACK then raises TransactionException "cannot rollback - no transaction is active")
#   and cut the WAL back; the connection stays usable and nothing of the batch is stored.
# - a checkpoint on a full disk, run by a COMMIT that takes the WAL past checkpoint_threshold (16 MiB) or by
#   CHECKPOINT: FatalException "FATAL Error: Failed to create checkpoint because of error: Could not write file
#   ".../chromatica_metadata.db": No space left on device". The database is then invalidated: every later
#   statement, ROLLBACK included, raises FatalException "... database has been invalidated because of a
#   previous fatal error. The database must be restarted prior to being used again. Original error: ..."
#   until the connection is closed and opened again (which works even while the disk is still full). After
#   that reopen everything committed before is there and nothing of the batch whose COMMIT failed (DuckDB
#   skips the WAL write of a commit that checkpoints).
# - close() on a full disk raises nothing: its checkpoint is abandoned and the WAL kept.
# - a damaged block: plain duckdb.Error (no subclass) "Corrupt database file: computed checksum A does not
#   match stored checksum B in block at location N", only when a statement reads that block: connect reads
#   the headers and the schema, a histogram block is read only when that column is selected. The connection
#   stays usable. Read through an Arrow stream (to_arrow_reader) the same error comes as a bare OSError
#   "Data Corruption Error: Corrupt database file: ...".
# - a truncated file: IOException "IO Error: Could not read enough bytes from file "...": attempted to read
#   262144 bytes from location N", at connect when the metadata is cut off, else at the read.
# - a damaged main header, an empty file, a file that is not DuckDB's: IOException "IO Error: The file "..."
#   exists, but it is not a valid DuckDB database file!" at connect; a damaged database header (byte 4096 or
#   8192): the checksum error above, at connect.
# - garbage in the .wal file: nothing; DuckDB ignores it as a torn write.
# - the file held by another process: IOException "IO Error: Could not set lock on file "...": Conflicting
#   lock is held in ... (PID n)".
# DuckDB ends its I/O messages with strerror(errno), which is what tells a storage failure apart.
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG)
_STORAGE_STRERRORS = tuple(os.strerror(e) for e in _STORAGE_ERRNOS)
_CHECKSUM_MISMATCH = re.compile(r"Corrupt database file:.*?in block at location (\d+)")
_SHORT_READ = re.compile(r"Could not read enough bytes from file .*?from location (\d+)")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def _damage(text: str) -> str | None:
    """The damage a DuckDB message reports, in a few words; None if it reports none."""
    if m := _CHECKSUM_MISMATCH.search(text):
        return f"checksum mismatch in the block at byte {m.group(1)}"
    if "Corrupt database file" in text:
        return "checksum mismatch"
    if m := _SHORT_READ.search(text):
        return f"truncated: the block at byte {m.group(1)} lies past the end of the file"
    if "not a valid DuckDB database file" in text:
        return "not a DuckDB database file"
    return None


def _doing(text: str) -> str:
    lowered = text.lower()
    if any(w in lowered for w in ("write", "checkpoint", "commit", "fsync", "truncate")):
        return "writing"
    return "reading" if "read" in lowered else "using"


def _domain_error(exc: BaseException, path: Path) -> ChromaticaError:
    text = str(exc)
    logger.debug("catalog %s: DuckDB says: %s", path, text)
    for strerror in _STORAGE_STRERRORS:
        if strerror in text:
            reason = strerror.lower()
            return StorageError(f"{reason} {_doing(text)} the catalog {path}", reason, path)
    if (damage := _damage(text)) is not None:
        return CatalogDamaged(path, damage)
    if "Could not set lock" in text:
        return IndexDirBusy(f"catalog {path} is in use by another process (is the daemon running?)")
    return IndexDirError(f"catalog {path}: {_first_line(text)}")


def _invalidates(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.FatalException) or "database has been invalidated" in str(exc)


@contextlib.contextmanager
def _duckdb_errors(path: Path, on_invalidated: Callable[[], None] | None = None) -> Iterator[None]:
    """DuckDB's errors inside become ours; `on_invalidated` hears of a database DuckDB gave up on."""
    try:
        yield
    except duckdb.Error as exc:
        if on_invalidated is not None and _invalidates(exc):
            on_invalidated()
        raise _domain_error(exc, path) from exc
    except OSError as exc:
        if exc.errno is not None:
            raise
        # an Arrow stream of a DuckDB result reports DuckDB's error as a bare OSError
        raise _domain_error(exc, path) from exc


P = ParamSpec("P")
R = TypeVar("R")


def _mapped(method: Callable[Concatenate[Catalog, P], R]) -> Callable[Concatenate[Catalog, P], R]:
    """A Catalog method that raises only our errors; a generator method is covered while it is iterated."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def iterate(self: Catalog, *args: P.args, **kwargs: P.kwargs) -> Iterator[Any]:
            with self._duckdb_errors():
                yield from cast(Iterator[Any], method(self, *args, **kwargs))
        return cast("Callable[Concatenate[Catalog, P], R]", iterate)

    @functools.wraps(method)
    def call(self: Catalog, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._duckdb_errors():
            return method(self, *args, **kwargs)
    return call


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(path), read_only=read_only, config={"memory_limit": MEMORY_LIMIT})


def _roll_back(con: duckdb.DuckDBPyConnection) -> None:
    """End a failed transaction without hiding why it failed: after a failed COMMIT DuckDB has already
    ended it ("no transaction is active"), and an invalidated database refuses even a ROLLBACK."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error as exc:
        logger.debug("no rollback after the failed transaction: %s", _first_line(str(exc)))


@dataclass(frozen=True)
class Verified:
    """What Catalog.verify read back: rows per table (every column of each), the primary-key indexes
    walked end to end, and those it could not walk (a composite key, on a read-only connection)."""

    rows: dict[str, int]
    indexes_walked: list[str]
    indexes_not_walked: list[str]
    seconds: float


def _histogram_column(hists: np.ndarray) -> pa.BinaryArray:
    return pa.array(pack(hists), pa.binary())


def _histograms_of(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """(n, 1152) float32 from a histogram column as read: stored forms (BLOB), or the dense FLOAT[1152] of
    a version-1 catalog."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if len(column) == 0:
        return np.zeros((0, TOTAL_BINS), np.float32)
    if pa.types.is_fixed_size_list(column.type):
        return column.values.to_numpy().reshape(-1, TOTAL_BINS).astype(np.float32, copy=False)
    if pa.types.is_binary(column.type):
        column = column.cast(pa.large_binary())
    _, offsets, data = column.buffers()
    start = column.offset
    return unpack(np.frombuffer(offsets, np.int64)[start:start + len(column) + 1],
                  np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8))


class Catalog:
    """One DuckDB connection. Writers serialize on `lock`; readers from other threads use cursors.

    After a fatal DuckDB error (a checkpoint that failed on a full disk) DuckDB refuses the database until it
    is opened again; the Catalog does that itself at its next use, so the caller only retries."""

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
             must_exist: bool = False) -> Catalog:
        """Open (or, read-write, create) the catalog of `index_dir`, refusing one made with other
        histogram settings than `fingerprint`; read-only, None opens whatever it holds (to inspect it)."""
        path = Path(index_dir) / CATALOG_FILE
        if fingerprint is None and not read_only:
            raise ValueError("a catalog opened for writing must be checked against a fingerprint")
        if (read_only or must_exist) and not path.exists():
            raise IndexDirError(f"no catalog at {path} (nothing has been indexed there yet)")
        with _duckdb_errors(path):
            con = _connect(path, read_only)
            if not read_only and _schema_version(con) == "1":
                con.close()
                migrate_v1(path)
                con = _connect(path, read_only)
            try:
                if not read_only:
                    con.execute(_SCHEMA)
                catalog = cls(con, path, read_only)
                catalog._check_meta(fingerprint)
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.close()
                raise
        return catalog

    def _check_meta(self, fingerprint: str | None) -> None:
        meta = dict(self._con.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            if self.read_only:
                raise IndexDirError(f"catalog {self.path} was never initialised")
            self._con.execute("INSERT INTO meta VALUES ('schema_version', ?), ('fingerprint', ?), ('catalog_id', ?)",
                              [str(SCHEMA_VERSION), fingerprint, uuid.uuid4().hex])
            self.catalog_id = self._meta_id()
            return
        self.schema_version = int(meta.get("schema_version", 0))
        if meta.get("schema_version") not in (READABLE_VERSIONS if self.read_only else (str(SCHEMA_VERSION),)):
            raise IndexDirError(f"catalog {self.path} has schema version {meta.get('schema_version')}, "
                                f"this program reads version {SCHEMA_VERSION}")
        if not self.read_only and "catalog_id" not in meta:  # made before catalogs had an identity
            self._con.execute("INSERT INTO meta VALUES ('catalog_id', ?)", [uuid.uuid4().hex])
        self.catalog_id = self._meta_id()
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            raise IndexDirError(
                f"catalog {self.path} was built with histogram settings {meta.get('fingerprint')}, "
                f"not {fingerprint} (different max_dimension or version); use another index dir or "
                "rebuild it")

    def _meta_id(self) -> str:
        rows = self._con.execute("SELECT value FROM meta WHERE key = 'catalog_id'").fetchall()
        return str(rows[0][0]) if rows else ""

    @_mapped
    def fingerprint(self) -> str:
        rows = self._reader().execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchall()
        return str(rows[0][0]) if rows else ""

    def __enter__(self) -> Catalog:
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

    # -- writing ---------------------------------------------------------------------------------
    @_mapped
    def next_id(self) -> int:
        return self._next_id(self._connection())

    @staticmethod
    def _next_id(con: duckdb.DuckDBPyConnection) -> int:
        return int(con.execute("SELECT coalesce(max(id), 0) + 1 FROM images").fetchall()[0][0])

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
            con.execute("UPDATE images SET root = ?, path = ?, size = ?, mtime_ns = ?, "
                        "updated_at = now() WHERE id = ?",
                        [m.root, m.path, m.size, m.mtime_ns, m.image_id])
        done = [(a.root, a.path) for a in changes.added] + [(m.root, m.path) for m in changes.moved]
        self._delete_failures(con, done + list(changes.cleared_failures))
        self._upsert_failures(con, changes.failed)
        return ids

    def _insert(self, con: duckdb.DuckDBPyConnection, added: list[NewImage]) -> list[int]:
        if not added:
            return []
        first = self._next_id(con)
        ids = list(range(first, first + len(added)))
        table = pa.table({
            "id": pa.array(ids, pa.int64()),
            "root": pa.array([a.root for a in added], pa.string()),
            "path": pa.array([a.path for a in added], pa.binary()),
            "size": pa.array([a.size for a in added], pa.int64()),
            "mtime_ns": pa.array([a.mtime_ns for a in added], pa.int64()),
            "content_hash": pa.array([a.content_hash for a in added], pa.string()),
            "width": pa.array([a.width for a in added], pa.int32()),
            "height": pa.array([a.height for a in added], pa.int32()),
            "histogram": _histogram_column(np.stack([a.histogram for a in added])),
        })
        con.register("_new_images", table)
        try:
            con.execute(
                "INSERT INTO images (id, root, path, size, mtime_ns, content_hash, width, height, histogram) "
                "SELECT id, root, path, size, mtime_ns, content_hash, width, height, histogram FROM _new_images")
        finally:
            con.unregister("_new_images")
        return ids

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
        with self.lock:
            n = len(self.failed_files(root))
            con = self._connection()
            if root is None:
                con.execute("DELETE FROM failures")
            else:
                con.execute("DELETE FROM failures WHERE root = ?", [root])
            self.generation += 1
        return n

    # -- reading ---------------------------------------------------------------------------------
    def _reader(self) -> duckdb.DuckDBPyConnection:
        return self._connection().cursor()

    @_mapped
    def live_files(self, root: str) -> dict[bytes, LiveFile]:
        rows = self._reader().execute(
            "SELECT path, id, size, mtime_ns, content_hash FROM images WHERE root = ? AND deleted_at IS NULL",
            [root]).fetchall()
        return {bytes(p): LiveFile(i, s, m, h) for p, i, s, m, h in rows}

    @_mapped
    def lookup(self, keys: Iterable[tuple[str, bytes]]) -> dict[tuple[str, bytes], LiveFile]:
        """Live rows for these (root, path) keys."""
        keys = list(keys)
        if not keys:
            return {}
        table = pa.table({"root": pa.array([k[0] for k in keys], pa.string()),
                          "path": pa.array([k[1] for k in keys], pa.binary())})
        cur = self._reader()
        try:
            cur.register("_lookup_keys", table)
            rows = cur.execute(
                "SELECT i.root, i.path, i.id, i.size, i.mtime_ns, i.content_hash FROM images i "
                "JOIN _lookup_keys k ON i.root = k.root AND i.path = k.path WHERE i.deleted_at IS NULL").fetchall()
        finally:
            cur.close()
        return {(r, bytes(p)): LiveFile(i, s, m, h) for r, p, i, s, m, h in rows}

    @_mapped
    def live_under(self, root: str, prefix: bytes) -> dict[bytes, LiveFile]:
        """Live rows of a folder (prefix) inside a root, or the whole root for prefix b"" or b"."."""
        if prefix in (b"", b"."):
            return self.live_files(root)
        # The paths under "a/b" are those from "a/b/" up to (not including) "a/b0": "0" follows "/"
        # in byte order. Selected by DuckDB, not by loading every row of the root for each folder.
        rows = self._reader().execute(
            "SELECT path, id, size, mtime_ns, content_hash FROM images WHERE root = ? AND deleted_at IS NULL "
            "AND path >= ? AND path < ?", [root, prefix + b"/", prefix + b"0"]).fetchall()
        return {bytes(p): LiveFile(i, s, m, h) for p, i, s, m, h in rows}

    @_mapped
    def failed_files(self, root: str | None = None) -> dict[tuple[str, bytes], Failure]:
        sql = "SELECT root, path, size, mtime_ns, reason, attempts FROM failures"
        args: list[object] = []
        if root is not None:
            sql += " WHERE root = ?"
            args.append(root)
        rows = self._reader().execute(sql + " ORDER BY root, path", args).fetchall()
        return {(r, bytes(p)): Failure(r, bytes(p), s, m, why, n) for r, p, s, m, why, n in rows}

    @_mapped
    def roots(self) -> list[str]:
        return [r for (r,) in self._reader().execute("SELECT DISTINCT root FROM images ORDER BY root").fetchall()]

    @_mapped
    def counts(self) -> dict[str, int]:
        row = self._reader().execute(
            "SELECT count(*) FILTER (WHERE deleted_at IS NULL), count(*) FILTER (WHERE deleted_at IS NOT NULL), "
            "(SELECT count(*) FROM failures), coalesce(max(id), 0) FROM images").fetchone()
        assert row is not None
        return {"live": int(row[0]), "tombstoned": int(row[1]), "failed": int(row[2]), "max_id": int(row[3])}

    @_mapped
    def deleted_ids(self) -> np.ndarray:
        rows = self._reader().execute("SELECT id FROM images WHERE deleted_at IS NOT NULL ORDER BY id").fetchnumpy()
        return np.asarray(rows["id"], dtype=np.int64)

    @_mapped
    def live_ids(self) -> np.ndarray:
        rows = self._reader().execute("SELECT id FROM images WHERE deleted_at IS NULL ORDER BY id").fetchnumpy()
        return np.asarray(rows["id"], dtype=np.int64)

    @_mapped
    def iter_histograms(self, after_id: int = 0, *, live_only: bool = True,
                        chunk: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, histograms float32 (n, 1152)) in id order, for ids > after_id, in bounded chunks (each
        its own range of ids, so no query sorts the whole table: a million rows would not fit DuckDB's
        memory limit)."""
        cond = "AND deleted_at IS NULL" if live_only else ""
        cur = self._reader()
        last = int(cur.execute("SELECT coalesce(max(id), 0) FROM images").fetchall()[0][0])
        for low in range(after_id, last, chunk):
            table = cur.sql(f"SELECT id, histogram FROM images WHERE id > ? AND id <= ? {cond} ORDER BY id",
                            params=[low, low + chunk]).to_arrow_table()
            if table.num_rows:
                yield table.column(0).to_numpy().astype(np.int64), _histograms_of(table.column(1))

    @_mapped
    def histograms(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        found, hists = self.histogram_rows(np.fromiter((int(i) for i in ids), np.int64))
        return {int(i): h for i, h in zip(found.tolist(), hists, strict=True)}

    @_mapped
    def histogram_rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, (n, 1152) float32 histograms) of these ids, in the order given (ids the catalog does not
        hold are left out): what a search reranks, a few hundred rows at a time."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            return ids, np.zeros((0, TOTAL_BINS), np.float32)
        if len(ids) >= _SPLIT_FETCH:
            halves = list(self._fetchers.map(lambda part: self._by_ids(part, "histogram"), (ids[::2], ids[1::2])))
            table = pa.concat_tables(halves)
        else:
            table = self._by_ids(ids, "histogram")
        got = table.column(0).to_numpy().astype(np.int64)
        order = order_as(ids, got)
        return got[order], _histograms_of(table.column(1))[order]

    @_mapped
    def rows(self, ids: Iterable[int]) -> dict[int, StoredImage]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        table = self._reader().sql(
            "SELECT id, root, path, content_hash, width, height, deleted_at IS NULL AS live, histogram "
            "FROM images WHERE id IN (SELECT unnest(?::BIGINT[]))", params=[ids]).to_arrow_table()
        cols = {name: table.column(name).to_pylist() for name in table.column_names[:-1]}
        hists = _histograms_of(table.column("histogram"))
        return {
            int(i): StoredImage(int(i), r, bytes(p), h, int(w), int(ht), hist, bool(lv))
            for i, r, p, h, w, ht, lv, hist in zip(cols["id"], cols["root"], cols["path"], cols["content_hash"],
                                                   cols["width"], cols["height"], cols["live"], hists,
                                                   strict=True)
        }

    @_mapped
    def content_hashes(self, ids: Iterable[int]) -> dict[int, str]:
        """id -> content hash, for planning a delta (no histogram read)."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self._reader().execute(
            "SELECT id, content_hash FROM images WHERE id IN (SELECT unnest(?::BIGINT[]))", [ids]).fetchall()
        return {int(i): str(h) for i, h in rows}

    @_mapped
    def describe(self, ids: Iterable[int]) -> dict[int, tuple[str, bytes, bool]]:
        """id -> (root, path, live) for result display."""
        table = self._by_ids(np.fromiter((int(i) for i in ids), np.int64), "root, path, deleted_at IS NULL")
        return {int(i): (r, bytes(p), bool(live)) for i, r, p, live in zip(*table.to_pydict().values(), strict=True)}

    def _by_ids(self, ids: np.ndarray, columns: str) -> pa.Table:
        """`id` and these columns of the rows of these ids, in no order. The ids written out as an IN list,
        which DuckDB answers by index lookups: for a search's 400 candidates at a million rows, 16 ms where a
        join with an Arrow table of them took 29 and an IN list parameter more."""
        listed = ",".join(map(str, np.asarray(ids, np.int64).tolist())) or "NULL"
        cur = self._reader()
        try:
            return cur.sql(f"SELECT id, {columns} FROM images WHERE id IN ({listed})").to_arrow_table()
        finally:
            cur.close()

    @_mapped
    def sample_histograms(self, n: int) -> np.ndarray:
        table = self._reader().sql(
            f"SELECT histogram FROM images WHERE deleted_at IS NULL USING SAMPLE reservoir({int(n)} ROWS) "
            "REPEATABLE (7)").to_arrow_table()
        return _histograms_of(table.column(0))

    @_mapped
    def find_by_hash(self, hashes: Iterable[str]) -> dict[str, list[int]]:
        hashes = list(set(hashes))
        if not hashes:
            return {}
        rows = self._reader().execute(
            "SELECT content_hash, id FROM images WHERE content_hash IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY id", [hashes]).fetchall()
        out: dict[str, list[int]] = {}
        for h, i in rows:
            out.setdefault(h, []).append(int(i))
        return out

    # -- roots ---------------------------------------------------------------------------------------
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
        is tombstoned. Failure records move along; the roots entry of `old` goes (its scan time moves)."""
        with self._transaction() as con:
            superseded = [int(i) for (i,) in con.execute(
                "SELECT o.id FROM images o JOIN images n ON o.path = n.path WHERE o.root = ? AND n.root = ? "
                "AND o.deleted_at IS NULL AND n.deleted_at IS NULL ORDER BY o.id", [old, new]).fetchall()]
            if superseded:
                con.execute("UPDATE images SET deleted_at = now() WHERE id IN (SELECT unnest(?::BIGINT[]))",
                            [superseded])
            moved = con.execute("UPDATE images SET root = ?, updated_at = now() WHERE root = ? "
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

    @_mapped
    def meta(self, key: str) -> str | None:
        rows = self._reader().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        return str(rows[0][0]) if rows else None

    @_mapped
    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as con:
            con.execute("DELETE FROM meta WHERE key = ?", [key])
            con.execute("INSERT INTO meta VALUES (?, ?)", [key, value])

    @_mapped
    def mark_stale(self, suffixes: list[str], key: str, value: str) -> int:
        """Make the live rows of files with these extensions match no file (mtime_ns -1) and no content (an
        empty hash), so that the next comparison with the folder decodes them again (a file whose bytes hash
        to a stored row is otherwise not decoded), and set a meta value, in one transaction."""
        with self._transaction() as con:
            con.execute("DELETE FROM meta WHERE key = ?", [key])
            con.execute("INSERT INTO meta VALUES (?, ?)", [key, value])
            if not suffixes:
                return 0
            # a path is raw bytes: cast to text its non-UTF-8 bytes come out escaped, its extension intact
            row = con.execute("UPDATE images SET mtime_ns = -1, content_hash = '' WHERE deleted_at IS NULL AND "
                              r"list_contains(?, lower(regexp_extract(CAST(path AS VARCHAR), '(\.[^./]*)$', 1)))",
                              [suffixes]).fetchone()
            return int(row[0]) if row else 0

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

    # -- reading everything back ---------------------------------------------------------------------
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


def stored_fingerprint(index_dir: Path) -> str | None:
    """The histogram settings the catalog of `index_dir` was made with; None when there is no catalog."""
    if not (Path(index_dir) / CATALOG_FILE).exists():
        return None
    with Catalog.open(index_dir, None, read_only=True) as catalog:
        return catalog.fingerprint()


# -- from schema version 1 -----------------------------------------------------------------------------
def _schema_version(con: duckdb.DuckDBPyConnection) -> str | None:
    try:
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    except duckdb.CatalogException:
        return None  # a new file: no meta table yet
    return str(rows[0][0]) if rows else None


def migrate_v1(path: Path, chunk: int = 20_000) -> None:
    """Rewrite a version-1 catalog (dense histograms) in the current version, beside it as
    `<name>.migrating`, then renamed over it: a crash at any point leaves the old catalog or the new one,
    whole (what is left of an unfinished attempt is removed by the next). Ids and every other column are
    kept, so the live index checkpoint stays valid. Raises StorageError (a full disk: the old one stays)."""
    tmp = path.with_name(path.name + MIGRATING_SUFFIX)
    started = time.monotonic()
    logger.warning("catalog %s was written by an older version: rewriting it with its histograms stored "
                   "sparse (about half the size); this takes a minute or two at a million photos", path)
    with _duckdb_errors(path):
        con = _connect(path, read_only=False)
    try:
        with _duckdb_errors(path):
            con.execute("CHECKPOINT")  # its WAL into the file: the file alone is then the whole catalog
            _remove_migration(tmp)
            old = str(con.execute("SELECT current_database()").fetchall()[0][0])
            con.execute(f"ATTACH '{_quoted(tmp)}' AS migrated")
            con.execute("USE migrated")
            con.execute(_SCHEMA)
            con.execute("BEGIN TRANSACTION")
            con.execute(f"INSERT INTO meta SELECT key, CASE key WHEN 'schema_version' THEN ? ELSE value END "
                        f"FROM {old}.meta", [str(SCHEMA_VERSION)])
            _copy_failures(con, old)
            _copy_roots(con, old)
            rows = _copy_v1_images(con, old, chunk)
            con.execute("COMMIT")
            con.execute("CHECKPOINT migrated")
            con.execute(f"USE {old}")
            con.execute("DETACH migrated")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.close()
        with contextlib.suppress(OSError):
            _remove_migration(tmp)
        raise
    con.close()
    try:
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot put the rewritten catalog {tmp} in place: {exc.strerror}") from exc
    logger.warning("catalog %s rewritten: %d rows in %.1f s, %.0f MB now", path, rows,
                   time.monotonic() - started, path.stat().st_size / 1e6)


def _remove_migration(tmp: Path) -> None:
    """What an unfinished migration left: the new catalog and its WAL."""
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)


_SPLIT_FETCH = 64  # ids from which histogram_rows fetches in two halves at once
_V1_COLUMNS = "id, root, path, size, mtime_ns, content_hash, width, height, indexed_at, updated_at, deleted_at"


def _copy_v1_images(con: duckdb.DuckDBPyConnection, old: str, chunk: int) -> int:
    """Every row of `old`.images into images, the histograms packed, a range of ids at a time."""
    last = int(con.execute(f"SELECT coalesce(max(id), 0) FROM {old}.images").fetchall()[0][0])
    copied = 0
    for low in range(0, last, chunk):
        table = con.sql(f"SELECT {_V1_COLUMNS}, histogram FROM {old}.images WHERE id > ? AND id <= ?",
                        params=[low, low + chunk]).to_arrow_table()
        if table.num_rows == 0:
            continue
        column = table.column_names.index("histogram")
        table = table.set_column(column, "histogram", _histogram_column(_histograms_of(table.column(column))))
        con.register("_v1_rows", table)
        try:
            con.execute(f"INSERT INTO images ({_V1_COLUMNS}, histogram) SELECT {_V1_COLUMNS}, histogram FROM _v1_rows")
        finally:
            con.unregister("_v1_rows")
        copied += table.num_rows
    return copied


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


# -- setting a damaged catalog aside -------------------------------------------------------------------
def quarantine(index_dir: Path, now: datetime) -> Path:
    """Rename the catalog (and its WAL, kept beside it as `<new name>.wal`, so the pair still opens together)
    to chromatica_metadata.db.damaged-YYYYmmddTHHMMSS, with -2, -3... if that is taken. Nothing is deleted
    or overwritten. The catalog must be closed. Returns the new path."""
    index_dir = Path(index_dir)
    src = index_dir / CATALOG_FILE
    wal = src.with_name(CATALOG_FILE + ".wal")
    if not src.exists() and not wal.exists():
        raise IndexDirError(f"no catalog at {src} to set aside")
    dest = _unused_name(index_dir, f"{CATALOG_FILE}.damaged-{now.strftime('%Y%m%dT%H%M%S')}")
    try:
        if src.exists():
            os.rename(src, dest)
        if wal.exists():
            os.rename(wal, dest.with_name(dest.name + ".wal"))
        fsync_dir(index_dir)
    except OSError as exc:
        raise IndexDirError(f"cannot set the catalog {src} aside as {dest}: {exc.strerror}") from exc
    logger.warning("catalog %s set aside as %s", src, dest)
    return dest


def _unused_name(directory: Path, name: str) -> Path:
    """`name`, or `name-2`, `name-3`...: the first for which neither it nor its .wal exists."""
    candidate, n = directory / name, 1
    while candidate.exists() or candidate.with_name(candidate.name + ".wal").exists():
        n += 1
        candidate = directory / f"{name}-{n}"
    return candidate


# -- merging catalogs -------------------------------------------------------------------------------------
_IMAGE_COLUMNS = "root, path, size, mtime_ns, content_hash, width, height, histogram, indexed_at, updated_at"
_FAILURE_COLUMNS = "root, path, size, mtime_ns, reason, attempts, failed_at"


@dataclass(frozen=True)
class MergeCounts:
    """What merge_catalogs wrote: rows of the new catalog and the duplicates it tombstoned."""

    live: int
    tombstoned: int
    duplicates: int  # live rows of a (root, path) that another input holds newer, tombstoned
    failed: int
    max_id: int


def merge_catalogs(inputs: list[Path], output_dir: Path, base: Path, fingerprint: str) -> MergeCounts:
    """Write a new catalog in `output_dir` holding the catalogs of the index dirs `inputs` (checked
    already: same schema and `fingerprint`), in DuckDB, in one transaction. `base` (one of `inputs`) keeps
    every row and id, so its live index checkpoint stays valid; the other inputs' live rows follow with
    new ids, in input order. A (root, path) live in several inputs keeps its newest mtime (a tie: the
    later input's); the others are tombstoned. Failure records are united (the later input's wins) and
    dropped where a live row exists; so are the roots entries (a root retired in an input stays retired)."""
    dirs = [Path(d) for d in inputs]
    base_n = dirs.index(Path(base))
    output = Path(output_dir) / CATALOG_FILE
    with _duckdb_errors(output):
        con = _connect(output, read_only=False)
    try:
        with _duckdb_errors(output):
            con.execute(_SCHEMA)
            con.execute("INSERT INTO meta VALUES ('schema_version', ?), ('fingerprint', ?)",
                        [str(SCHEMA_VERSION), fingerprint])
            con.execute("CREATE TEMP TABLE _origin (id BIGINT PRIMARY KEY, input INTEGER NOT NULL)")
        aliases = [_attach(con, d / CATALOG_FILE, n) for n, d in enumerate(dirs)]
        with _duckdb_errors(output):
            con.execute("BEGIN TRANSACTION")
        try:
            for n in [base_n, *(n for n in range(len(dirs)) if n != base_n)]:
                with _merge_errors(dirs[n] / CATALOG_FILE, output):
                    _copy_images(con, aliases[n], n, keep_ids=n == base_n)
                    _copy_failures(con, aliases[n])
                    _copy_roots(con, aliases[n])
            with _duckdb_errors(output):
                duplicates = _tombstone_duplicates(con)
                con.execute("DELETE FROM failures f USING images i "
                            "WHERE f.root = i.root AND f.path = i.path AND i.deleted_at IS NULL")
                con.execute("COMMIT")
        except BaseException:
            _roll_back(con)
            raise
        with _duckdb_errors(output):
            counts = _merged_counts(con, duplicates)
            con.execute("CHECKPOINT")  # the new catalog whole in its file, no WAL beside it
        return counts
    finally:
        with contextlib.suppress(duckdb.Error):
            con.close()


@contextlib.contextmanager
def _merge_errors(source: Path, output: Path) -> Iterator[None]:
    """A statement reading `source` into `output` fails on either: DuckDB's message names the file
    (a write names the output or its WAL), so the error is mapped for that one."""
    try:
        yield
    except duckdb.Error as exc:
        raise _domain_error(exc, output if str(output) in str(exc) else source) from exc


def _attach(con: duckdb.DuckDBPyConnection, path: Path, n: int) -> str:
    alias = f"merge_in{n}"
    with _duckdb_errors(path):
        con.execute(f"ATTACH '{_quoted(path)}' AS {alias} (READ_ONLY)")
    return alias


def _copy_images(con: duckdb.DuckDBPyConnection, alias: str, n: int, *, keep_ids: bool) -> None:
    """The base's rows as they are, tombstones included; another input's live rows only (its tombstones
    are in no index the merge keeps and name nothing on disk), numbered after every id so far."""
    first = Catalog._next_id(con)
    if keep_ids:
        con.execute(f"INSERT INTO images (id, {_IMAGE_COLUMNS}, deleted_at) "
                    f"SELECT id, {_IMAGE_COLUMNS}, deleted_at FROM {alias}.images")
        con.execute("INSERT INTO _origin SELECT id, ? FROM images WHERE deleted_at IS NULL", [n])
        return
    con.execute(f"INSERT INTO images (id, {_IMAGE_COLUMNS}) "
                f"SELECT ? + row_number() OVER (ORDER BY id) - 1, {_IMAGE_COLUMNS} "
                f"FROM {alias}.images WHERE deleted_at IS NULL", [first])
    con.execute("INSERT INTO _origin SELECT id, ? FROM images WHERE id >= ?", [n, first])


def _copy_failures(con: duckdb.DuckDBPyConnection, alias: str) -> None:
    con.execute(f"INSERT OR REPLACE INTO failures ({_FAILURE_COLUMNS}) "
                f"SELECT {_FAILURE_COLUMNS} FROM {alias}.failures")


def _copy_roots(con: duckdb.DuckDBPyConnection, alias: str) -> None:
    """What an input knows of its roots (retired when, last scanned), so that a root retired there stays
    hidden; a catalog made before the roots table has none to copy."""
    found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = 'roots'",
                        [alias]).fetchall()[0][0]
    if found:
        con.execute(f"INSERT OR REPLACE INTO roots SELECT root, retired_at, last_scan, last_scan_files "
                    f"FROM {alias}.roots")


def _tombstone_duplicates(con: duckdb.DuckDBPyConnection) -> int:
    """Of the live rows sharing a (root, path), all but the newest mtime (a tie: the later input's)."""
    row = con.execute(
        "UPDATE images SET deleted_at = now() WHERE id IN (SELECT id FROM ("
        "  SELECT i.id, row_number() OVER (PARTITION BY i.root, i.path "
        "    ORDER BY i.mtime_ns DESC, o.input DESC, i.id DESC) AS rank "
        "  FROM images i JOIN _origin o ON i.id = o.id WHERE i.deleted_at IS NULL) WHERE rank > 1)").fetchone()
    return int(row[0]) if row else 0


def _merged_counts(con: duckdb.DuckDBPyConnection, duplicates: int) -> MergeCounts:
    row = con.execute(
        "SELECT count(*) FILTER (WHERE deleted_at IS NULL), count(*) FILTER (WHERE deleted_at IS NOT NULL), "
        "(SELECT count(*) FROM failures), coalesce(max(id), 0) FROM images").fetchone()
    assert row is not None
    return MergeCounts(live=int(row[0]), tombstoned=int(row[1]), duplicates=duplicates, failed=int(row[2]),
                       max_id=int(row[3]))
