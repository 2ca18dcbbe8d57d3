"""Catalog schema version 1 (dense FLOAT[1152] histograms) read as it is, and rewritten in version 2 (sparse
float16 blobs) when opened for writing: every row, id and column kept, crash-safe (real processes killed with
SIGKILL mid-rewrite), leftovers of a crashed attempt removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import duckdb
import numpy as np
import pyarrow as pa
import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.errors import IndexDirError, StorageError
from chromatica_watch.core.records import Changes, NewImage
from chromatica_watch.imaging.lab import srgb_to_lab
from chromatica_watch.offline.merge import merge
from chromatica_watch.storage.catalog import CATALOG_FILE, MIGRATING_SUFFIX, SCHEMA_VERSION, Catalog
from chromatica_watch.storage.catalog import migration as C
from chromatica_watch.storage.index import PCA
from chromatica_watch.storage.indexdir import compact, open_live_index, rebuild_from
from tests.conftest import mounted_tmpfs, photo, wait_until

FP = H.fingerprint(256)
REPO = Path(__file__).resolve().parents[1]
V1_SCHEMA = C._SCHEMA.replace("histogram BLOB NOT NULL", "histogram FLOAT[1152] NOT NULL")
ODD_PATHS = (b"odd \xff\xfe\n name.jpg", b"caf\xe9/na\xefve.png", b"tab\there/\x01ctl.jpg")
FAILED_AT = "2021-03-04 05:06:07+00"
# What the ROUNDING of float16 does to a histogram, renormalized (11 significant bits): relative, and absolute
# for the tiniest bins (float16 subnormals).
F16_RTOL, F16_ATOL = 2.0 ** -10, 1e-7


def real_histograms(n: int, seed: int = 0) -> np.ndarray:
    """n distinct histograms of crops of real photos, mixed two at a time (sparse, like a photo's)."""
    rng = np.random.default_rng(seed)
    base = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina"):
        img = cv2.resize(photo(name), (128, 128), interpolation=cv2.INTER_AREA)
        for _ in range(8):
            y, x = rng.integers(0, 64, 2)
            base.append(H.lab_histogram(srgb_to_lab(img[y:y + 64, x:x + 64])))
    b = np.stack(base)
    pairs = rng.integers(0, len(b), (n, 2))
    w = rng.random((n, 1)).astype(np.float32)
    out = w * b[pairs[:, 0]] + (1 - w) * b[pairs[:, 1]]
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def sparse_histograms(n: int, seed: int = 0) -> np.ndarray:
    """n cheap histograms with ~180 non-zero bins each (for a big catalog; content does not matter)."""
    rng = np.random.default_rng(seed)
    base = np.zeros((97, H.TOTAL_BINS), np.float32)
    for row in base:
        bins = rng.choice(H.TOTAL_BINS, 180, replace=False)
        row[bins] = rng.random(180).astype(np.float32) ** 3 + 1e-4
    base /= base.sum(axis=1, keepdims=True)
    return base[np.arange(n) % len(base)]


def path_of(i: int) -> bytes:
    return ODD_PATHS[i // 7 % len(ODD_PATHS)] + f"#{i}".encode() if i % 7 == 3 else f"dir{i % 5}/img{i}.jpg".encode()


def make_v1(index_dir: Path, hists: np.ndarray, tombstoned: np.ndarray, chunk: int = 8000) -> None:
    """A version-1 catalog as the previous release wrote it: the same tables, dense histograms, schema '1'.
    Rows 1..n; `tombstoned` (0-based positions) carry a deleted_at; failures and roots rows too."""
    index_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(index_dir / CATALOG_FILE))
    try:
        con.execute(V1_SCHEMA)
        con.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('fingerprint', ?)", [FP])
        for low in range(0, len(hists), chunk):
            n = min(chunk, len(hists) - low)
            ids = np.arange(low + 1, low + n + 1, dtype=np.int64)
            table = pa.table({
                "id": ids,
                "root": pa.array(["/photos" if i % 3 else "/other" for i in ids.tolist()], pa.string()),
                "path": pa.array([path_of(i) for i in ids.tolist()], pa.binary()),
                "size": ids * 1000 + 17,
                "mtime_ns": ids + 1_600_000_000_000_000_000,
                "content_hash": pa.array([f"xxh-{i:08x}" for i in ids.tolist()], pa.string()),
                "width": pa.array((ids % 4000 + 1).astype(np.int32)),
                "height": pa.array((ids % 3000 + 2).astype(np.int32)),
                "histogram": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.ascontiguousarray(hists[low:low + n]).reshape(-1), pa.float32()), H.TOTAL_BINS),
            })
            con.register("_rows", table)
            con.execute("INSERT INTO images (id, root, path, size, mtime_ns, content_hash, width, height, histogram, "
                        "indexed_at, updated_at) SELECT id, root, path, size, mtime_ns, content_hash, width, height, "
                        "histogram, to_timestamp(1.6e9 + id), to_timestamp(1.65e9 + id * 2) FROM _rows")
            con.unregister("_rows")
        if len(tombstoned):
            con.execute("UPDATE images SET deleted_at = to_timestamp(1.7e9 + id) "
                        "WHERE id IN (SELECT unnest(?::BIGINT[]))", [(np.asarray(tombstoned) + 1).tolist()])
        con.execute("INSERT INTO failures VALUES ('/photos', ?, 12, 34, 'not an image', 3, ?), "
                    "('/other', 'plain.jpg'::BLOB, 5, 6, 'truncated', 1, ?)", [b"bad \xff name.jpg", FAILED_AT,
                                                                                FAILED_AT])
        con.execute("INSERT INTO roots VALUES ('/photos', NULL, 1700000000.5, 1234), ('/other', 1690000000.25, NULL, "
                    "NULL), ('/gone', 1680000000.0, 1670000000.0, 0)")
    finally:
        con.close()


