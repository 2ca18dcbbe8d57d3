"""Merging catalogs in SQL: the catalogs of several index dirs attached read-only to a new one and copied
into it in one transaction (the `merge` command). The copies of the failures and roots tables serve the
rewrite of a version-1 catalog too."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from chromatica_watch.storage.catalog.errors import _domain_error, _duckdb_errors, _roll_back
from chromatica_watch.storage.catalog.schema import _SCHEMA, CATALOG_FILE, SCHEMA_VERSION, _connect, _next_id

logger = logging.getLogger(__name__)

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


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _attach(con: duckdb.DuckDBPyConnection, path: Path, n: int) -> str:
    alias = f"merge_in{n}"
    with _duckdb_errors(path):
        con.execute(f"ATTACH '{_quoted(path)}' AS {alias} (READ_ONLY)")
    return alias


def _copy_images(con: duckdb.DuckDBPyConnection, alias: str, n: int, *, keep_ids: bool) -> None:
    """The base's rows as they are, tombstones included; another input's live rows only (its tombstones
    are in no index the merge keeps and name nothing on disk), numbered after every id so far."""
    first = _next_id(con)
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
