"""What a catalog file is: its name, its tables, the schema versions this program reads and writes, the
meta values that say which histogram settings and which catalog it holds, the stored form of a histogram,
and the settings a connection to it is opened with.

A file is keyed by (root, path): the watched root's absolute path and the file's path relative to it
as raw bytes (POSIX form), so names that are not valid UTF-8 survive exactly. Ids are never reused;
the live index is derived from the images table and can always be rebuilt from it.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from chromatica_watch.colour.histogram import TOTAL_BINS, pack, unpack
from chromatica_watch.core.errors import IndexDirError

logger = logging.getLogger(__name__)

CATALOG_FILE = "chromatica_metadata.db"
# 2: histograms stored sparse in float16 (histogram.pack), 0.5 KB instead of 4.6 KB a photo. A version-1
# catalog (dense FLOAT[1152]) is read as it is, and rewritten in version 2 when opened for writing.
# 3: what searches filter on (date taken, camera, orientation, tone, the coarse colour table); a version-2
# catalog gains the columns (empty, filled by the daemon's details pass) when it is opened for writing.
# 4: each file's inode change time (ctime_ns), compared as git's index does (see ingest.diff); a version-2 or
# -3 catalog gains the column (NULL: not known, filled in by the next scan without a read) when opened for
# writing.
SCHEMA_VERSION = 4
READABLE_VERSIONS = ("1", "2", "3", "4")
CTIME_VERSION = 4  # the first version with images.ctime_ns
DETAILS_VERSION = 1  # `details` of a row whose detail columns are filled; NULL: not read yet
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
    deleted_at TIMESTAMPTZ,
    taken TIMESTAMP,
    taken_source VARCHAR,
    camera VARCHAR,
    orientation VARCHAR,
    colourfulness REAL,
    monochrome BOOLEAN,
    palette BLOB,
    details SMALLINT,
    ctime_ns BIGINT
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

# The columns versions 3 and 4 added, for an older catalog opened for writing (no rewrite: DuckDB adds them
# empty).
_DETAIL_COLUMNS = (("taken", "TIMESTAMP"), ("taken_source", "VARCHAR"), ("camera", "VARCHAR"),
                   ("orientation", "VARCHAR"), ("colourfulness", "REAL"), ("monochrome", "BOOLEAN"),
                   ("palette", "BLOB"), ("details", "SMALLINT"), ("ctime_ns", "BIGINT"))


def _add_detail_columns(con: duckdb.DuckDBPyConnection) -> None:
    for name, kind in _DETAIL_COLUMNS:
        con.execute(f"ALTER TABLE images ADD COLUMN IF NOT EXISTS {name} {kind}")


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(path), read_only=read_only, config={"memory_limit": MEMORY_LIMIT})


# -- the meta table ----------------------------------------------------------------------------------
def _schema_version(con: duckdb.DuckDBPyConnection) -> str | None:
    try:
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    except duckdb.CatalogException:
        return None  # a new file: no meta table yet
    return str(rows[0][0]) if rows else None


def _checked_meta(con: duckdb.DuckDBPyConnection, path: Path, read_only: bool,
                fingerprint: str | None) -> tuple[int, str]:
    """(schema version, catalog id) of the catalog open on `con`, a new one initialised (read-write); raises
    IndexDirError for one this program does not read or one made with other histogram settings than
    `fingerprint` (None: any)."""
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    if not meta:
        if read_only:
            raise IndexDirError(f"catalog {path} was never initialised")
        con.execute("INSERT INTO meta VALUES ('schema_version', ?), ('fingerprint', ?), ('catalog_id', ?)",
                    [str(SCHEMA_VERSION), fingerprint, uuid.uuid4().hex])
        return SCHEMA_VERSION, _meta_id(con)
    schema_version = int(meta.get("schema_version", 0))  # a version-1 catalog opened read-only is 1
    if not read_only and meta.get("schema_version") in ("2", "3"):  # its newer columns were just added
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
        schema_version = SCHEMA_VERSION
        meta["schema_version"] = str(SCHEMA_VERSION)
    if meta.get("schema_version") not in (READABLE_VERSIONS if read_only else (str(SCHEMA_VERSION),)):
        raise IndexDirError(f"catalog {path} has schema version {meta.get('schema_version')}, "
                            f"this program reads version {SCHEMA_VERSION}")
    if not read_only and "catalog_id" not in meta:  # made before catalogs had an identity
        con.execute("INSERT INTO meta VALUES ('catalog_id', ?)", [uuid.uuid4().hex])
    catalog_id = _meta_id(con)
    if fingerprint is not None and meta.get("fingerprint") != fingerprint:
        raise IndexDirError(
            f"catalog {path} was built with histogram settings {meta.get('fingerprint')}, "
            f"not {fingerprint} (different max_dimension or version); use another index dir or "
            "rebuild it")
    return schema_version, catalog_id


def _meta_id(con: duckdb.DuckDBPyConnection) -> str:
    rows = con.execute("SELECT value FROM meta WHERE key = 'catalog_id'").fetchall()
    return str(rows[0][0]) if rows else ""


# -- the images table --------------------------------------------------------------------------------
def _next_id(con: duckdb.DuckDBPyConnection) -> int:
    """The id the next new row gets: ids are never reused (a tombstoned row keeps its id)."""
    return int(con.execute("SELECT coalesce(max(id), 0) + 1 FROM images").fetchall()[0][0])


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