def snapshot(index_dir: Path) -> dict[str, Any]:
    """Every table as stored, histograms aside (timestamps as epoch microseconds), and the histogram type."""
    con = duckdb.connect(str(index_dir / CATALOG_FILE), read_only=True)
    try:
        return {
            "images": con.execute(
                "SELECT id, root, path, size, mtime_ns, content_hash, width, height, epoch_us(indexed_at), "
                "epoch_us(updated_at), epoch_us(deleted_at) FROM images ORDER BY id").fetchall(),
            "failures": con.execute("SELECT root, path, size, mtime_ns, reason, attempts, epoch_us(failed_at) "
                                    "FROM failures ORDER BY root, path").fetchall(),
            "roots": con.execute("SELECT * FROM roots ORDER BY root").fetchall(),
            "meta": dict(con.execute("SELECT key, value FROM meta").fetchall()),
            "histogram_type": con.execute("SELECT data_type FROM duckdb_columns() WHERE table_name = 'images' "
                                          "AND column_name = 'histogram'").fetchall()[0][0],
        }
    finally:
        con.close()


def all_histograms(catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """(ids, histograms) of every row, tombstoned ones included, in id order."""
    parts = list(catalog.iter_histograms(live_only=False))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def leftovers(index_dir: Path) -> list[str]:
    return sorted(p.name for p in index_dir.iterdir() if MIGRATING_SUFFIX in p.name)


def assert_same_histograms(got: np.ndarray, want: np.ndarray, exact: bool) -> None:
    if exact:
        assert np.array_equal(got, want)
    else:
        assert np.allclose(got, want, rtol=F16_RTOL, atol=F16_ATOL), np.abs(got - want).max()
        assert not np.array_equal(got, want)  # really the float16 form, not the dense column read back


# -- a small catalog: every column kept ----------------------------------------------------------------
def test_a_version_1_catalog_is_read_as_it_is_read_only_and_rewritten_read_write(tmp_path: Path) -> None:
    n = 3000
    hists = real_histograms(n)
    dead = np.arange(5, n, 9)
    make_v1(tmp_path, hists, dead)
    before = snapshot(tmp_path)
    assert before["histogram_type"] == "FLOAT[1152]" and before["meta"]["schema_version"] == "1"
    v1_size = (tmp_path / CATALOG_FILE).stat().st_size

    with Catalog.open(tmp_path, FP, read_only=True) as cat:
        ids, got = all_histograms(cat)
        assert ids.tolist() == list(range(1, n + 1))
        assert_same_histograms(got, hists, exact=True)
        assert cat.deleted_ids().tolist() == (dead + 1).tolist()
        assert cat.counts() == {"live": n - len(dead), "tombstoned": len(dead), "failed": 2, "max_id": n}
        assert cat.live_files("/photos")[path_of(4)].image_id == 4
        assert cat.failed_files()[("/photos", b"bad \xff name.jpg")].attempts == 3
        assert cat.root_records()["/other"].retired_at == 1690000000.25
        # the searcher's read, in the order asked
        rows, picked = cat.histogram_rows(np.array([n, 1, 700]))
        assert rows.tolist() == [n, 1, 700] and np.array_equal(picked, hists[[n - 1, 0, 699]])
        live, recovery = open_live_index(tmp_path, cat, FP)  # no checkpoint: rebuilt in memory from v1 rows
        assert not recovery.loaded_checkpoint and live.ntotal == n - len(dead)
        live.checkpoint(tmp_path, FP)  # the index a version-1 daemon left behind
    assert snapshot(tmp_path) == before  # a read-only open rewrites nothing
    assert leftovers(tmp_path) == []

    with Catalog.open(tmp_path, FP) as cat:  # read-write: migrated
        ids, got = all_histograms(cat)
        assert ids.tolist() == list(range(1, n + 1))
        assert_same_histograms(got, hists, exact=False)
        live, recovery = open_live_index(tmp_path, cat, FP)
        assert recovery.loaded_checkpoint and recovery.caught_up == 0 and recovery.rebuilt_reason is None
        assert live.ntotal == n - len(dead)
        v2_size = (tmp_path / CATALOG_FILE).stat().st_size
        new_id = cat.apply(Changes(added=[NewImage("/photos", b"new.jpg", 1, 2, "h", 3, 4, hists[0])]))
        assert new_id == [n + 1]
    after = snapshot(tmp_path)
    catalog_id = after["meta"].pop("catalog_id")  # given on the first read-write open: a uuid4
    assert len(catalog_id) == 32 and int(catalog_id, 16) >= 0
    assert after["histogram_type"] == "BLOB"
    assert after["meta"] == {"schema_version": str(SCHEMA_VERSION), "fingerprint": FP}
    assert after["images"][:n] == before["images"]  # ids, paths, sizes, mtimes, hashes, timestamps, deleted_at
    assert after["failures"] == before["failures"] and after["roots"] == before["roots"]
    assert leftovers(tmp_path) == [] and not (tmp_path / (CATALOG_FILE + ".wal")).exists()
    # DuckDB compresses the zeros of the dense column already (~1.7 KB a row here); the sparse form saves a
    # third of that, not the nine tenths the raw sizes promise (4.6 KB -> 0.4 KB).
    assert v2_size < 0.8 * v1_size, (v2_size, v1_size)


def test_leftovers_of_a_crashed_migration_are_removed_and_confuse_nothing(tmp_path: Path) -> None:
    hists = real_histograms(400, seed=3)
    make_v1(tmp_path, hists, np.array([0, 10]))
    before = snapshot(tmp_path)
    # What a killed attempt leaves: a half-written DuckDB file (here: a whole one holding other rows) and a WAL.
    tmp = tmp_path / (CATALOG_FILE + MIGRATING_SUFFIX)
    (tmp_path / "elsewhere").mkdir()
    with Catalog.open(tmp_path / "elsewhere", FP) as other:
        other.apply(Changes(added=[NewImage("/impostor", b"x.jpg", 1, 1, "h", 1, 1, hists[5])]))
    shutil.copy(tmp_path / "elsewhere" / CATALOG_FILE, tmp)
    (tmp_path / (tmp.name + ".wal")).write_bytes(os.urandom(5000))

    with Catalog.open(tmp_path, FP, read_only=True) as cat:  # a reader ignores them
        assert cat.counts()["max_id"] == 400 and cat.roots() == ["/other", "/photos"]
    assert tmp.exists()

    with Catalog.open(tmp_path, FP) as cat:
        assert cat.roots() == ["/other", "/photos"] and cat.counts()["max_id"] == 400
        assert_same_histograms(all_histograms(cat)[1], hists, exact=False)
    after = snapshot(tmp_path)
    assert after["meta"]["schema_version"] == str(SCHEMA_VERSION) and after["images"] == before["images"]
    assert leftovers(tmp_path) == []
    with Catalog.open(tmp_path, FP) as cat:  # and a second read-write open has nothing left to do
        assert cat.counts()["max_id"] == 400
    assert snapshot(tmp_path)["images"] == before["images"]


def test_a_migration_that_fails_leaves_the_version_1_catalog_and_no_leftover(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    hists = real_histograms(300, seed=4)
    make_v1(tmp_path, hists, np.array([3]))
    before = snapshot(tmp_path)

    def broken(*args: object) -> None:
        raise RuntimeError("interrupted")

    monkeypatch.setattr(C, "_copy_v1_images", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        Catalog.open(tmp_path, FP)
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []
    monkeypatch.undo()
    with Catalog.open(tmp_path, FP) as cat:
        assert_same_histograms(all_histograms(cat)[1], hists, exact=False)


def test_rows_only_in_the_write_ahead_log_of_a_version_1_catalog_are_migrated(tmp_path: Path) -> None:
    hists = real_histograms(300, seed=6)
    make_v1(tmp_path, hists[:200], np.array([1]))
    con = duckdb.connect(str(tmp_path / CATALOG_FILE))
    con.execute("PRAGMA disable_checkpoint_on_shutdown")  # as a killed daemon leaves it: the last rows in the WAL
    con.register("_more", pa.table({"id": np.arange(201, 301), "histogram": pa.FixedSizeListArray.from_arrays(
        pa.array(hists[200:].reshape(-1), pa.float32()), H.TOTAL_BINS)}))
    con.execute("INSERT INTO images (id, root, path, size, mtime_ns, content_hash, width, height, histogram) "
                "SELECT id, '/photos', ('wal' || id)::BLOB, id, id, 'h' || id, 1, 1, histogram FROM _more")
    con.execute("UPDATE images SET deleted_at = now() WHERE id IN (5, 250)")
    con.close()
    assert (tmp_path / (CATALOG_FILE + ".wal")).exists()
    before = snapshot(tmp_path)
    assert len(before["images"]) == 300
    with Catalog.open(tmp_path, FP) as cat:
        assert cat.deleted_ids().tolist() == [2, 5, 250]
        assert_same_histograms(all_histograms(cat)[1], hists, exact=False)
    after = snapshot(tmp_path)
    assert after["meta"]["schema_version"] == str(SCHEMA_VERSION) and after["images"] == before["images"]
    assert not (tmp_path / (CATALOG_FILE + ".wal")).exists() and leftovers(tmp_path) == []


def fail_migration_on_a_full_disk(tmp_path: Path, disk: Path, hists: np.ndarray) -> tuple[Path, dict[str, Any]]:
    """A version-1 catalog on `disk`, filled so that its rewrite does not fit; Catalog.open must raise
    StorageError. (the index dir, the catalog's snapshot before)."""
    make_v1(tmp_path / "made", hists, np.array([0, 1, 2]))  # made where there is room (its WAL is big)
    index_dir = disk / "index"
    index_dir.mkdir()
    shutil.copy(tmp_path / "made" / CATALOG_FILE, index_dir / CATALOG_FILE)
    before = snapshot(index_dir)
    st = os.statvfs(disk)
    with (disk / "filler").open("wb") as f:  # room for what DuckDB writes to the old catalog, not the new one
        os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - 256 * 1024)
    with pytest.raises(StorageError, match="no space left"):
        Catalog.open(index_dir, FP)
    return index_dir, before


def test_a_full_disk_during_the_migration_leaves_the_version_1_catalog(tmp_path: Path) -> None:
    hists = real_histograms(3000, seed=7)
    with mounted_tmpfs(tmp_path / "disk", "16m") as disk:
        index_dir, before = fail_migration_on_a_full_disk(tmp_path, disk, hists)
        assert snapshot(index_dir) == before
        assert not (index_dir / (CATALOG_FILE + MIGRATING_SUFFIX)).exists()
        (disk / "filler").unlink()
        with Catalog.open(index_dir, FP) as cat:  # space is back: the next open migrates
            assert cat.counts()["max_id"] == 3000
            assert_same_histograms(all_histograms(cat)[1], hists, exact=False)
        assert snapshot(index_dir)["images"] == before["images"] and leftovers(index_dir) == []


def test_a_failed_migration_leaves_no_write_ahead_log_behind(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk", "16m") as disk:
        index_dir, _ = fail_migration_on_a_full_disk(tmp_path, disk, real_histograms(3000, seed=7))
        assert leftovers(index_dir) == []


def test_a_version_1_catalog_opened_read_only_can_rebuild_an_index_in_the_pca_layout(tmp_path: Path) -> None:
    hists = real_histograms(300, seed=8)
    make_v1(tmp_path, hists, np.array([0]))
    with Catalog.open(tmp_path, FP, read_only=True) as cat:
        live = rebuild_from(cat, pca_from=256)  # what open_live_index does with no usable checkpoint
        assert live.layout == PCA and live.ntotal == 299


def test_a_version_1_index_dir_is_refused_by_merge_until_compact_brings_it_up_to_date(tmp_path: Path) -> None:
    hists = real_histograms(60, seed=9)
    make_v1(tmp_path / "old", hists[:50], np.array([0]))
    (tmp_path / "new").mkdir()
    with Catalog.open(tmp_path / "new", FP) as cat:
        cat.apply(Changes(added=[NewImage("/elsewhere", f"{i}.jpg".encode(), 1, 1, "h", 1, 1, h)
                                 for i, h in enumerate(hists[50:])]))
    with pytest.raises(IndexDirError, match="written by an older version; run `chromatica-watch compact"):
        merge([tmp_path / "old", tmp_path / "new"], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
    compact(tmp_path / "old", FP)  # opens it for writing: migrated
    report = merge([tmp_path / "old", tmp_path / "new"], tmp_path / "merged")
    assert report.live == 59
    with Catalog.open(tmp_path / "merged", FP, read_only=True) as cat:
        ids, got = cat.histogram_rows(np.arange(2, 51))
        assert ids.tolist() == list(range(2, 51))
        assert np.allclose(got, hists[1:50], rtol=F16_RTOL, atol=F16_ATOL)


# -- kill -9 during the rewrite ------------------------------------------------------------------------
BIG_ROWS = 24_000
CHILD = ("import sys\nfrom pathlib import Path\nfrom chromatica_watch.storage.catalog import Catalog\n"
         "Catalog.open(Path(sys.argv[1]), sys.argv[2]).close()\nprint('migrated', flush=True)\n")


@pytest.fixture(scope="module")
def big_v1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray, dict[str, Any]]:
    """(a version-1 index dir of BIG_ROWS rows to copy, its histograms, tombstoned positions, its snapshot)."""
    pristine = tmp_path_factory.mktemp("big_v1")
    hists = sparse_histograms(BIG_ROWS)
    dead = np.arange(0, BIG_ROWS, 13)
    make_v1(pristine, hists, dead)
    return pristine, hists, dead, snapshot(pristine)


def run_child(index_dir: Path, kill_after: float | None) -> tuple[int, float]:
    """Open the catalog of `index_dir` read-write in a new process; SIGKILL it `kill_after` seconds after
    `.migrating` appears (None: let it finish). (its return code, seconds from `.migrating` appearing to its
    rename over the catalog, when it was let finish)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    tmp = index_dir / (CATALOG_FILE + MIGRATING_SUFFIX)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(index_dir), FP], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: tmp.exists() or proc.poll() is not None, timeout=60, interval=0.002)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        started = time.monotonic()
        if kill_after is None:
            wait_until(lambda: not tmp.exists() or proc.poll() is not None, timeout=120, interval=0.002)
            took = time.monotonic() - started
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0 and b"migrated" in out, err.decode()[-2000:]
            return proc.returncode, took
        else:
            if kill_after:
                time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            return proc.returncode, 0.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_kill_9_during_the_migration_leaves_the_old_or_the_new_catalog_never_neither(
        tmp_path: Path, big_v1: tuple[Path, np.ndarray, np.ndarray, dict[str, Any]]) -> None:
    pristine, hists, dead, before = big_v1
    seen: list[tuple[float | None, str, int, list[str]]] = []
    duration = 0.0
    # First a whole migration, timed; then kills at fractions of it, from the moment `.migrating` appears.
    for fraction in (None, 0.0, 0.25, 0.5, 0.8):
        index_dir = tmp_path / f"kill-{fraction}"
        index_dir.mkdir()
        shutil.copy(pristine / CATALOG_FILE, index_dir / CATALOG_FILE)
        code, took = run_child(index_dir, None if fraction is None else fraction * duration)
        if fraction is None:
            duration = took
        left = leftovers(index_dir)
        state = snapshot(index_dir)  # the catalog opens, whichever it is, and holds every original row
        assert state["images"] == before["images"] and state["failures"] == before["failures"]
        assert state["roots"] == before["roots"]
        version = state["meta"]["schema_version"]
        allowed = (("1", "FLOAT[1152]"), (str(SCHEMA_VERSION), "BLOB"))
        assert (version, state["histogram_type"]) in allowed, state["meta"]
        if version == str(SCHEMA_VERSION):
            assert left == []  # the rename is the commit point: no new catalog with a leftover beside it
        seen.append((fraction, version, code, left))
        with Catalog.open(index_dir, FP, read_only=True) as cat:
            ids, got = all_histograms(cat)
            assert ids.tolist() == list(range(1, BIG_ROWS + 1))
            assert_same_histograms(got, hists, exact=version == "1")
            assert cat.deleted_ids().tolist() == (dead + 1).tolist()
        if version == "1":
            with Catalog.open(index_dir, FP) as cat:  # read-write: the migration is completed
                assert cat.counts()["max_id"] == BIG_ROWS
            after = snapshot(index_dir)
            assert after["meta"]["schema_version"] == str(SCHEMA_VERSION) and after["images"] == before["images"]
            assert leftovers(index_dir) == []
        shutil.rmtree(index_dir)
    assert seen[0][1:] == (str(SCHEMA_VERSION), 0, []), seen
    killed = [s for s in seen if s[2] == -signal.SIGKILL]
    # The early kills landed mid-rewrite: the old catalog, an unfinished new one beside it. (The late ones may
    # find the child done, as the machine's load changes how long a rewrite takes.)
    assert sum(s[1] == "1" and bool(s[3]) for s in killed) >= 2, (duration, seen)


def test_a_version_2_catalog_is_not_rewritten(tmp_path: Path) -> None:
    hists = real_histograms(50, seed=5)
    with Catalog.open(tmp_path, FP) as cat:
        cat.apply(Changes(added=[NewImage("/r", f"{i}.jpg".encode(), 1, 1, "h", 1, 1, h)
                                 for i, h in enumerate(hists)]))
    stamp = (tmp_path / CATALOG_FILE).stat().st_ino
    with Catalog.open(tmp_path, FP) as cat:
        assert cat.counts()["live"] == 50
    assert (tmp_path / CATALOG_FILE).stat().st_ino == stamp  # not replaced by a rewrite
    assert leftovers(tmp_path) == []
