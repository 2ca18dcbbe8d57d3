"""From schema version 1: a catalog written with dense FLOAT[1152] histograms rewritten in the current
version (sparse float16 blobs) when it is opened for writing, crash-safe."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

import duckdb

from chromatica_watch.core.errors import StorageError
from chromatica_watch.core.fsutil import fsync_dir
from chromatica_watch.storage.catalog.errors import _duckdb_errors
from chromatica_watch.storage.catalog.merge import _copy_failures, _copy_roots, _quoted
from chromatica_watch.storage.catalog.schema import (
    _SCHEMA,
    SCHEMA_VERSION,
    _connect,
    _histogram_column,
    _histograms_of,
)

logger = logging.getLogger(__name__)

MIGRATING_SUFFIX = ".migrating"
_V1_COLUMNS = "id, root, path, size, mtime_ns, content_hash, width, height, indexed_at, updated_at, deleted_at"


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
