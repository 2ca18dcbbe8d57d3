"""The catalog when the disk fills or the file is damaged: real DuckDB files, a real small tmpfs.

Only named errors come out (StorageError, CatalogDamaged, IndexDirError), nothing committed is lost and
nothing of a failed batch is stored. The tests read DuckDB's own storage tables (pragma_storage_info,
pragma_database_size) to aim their damage at blocks that are in use.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.errors import CatalogDamaged, IndexDirError, StorageError
from chromatica_watch.core.records import Changes, Failure, NewImage
from chromatica_watch.offline.validate import validate
from chromatica_watch.storage.catalog import CATALOG_FILE, Catalog, quarantine
from chromatica_watch.storage.indexdir import open_live_index
from tests.conftest import mounted_tmpfs

FP = H.fingerprint(256)
KiB = 1024
MiB = 1024 * KiB
# DuckDB's file layout: a 4 KiB main header and two 4 KiB database headers, then fixed-size blocks.
FILE_HEADER = 3 * 4 * KiB
BLOCK = 256 * KiB
# A COMMIT that finds the WAL past DuckDB's checkpoint_threshold (16 MiB by default) checkpoints.
ROWS_PAST_CHECKPOINT_THRESHOLD = 9000  # ~2 KB a row in the WAL: these random histograms are dense


def random_hists(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = rng.random((n, H.TOTAL_BINS)).astype(np.float32) ** 8  # peaky, like real images
    return h / h.sum(axis=1, keepdims=True)


def new_images(n: int, prefix: str, seed: int = 0) -> list[NewImage]:
    return [NewImage("/root", f"{prefix}{i}.jpg".encode(), 100 + i, 10**18 + i, f"hash-{prefix}{i}", 10, 8, h)
            for i, h in enumerate(random_hists(n, seed))]


def failures(n: int) -> list[Failure]:
    return [Failure("/root", f"bad{i}.jpg".encode(), 1, 2, "not an image") for i in range(n)]


# -- a small disk that fills up ----------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk", "64m") as mnt:
        yield mnt


def fill(disk: Path, leave: int) -> Path:
    """Take all the free space of `disk` but `leave` bytes; delete the returned file to give it back."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize - leave)
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_at_commit_raises_storage_error_and_the_batch_commits_once_space_is_back(
        small_disk: Path) -> None:
    index_dir = small_disk / "index"
    index_dir.mkdir()
    cat = Catalog.open(index_dir, FP)
    kept = cat.apply(Changes(added=new_images(200, "kept")))
    batch = Changes(added=new_images(200, "batch", seed=1), tombstoned=[kept[0]], failed=failures(3))
    filler = fill(small_disk, leave=300 * KiB)  # the batch's WAL (~1 MB) does not fit

    with pytest.raises(StorageError) as failed:
        cat.apply(batch)
    path = index_dir / CATALOG_FILE
    assert str(failed.value) == f"no space left on device writing the catalog {path}"
    assert failed.value.reason == "no space left on device" and failed.value.path == path
    assert isinstance(failed.value.__cause__, duckdb.TransactionException)  # the first error, not ROLLBACK's
    # Everything committed before is there, nothing of the batch (not even its tombstone or failures).
    assert set(cat.live_files("/root")) == {f"kept{i}.jpg".encode() for i in range(200)}
    assert cat.counts() == {"live": 200, "tombstoned": 0, "failed": 0, "max_id": 200}

    filler.unlink()
    assert cat.apply(batch) == list(range(201, 401))  # the same Catalog, as is
    cat.close()
    cat = Catalog.open(index_dir, FP)
    assert cat.counts() == {"live": 399, "tombstoned": 1, "failed": 3, "max_id": 400}
    cat.close()


