"""The catalog: the committed record of what is indexed (DuckDB). The only module importing duckdb.

A file is keyed by (root, path): the watched root's absolute path and the file's path relative to it
as raw bytes (POSIX form), so names that are not valid UTF-8 survive exactly. Ids are never reused;
the live index is derived from this table and can always be rebuilt from it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from .errors import IndexDirBusy, IndexDirError
from .histogram import TOTAL_BINS

logger = logging.getLogger(__name__)

CATALOG_FILE = "chromatica_metadata.db"
SCHEMA_VERSION = 1

_SCHEMA = f"""
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
    histogram FLOAT[{TOTAL_BINS}] NOT NULL,
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
"""


@dataclass(frozen=True)
class NewImage:
    root: str
    path: bytes
    size: int
    mtime_ns: int
    content_hash: str
    width: int
    height: int
    histogram: np.ndarray


@dataclass(frozen=True)
class Failure:
    root: str
    path: bytes
    size: int
    mtime_ns: int
    reason: str
    attempts: int = 1


@dataclass(frozen=True)
class Move:
    image_id: int
    root: str
    path: bytes
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class StoredImage:
    image_id: int
    root: str
    path: bytes
    content_hash: str
    width: int
    height: int
    histogram: np.ndarray
    live: bool


@dataclass(frozen=True)
class LiveFile:
    image_id: int
    size: int
    mtime_ns: int
    content_hash: str


@dataclass
class Changes:
    """Everything one batch commits, in one transaction."""

    added: list[NewImage] = field(default_factory=list)
    tombstoned: list[int] = field(default_factory=list)
    moved: list[Move] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    cleared_failures: list[tuple[str, bytes]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.tombstoned or self.moved or self.failed or self.cleared_failures)


def _histogram_column(hists: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(hists, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, TOTAL_BINS)


class Catalog:
    """One DuckDB connection. Writers serialize on `lock`; readers from other threads use cursors."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only
        self.lock = threading.RLock()

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, index_dir: Path, fingerprint: str, *, read_only: bool = False) -> Catalog:
        path = Path(index_dir) / CATALOG_FILE
        if read_only and not path.exists():
            raise IndexDirError(f"no catalog at {path}")
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            msg = str(exc).splitlines()[0]
            if "lock" in msg.lower():
                raise IndexDirBusy(f"catalog {path} is in use by another process (is the daemon running?)") \
                    from exc
            raise IndexDirError(f"cannot open catalog {path}: {msg}") from exc
        except duckdb.Error as exc:
            raise IndexDirError(f"cannot open catalog {path}: {str(exc).splitlines()[0]}") from exc
        catalog = cls(con, path, read_only)
        try:
            if not read_only:
                con.execute(_SCHEMA)
            catalog._check_meta(fingerprint)
        except BaseException:
            con.close()
            raise
        return catalog

    def _check_meta(self, fingerprint: str) -> None:
        meta = dict(self._con.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            if self.read_only:
                raise IndexDirError(f"catalog {self.path} was never initialised")
            self._con.execute("INSERT INTO meta VALUES ('schema_version', ?), ('fingerprint', ?)",
                              [str(SCHEMA_VERSION), fingerprint])
            return
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise IndexDirError(f"catalog {self.path} has schema version {meta.get('schema_version')}, "
                                f"this program reads version {SCHEMA_VERSION}")
        if meta.get("fingerprint") != fingerprint:
            raise IndexDirError(
                f"catalog {self.path} was built with histogram settings {meta.get('fingerprint')}, "
                f"not {fingerprint} (different max_dimension or version); use another index dir or "
                "rebuild it")

    def fingerprint(self) -> str:
        rows = self._reader().execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchall()
        return str(rows[0][0]) if rows else ""

    def close(self) -> None:
        self._con.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()

    # -- writing ---------------------------------------------------------------------------------
    def next_id(self) -> int:
        return int(self._con.execute("SELECT coalesce(max(id), 0) + 1 FROM images").fetchall()[0][0])

    def apply(self, changes: Changes) -> list[int]:
        """Commit one batch atomically; returns the ids given to `changes.added`, in order."""
        with self.lock:
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                ids = self._insert(changes.added)
                if changes.tombstoned:
                    con.execute("UPDATE images SET deleted_at = now() WHERE deleted_at IS NULL "
                                "AND id IN (SELECT unnest(?::BIGINT[]))", [list(changes.tombstoned)])
                for m in changes.moved:
                    con.execute("UPDATE images SET root = ?, path = ?, size = ?, mtime_ns = ?, "
                                "updated_at = now() WHERE id = ?",
                                [m.root, m.path, m.size, m.mtime_ns, m.image_id])
                done = [(a.root, a.path) for a in changes.added] + [(m.root, m.path) for m in changes.moved]
                self._delete_failures(done + list(changes.cleared_failures))
                self._upsert_failures(changes.failed)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return ids

    def _insert(self, added: list[NewImage]) -> list[int]:
        if not added:
            return []
        first = self.next_id()
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
        self._con.register("_new_images", table)
        try:
            self._con.execute(
                "INSERT INTO images (id, root, path, size, mtime_ns, content_hash, width, height, histogram) "
                "SELECT id, root, path, size, mtime_ns, content_hash, width, height, histogram FROM _new_images")
        finally:
            self._con.unregister("_new_images")
        return ids

    def _delete_failures(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            return
        table = pa.table({"root": pa.array([k[0] for k in keys], pa.string()),
                          "path": pa.array([k[1] for k in keys], pa.binary())})
        self._con.register("_done_keys", table)
        try:
            self._con.execute("DELETE FROM failures f USING _done_keys d WHERE f.root = d.root AND f.path = d.path")
        finally:
            self._con.unregister("_done_keys")

    def _upsert_failures(self, failed: list[Failure]) -> None:
        for f in failed:
            self._con.execute(
                "INSERT INTO failures (root, path, size, mtime_ns, reason, attempts) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (root, path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
                "reason = excluded.reason, attempts = failures.attempts + 1, failed_at = now()",
                [f.root, f.path, f.size, f.mtime_ns, f.reason, f.attempts])

    # -- reading ---------------------------------------------------------------------------------
    def _reader(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()

    def live_files(self, root: str) -> dict[bytes, LiveFile]:
        rows = self._reader().execute(
            "SELECT path, id, size, mtime_ns, content_hash FROM images WHERE root = ? AND deleted_at IS NULL",
            [root]).fetchall()
        return {bytes(p): LiveFile(i, s, m, h) for p, i, s, m, h in rows}

    def lookup(self, keys: Iterable[tuple[str, bytes]]) -> dict[tuple[str, bytes], LiveFile]:
        """Live rows for these (root, path) keys."""
        keys = list(keys)
        if not keys:
            return {}
        table = pa.table({"root": pa.array([k[0] for k in keys], pa.string()),
                          "path": pa.array([k[1] for k in keys], pa.binary())})
        cur = self._reader()
        cur.register("_lookup_keys", table)
        rows = cur.execute(
            "SELECT i.root, i.path, i.id, i.size, i.mtime_ns, i.content_hash FROM images i "
            "JOIN _lookup_keys k ON i.root = k.root AND i.path = k.path WHERE i.deleted_at IS NULL").fetchall()
        cur.close()
        return {(r, bytes(p)): LiveFile(i, s, m, h) for r, p, i, s, m, h in rows}

    def live_under(self, root: str, prefix: bytes) -> dict[bytes, LiveFile]:
        """Live rows of a folder (prefix) inside a root, or the whole root for prefix b"" or b"."."""
        files = self.live_files(root)
        if prefix in (b"", b"."):
            return files
        return {p: f for p, f in files.items() if p.startswith(prefix + b"/")}

    def clear_failures(self, root: str | None = None) -> int:
        with self.lock:
            n = len(self.failed_files(root))
            if root is None:
                self._con.execute("DELETE FROM failures")
            else:
                self._con.execute("DELETE FROM failures WHERE root = ?", [root])
        return n

    def failed_files(self, root: str | None = None) -> dict[tuple[str, bytes], Failure]:
        sql = "SELECT root, path, size, mtime_ns, reason, attempts FROM failures"
        args: list[object] = []
        if root is not None:
            sql += " WHERE root = ?"
            args.append(root)
        rows = self._reader().execute(sql + " ORDER BY root, path", args).fetchall()
        return {(r, bytes(p)): Failure(r, bytes(p), s, m, why, n) for r, p, s, m, why, n in rows}

    def roots(self) -> list[str]:
        return [r for (r,) in self._reader().execute("SELECT DISTINCT root FROM images ORDER BY root").fetchall()]

    def counts(self) -> dict[str, int]:
        row = self._reader().execute(
            "SELECT count(*) FILTER (WHERE deleted_at IS NULL), count(*) FILTER (WHERE deleted_at IS NOT NULL), "
            "(SELECT count(*) FROM failures), coalesce(max(id), 0) FROM images").fetchone()
        assert row is not None
        return {"live": int(row[0]), "tombstoned": int(row[1]), "failed": int(row[2]), "max_id": int(row[3])}

    def deleted_ids(self) -> np.ndarray:
        rows = self._reader().execute("SELECT id FROM images WHERE deleted_at IS NOT NULL ORDER BY id").fetchnumpy()
        return np.asarray(rows["id"], dtype=np.int64)

    def live_ids(self) -> np.ndarray:
        rows = self._reader().execute("SELECT id FROM images WHERE deleted_at IS NULL ORDER BY id").fetchnumpy()
        return np.asarray(rows["id"], dtype=np.int64)

    def iter_histograms(self, after_id: int = 0, *, live_only: bool = True,
                        chunk: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, histograms float32 (n, 1152)) in id order, for ids > after_id, in bounded chunks."""
        cond = "AND deleted_at IS NULL" if live_only else ""
        reader = self._reader().sql(
            f"SELECT id, histogram FROM images WHERE id > ? {cond} ORDER BY id", params=[after_id]
        ).to_arrow_reader(chunk)
        for batch in reader:
            if batch.num_rows == 0:
                continue
            ids = batch.column(0).to_numpy().astype(np.int64)
            hists = batch.column(1).values.to_numpy().reshape(-1, TOTAL_BINS).astype(np.float32, copy=False)
            yield ids, hists

    def histograms(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        table = self._reader().sql(
            "SELECT id, histogram FROM images WHERE id IN (SELECT unnest(?::BIGINT[]))", params=[ids]).to_arrow_table()
        got = table.column(0).to_numpy()
        hists = table.column(1).combine_chunks().values.to_numpy().reshape(-1, TOTAL_BINS)
        return {int(i): h for i, h in zip(got, hists, strict=True)}

    def rows(self, ids: Iterable[int]) -> dict[int, StoredImage]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        table = self._reader().sql(
            "SELECT id, root, path, content_hash, width, height, deleted_at IS NULL AS live, histogram "
            "FROM images WHERE id IN (SELECT unnest(?::BIGINT[]))", params=[ids]).to_arrow_table()
        cols = {name: table.column(name).to_pylist() for name in table.column_names[:-1]}
        hists = table.column("histogram").combine_chunks().values.to_numpy().reshape(-1, TOTAL_BINS)
        return {
            int(i): StoredImage(int(i), r, bytes(p), h, int(w), int(ht), hist, bool(lv))
            for i, r, p, h, w, ht, lv, hist in zip(cols["id"], cols["root"], cols["path"], cols["content_hash"],
                                                   cols["width"], cols["height"], cols["live"], hists,
                                                   strict=True)
        }

    def describe(self, ids: Iterable[int]) -> dict[int, tuple[str, bytes, bool]]:
        """id -> (root, path, live) for result display."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self._reader().execute(
            "SELECT id, root, path, deleted_at IS NULL FROM images WHERE id IN (SELECT unnest(?::BIGINT[]))",
            [ids]).fetchall()
        return {int(i): (r, bytes(p), bool(live)) for i, r, p, live in rows}

    def sample_histograms(self, n: int) -> np.ndarray:
        table = self._reader().sql(
            f"SELECT histogram FROM images WHERE deleted_at IS NULL USING SAMPLE reservoir({int(n)} ROWS) "
            "REPEATABLE (7)").to_arrow_table()
        if table.num_rows == 0:
            return np.zeros((0, TOTAL_BINS), np.float32)
        return table.column(0).combine_chunks().values.to_numpy().reshape(-1, TOTAL_BINS)

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

