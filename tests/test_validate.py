"""`validate` checks what the daemon checks at its start: the histogram file (its header names this catalog,
every record reads back: length, id, crc32) and the manifest's watermark (no id past the catalog's highest).
Real index dirs: a DuckDB catalog, a FAISS checkpoint, the histogram file the daemon's code writes."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.records import Changes, NewImage
from chromatica_watch.offline.validate import Check, validate
from chromatica_watch.storage.catalog import CATALOG_FILE, Catalog
from chromatica_watch.storage.histfile import HISTOGRAM_FILE, HistogramFile
from chromatica_watch.storage.index import MANIFEST_FILE
from chromatica_watch.storage.indexdir import open_live_index
from tests.conftest import CLI

FP = H.fingerprint(256)
HEADER = 8 + 32  # the file's magic and catalog id
RECORD = struct.Struct("<qII")  # id, payload length, crc32


def images(n: int, first: int = 0) -> list[NewImage]:
    rng = np.random.default_rng(first)
    h = rng.random((n, H.TOTAL_BINS)).astype(np.float32) ** 8
    h /= h.sum(axis=1, keepdims=True)
    return [NewImage("/root", f"{first + i}.jpg".encode(), 100, 10**18, f"hash{first + i}", 10, 8, row)
            for i, row in enumerate(h)]


def fill_histogram_file(index_dir: Path) -> None:
    with Catalog.open(index_dir, FP) as catalog:
        f = HistogramFile(index_dir / HISTOGRAM_FILE, catalog.catalog_id)
        f.start(catalog.live_ids, catalog.histogram_rows)
        try:
            assert f.ready.wait(30)
        finally:
            f.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 rows, a checkpoint, a histogram file: every check passes."""
    index_dir = tmp_path_factory.mktemp("pristine") / "index"
    index_dir.mkdir()
    with Catalog.open(index_dir, FP) as catalog:
        catalog.apply(Changes(added=images(200)))
        open_live_index(index_dir, catalog, FP)[0].checkpoint(index_dir, FP)
    fill_histogram_file(index_dir)
    return index_dir


@pytest.fixture
def index_dir(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(pristine, copy)
    return copy


def record_offsets(path: Path) -> list[int]:
    blob, offsets, position = path.read_bytes(), [], HEADER
    while position < len(blob):
        offsets.append(position)
        position += RECORD.size + RECORD.unpack_from(blob, position)[1]
    return offsets


def rewrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]


def test_an_index_dir_whose_histogram_file_reads_back_passes(index_dir: Path) -> None:
    checks = {c.name: c for c in validate(index_dir)}
    assert not failed(list(checks.values())), checks
    assert checks["histogram file"].detail == "200 records that read back"
    assert checks["watermark within the catalog"].detail == "watermark 200, the catalog's highest id 200"


def damage_crc(path: Path) -> str:
    offset = record_offsets(path)[100]
    rewrite(path, offset + RECORD.size + 3, b"\xff\x00")
    return f"the record at byte {offset} (id 101) fails its crc32"


def damage_length(path: Path) -> str:
    offset = record_offsets(path)[7]
    image_id, _, crc = RECORD.unpack_from(path.read_bytes(), offset)
    rewrite(path, offset, RECORD.pack(image_id, 1 << 20, crc))
    return f"the record at byte {offset} has a length no histogram has (1048576 bytes)"


def damage_id(path: Path) -> str:
    offset = record_offsets(path)[150]
    _, length, crc = RECORD.unpack_from(path.read_bytes(), offset)
    rewrite(path, offset, RECORD.pack(201, length, crc))  # a row the catalog does not have
    return f"the record at byte {offset} is of id 201, which the catalog does not have (its highest is 200)"


def other_catalog(path: Path) -> str:
    rewrite(path, 8, b"f" * 32)
    return "belongs to another catalog (catalog id " + "f" * 32


def not_a_histogram_file(path: Path) -> str:
    path.write_text("holiday notes\n" * 100)
    return "is not a histogram file"


@pytest.mark.parametrize("damage", [damage_crc, damage_length, damage_id, other_catalog, not_a_histogram_file])
def test_a_damaged_or_mismatched_histogram_file_fails_in_one_line(index_dir: Path,
                                                                 damage: Callable[[Path], str]) -> None:
    path = index_dir / HISTOGRAM_FILE
    expected = damage(path)
    before = path.read_bytes()
    bad = failed(validate(index_dir))
    assert [c.name for c in bad] == ["histogram file"]
    assert expected in bad[0].detail and str(path) in bad[0].detail and "\n" not in bad[0].detail
    assert path.read_bytes() == before  # validate changes nothing


def test_a_record_cut_short_at_the_end_is_what_a_crash_leaves_and_passes(index_dir: Path) -> None:
    path = index_dir / HISTOGRAM_FILE
    last = record_offsets(path)[-1]
    os.truncate(path, last + 10)
    checks = {c.name: c for c in validate(index_dir)}
    assert checks["histogram file"].ok and not failed(list(checks.values()))
    assert checks["histogram file"].detail == (
        f"199 records that read back; the record at byte {last} is cut short (a write a crash interrupted: the "
        "daemon drops it at its start)")


def test_a_watermark_past_the_catalogs_highest_id_fails(index_dir: Path) -> None:
    manifest = index_dir / MANIFEST_FILE
    raw = json.loads(manifest.read_text())
    raw["watermark"] = 260  # the next rows' ids would be taken for rows the index already holds
    manifest.write_text(json.dumps(raw))
    bad = failed(validate(index_dir))
    assert [(c.name, c.detail) for c in bad] == [
        ("watermark within the catalog", "checkpoint holds ids up to 260 but the catalog only up to 200")]


def test_validate_exits_1_naming_each_problem_in_one_line(index_dir: Path, tmp_path: Path) -> None:
    """A catalog restored from an older copy: the checkpoint and the histogram file hold rows it lacks."""
    older = tmp_path / "older"
    older.mkdir()
    shutil.copy(index_dir / CATALOG_FILE, older / CATALOG_FILE)  # a backup, at 200 rows
    with Catalog.open(index_dir, FP) as catalog:
        catalog.apply(Changes(added=images(40, first=200)))
        open_live_index(index_dir, catalog, FP)[0].checkpoint(index_dir, FP)
    fill_histogram_file(index_dir)
    assert not failed(validate(index_dir))
    shutil.copy(older / CATALOG_FILE, index_dir / CATALOG_FILE)  # restored

    proc = subprocess.run([CLI, "validate", str(index_dir)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr == "", proc.stderr
    fails = [line for line in proc.stdout.splitlines() if line.startswith("[FAIL]")]
    assert "[FAIL] watermark within the catalog: checkpoint holds ids up to 240 but the catalog only up to 200" \
        in fails
    histogram = [line for line in fails if line.startswith("[FAIL] histogram file: ")]
    assert len(histogram) == 1 and "is of id 201, which the catalog does not have (its highest is 200)" in histogram[0]