def test_a_full_disk_at_a_checkpoint_invalidates_duckdb_and_the_catalog_opens_it_again(small_disk: Path) -> None:
    index_dir = small_disk / "index"
    index_dir.mkdir()
    cat = Catalog.open(index_dir, FP)
    cat.apply(Changes(added=new_images(ROWS_PAST_CHECKPOINT_THRESHOLD, "kept")))  # all in the WAL so far
    batch = Changes(added=new_images(5, "batch", seed=1), failed=failures(1))
    filler = fill(small_disk, leave=300 * KiB)  # the WAL write fits, the checkpoint it triggers does not

    with pytest.raises(StorageError, match="no space left on device writing the catalog") as failed:
        cat.apply(batch)
    assert isinstance(failed.value.__cause__, duckdb.FatalException)  # DuckDB gave the database up
    # Opened again behind the scenes, even before space is back: every committed row, none of the batch.
    assert cat.counts() == {"live": ROWS_PAST_CHECKPOINT_THRESHOLD, "tombstoned": 0, "failed": 0,
                            "max_id": ROWS_PAST_CHECKPOINT_THRESHOLD}

    filler.unlink()
    first = ROWS_PAST_CHECKPOINT_THRESHOLD + 1
    assert cat.apply(batch) == list(range(first, first + 5))
    cat.close()
    cat = Catalog.open(index_dir, FP)
    assert cat.counts()["live"] == ROWS_PAST_CHECKPOINT_THRESHOLD + 5 and cat.counts()["failed"] == 1
    assert cat.verify().rows["images"] == ROWS_PAST_CHECKPOINT_THRESHOLD + 5
    cat.close()


def test_a_duckdb_error_mid_batch_rolls_back_and_is_named(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path, FP)
    cat.apply(Changes(added=new_images(3, "kept")))
    broken = Changes(added=new_images(2, "b"), failed=[Failure("/root", None, 1, 2, "x")])  # type: ignore[arg-type]
    with pytest.raises(IndexDirError, match=f"catalog {tmp_path / CATALOG_FILE}: Constraint Error") as failed:
        cat.apply(broken)
    assert not isinstance(failed.value, duckdb.Error)
    assert cat.counts()["live"] == 3  # the two rows inserted before the failing statement were rolled back
    assert cat.apply(Changes(added=new_images(1, "next"))) == [4]
    cat.close()
    with pytest.raises(IndexDirError, match="closed"):
        cat.counts()


# -- damaged files -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog of 3000 images (some tombstoned) and 50 failures, written once and closed."""
    index_dir = tmp_path_factory.mktemp("pristine")
    cat = Catalog.open(index_dir, FP)
    ids = cat.apply(Changes(added=new_images(1500, "a")))
    cat.apply(Changes(added=new_images(1500, "b", seed=1), tombstoned=ids[:100], failed=failures(50)))
    cat.close()
    return index_dir


@pytest.fixture
def copy_of(pristine: Path, tmp_path: Path) -> Path:
    index_dir = tmp_path / "index"
    shutil.copytree(pristine, index_dir)
    return index_dir


def storage_facts(path: Path) -> tuple[list[int], int, int]:
    """(blocks holding histogram data, total blocks, free blocks), from DuckDB itself."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        hist = sorted({b for (b,) in con.execute(
            "SELECT block_id FROM pragma_storage_info('images') WHERE column_name = 'histogram' "
            "AND block_id >= 0").fetchall()})
        total, free = con.execute("SELECT total_blocks, free_blocks FROM pragma_database_size()").fetchone()
    finally:
        con.close()
    return hist, int(total), int(free)


def overwrite(path: Path, offset: int, n: int = 4096) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(np.random.default_rng(offset).integers(0, 256, n, dtype=np.uint8).tobytes())


def test_bytes_overwritten_in_the_middle_are_found_by_verify_and_by_every_reader(copy_of: Path) -> None:
    path = copy_of / CATALOG_FILE
    hist_blocks, _, _ = storage_facts(path)
    middle = hist_blocks[len(hist_blocks) // 2]
    overwrite(path, FILE_HEADER + middle * BLOCK + BLOCK // 2)

    cat = Catalog.open(copy_of, FP, read_only=True)
    assert cat.counts()["live"] == 2900  # the damage hides in a column these reads do not touch...
    with pytest.raises(CatalogDamaged) as damaged:
        cat.verify()  # ...and verify reads it
    assert damaged.value.path == path
    assert str(damaged.value) == (
        f"the catalog {path} is damaged (checksum mismatch in the block at byte "
        f"{FILE_HEADER + middle * BLOCK}): start the daemon (`chromatica-watch run`) to set it aside and "
        "index the folder again, or restore it from a backup")
    with pytest.raises(CatalogDamaged, match="checksum mismatch"):
        list(cat.iter_histograms())
    with pytest.raises(CatalogDamaged, match="checksum mismatch"):
        cat.sample_histograms(3000)
    cat.close()


def test_a_truncated_catalog_is_damaged_at_open_or_verify(copy_of: Path) -> None:
    path = copy_of / CATALOG_FILE
    os.truncate(path, path.stat().st_size // 2)
    for read_only in (True, False):
        with pytest.raises(CatalogDamaged, match=rf"the catalog {path} is damaged \(truncated: "):
            Catalog.open(copy_of, FP, read_only=read_only).verify()


@pytest.mark.parametrize("damage", ["not duckdb", "empty", "main header", "database header"])
def test_a_file_that_is_not_a_catalog_is_damaged_at_open_and_left_as_it_is(copy_of: Path, damage: str) -> None:
    path = copy_of / CATALOG_FILE
    if damage == "not duckdb":
        path.write_text("these are my holiday notes\n" * 200)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        overwrite(path, 0 if damage == "main header" else 4096, 64)
    before = path.read_bytes()
    expected = "checksum mismatch" if damage == "database header" else "not a DuckDB database file"
    for read_only in (True, False):
        with pytest.raises(CatalogDamaged, match=expected) as damaged:
            Catalog.open(copy_of, FP, read_only=read_only)
        assert str(path) in str(damaged.value)
    assert path.read_bytes() == before


@pytest.mark.parametrize("read_only", [False, True])
def test_verify_finds_damage_in_every_block_in_use(tmp_path: Path, read_only: bool) -> None:
    """Each block damaged in turn (a smaller catalog, to stay fast): only free blocks go unnoticed; read-only
    also misses the failures index, which DuckDB can walk only by a write (and verify says so)."""
    src = tmp_path / "src"
    src.mkdir()
    cat = Catalog.open(src, FP)
    ids = cat.apply(Changes(added=new_images(400, "a"), failed=failures(30)))
    cat.apply(Changes(tombstoned=ids[:10]))
    cat.close()
    _, total, free = storage_facts(src / CATALOG_FILE)
    cat = Catalog.open(src, FP, read_only=read_only)
    verified = cat.verify()  # the undamaged catalog reads back
    cat.close()
    work = tmp_path / "work"
    undetected = []
    for block in range(total):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(src, work)
        overwrite(work / CATALOG_FILE, FILE_HEADER + block * BLOCK + 1000, 64)
        try:
            cat = Catalog.open(work, FP, read_only=read_only)
        except CatalogDamaged:
            continue
        try:
            cat.verify()
            undetected.append(block)
        except CatalogDamaged:
            pass
        finally:
            cat.close()
    if read_only:
        assert verified.indexes_not_walked == ["failures(root, path)"]
        assert len(undetected) <= free + 1
    else:
        assert verified.indexes_walked == ["failures(root, path)", "images(id)", "meta(key)", "roots(root)"]
        assert len(undetected) <= free
    assert total >= 8  # data, metadata and three indexes: the loop did damage something


# -- validate ----------------------------------------------------------------------------------------
def index_dir_with_checkpoint(index_dir: Path) -> Path:
    index_dir.mkdir()
    cat = Catalog.open(index_dir, FP)
    cat.apply(Changes(added=new_images(600, "a"), failed=failures(5)))
    open_live_index(index_dir, cat, FP)[0].checkpoint(index_dir, FP)
    cat.close()
    return index_dir


def test_validate_reports_a_damaged_catalog_as_a_failed_check(tmp_path: Path) -> None:
    index_dir = index_dir_with_checkpoint(tmp_path / "index")
    path = index_dir / CATALOG_FILE
    assert all(c.ok for c in validate(index_dir)), validate(index_dir)
    reads_back = {c.name: c for c in validate(index_dir)}["catalog reads back"]
    assert "600 images" in reads_back.detail and "images(id)" in reads_back.detail

    hist_blocks, _, _ = storage_facts(path)
    overwrite(path, FILE_HEADER + hist_blocks[len(hist_blocks) // 2] * BLOCK + 5000)
    checks = {c.name: c for c in validate(index_dir)}
    assert checks["catalog opens"].ok
    assert not checks["catalog reads back"].ok
    assert f"the catalog {path} is damaged (checksum mismatch" in checks["catalog reads back"].detail


@pytest.mark.parametrize("damage", ["not duckdb", "truncated"])
def test_validate_reports_a_catalog_that_does_not_open(tmp_path: Path, damage: str) -> None:
    index_dir = index_dir_with_checkpoint(tmp_path / "index")
    path = index_dir / CATALOG_FILE
    if damage == "truncated":
        os.truncate(path, path.stat().st_size // 3)
    else:
        path.write_bytes(b"\0" * 100_000)
    checks = validate(index_dir)
    failed = [c for c in checks if not c.ok]
    assert len(failed) == 1 and failed[0].name in ("catalog opens", "catalog reads back")
    assert f"the catalog {path} is damaged" in failed[0].detail


# -- quarantine --------------------------------------------------------------------------------------
def test_quarantine_renames_the_catalog_and_its_wal_and_keeps_their_bytes(tmp_path: Path) -> None:
    now = datetime(2025, 3, 4, 5, 6, 7)
    (tmp_path / CATALOG_FILE).write_bytes(b"first catalog")
    (tmp_path / (CATALOG_FILE + ".wal")).write_bytes(b"first wal")
    kept = quarantine(tmp_path, now)
    assert kept == tmp_path / f"{CATALOG_FILE}.damaged-20250304T050607"
    assert kept.read_bytes() == b"first catalog"
    assert (tmp_path / f"{kept.name}.wal").read_bytes() == b"first wal"
    assert not (tmp_path / CATALOG_FILE).exists() and not (tmp_path / (CATALOG_FILE + ".wal")).exists()

    (tmp_path / CATALOG_FILE).write_bytes(b"second catalog")  # damaged again within the same second
    again = quarantine(tmp_path, now)
    assert again == tmp_path / f"{CATALOG_FILE}.damaged-20250304T050607-2"
    assert again.read_bytes() == b"second catalog" and kept.read_bytes() == b"first catalog"
    assert not (tmp_path / f"{again.name}.wal").exists()

    with pytest.raises(IndexDirError, match="no catalog"):
        quarantine(tmp_path, now)


def test_a_quarantined_catalog_makes_room_for_a_new_one(copy_of: Path) -> None:
    path = copy_of / CATALOG_FILE
    path.write_bytes(b"\0" * 50_000)
    with pytest.raises(CatalogDamaged):
        Catalog.open(copy_of, FP)
    kept = quarantine(copy_of, datetime(2025, 1, 2, 3, 4, 5))
    assert kept.read_bytes() == b"\0" * 50_000
    cat = Catalog.open(copy_of, FP)
    assert cat.counts()["live"] == 0 and cat.verify().rows["images"] == 0
    cat.close()


def test_a_catalog_damaged_at_its_first_read_leaves_no_connection_behind(copy_of: Path) -> None:
    """Cut short, the file connects and fails at the first read: the connection is closed there, so that, with
    the damage still in hand (its traceback holds what was being opened), the file set aside and a new one
    opened, the new one is a new database and not DuckDB's database of the old file."""
    path = copy_of / CATALOG_FILE
    os.truncate(path, path.stat().st_size // 2)
    before = path.read_bytes()
    with pytest.raises(CatalogDamaged, match="truncated") as damaged:
        Catalog.open(copy_of, FP)
    kept = quarantine(copy_of, datetime(2025, 1, 2, 3, 4, 5))
    assert damaged.value.__traceback__ is not None
    cat = Catalog.open(copy_of, FP)
    assert path.exists() and cat.counts()["live"] == 0 and cat.verify().rows["images"] == 0
    cat.close()
    assert kept.read_bytes() == before


def test_a_catalog_still_open_in_the_process_is_never_taken_for_a_new_one(copy_of: Path) -> None:
    held = Catalog.open(copy_of, FP)
    os.rename(copy_of / CATALOG_FILE, copy_of / "elsewhere.db")  # as a set-aside while a connection is left open
    with pytest.raises(IndexDirError, match="still open in this process"):
        Catalog.open(copy_of, FP)
    assert not (copy_of / CATALOG_FILE).exists()
    held.close()
    cat = Catalog.open(copy_of, FP)
    assert cat.counts()["live"] == 0
    cat.close()
