"""An index made by the previous lock's versions opens with this lock's: a user's index is never lost to an
upgrade. tests/data/previous-lock-index.tar.gz holds six photos and the index `chromatica-watch build` made of
them, in /tmp/chromatica-previous-lock, in a venv of the set the suite passed with before constraints.txt
(duckdb 1.5.6, faiss-cpu 1.15.0, numpy 2.3.5, opencv-python-headless 4.14.0.94, pillow 12.3.0): a DuckDB
catalog of storage version 64 ("v1.0.0+"), which DuckDB 2 reads and writes in place without converting it,
and no stamp of the decoders that made it (decoder_stamp.UNSTAMPED_* stand for them)."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import duckdb

from tests.conftest import CLI, wait_until
from tests.daemon_harness import DaemonEnv
from tests.test_relocate import scramble_keeping_stat

DATA = Path(__file__).parent / "data" / "previous-lock-index.tar.gz"
BUILT_UNDER = "/tmp/chromatica-previous-lock/photos"
PHOTOS = ["blue.jpg", "green.png", "orange.png", "red.jpg", "sub/grey.png", "sub/purple.jxl", "sub/teal.png"]
# pillow-jxl-plugin 1.3.8 (this lock) decodes JPEG XL one level apart from 1.3.7 in about a third of the
# pixels: that photo is read again; every other one keeps its row
READ_AGAIN = "sub/purple.jxl"


def unpack(into: Path) -> tuple[Path, Path]:
    with tarfile.open(DATA) as tar:
        tar.extractall(into, filter="data")  # keeps the photos' mtimes, which the catalog holds
    return into / "photos", into / "index"


def storage_version(catalog: Path) -> str:
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        row = con.execute("SELECT tags['storage_version'] FROM duckdb_databases() "
                          "WHERE NOT internal").fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0])


def search(*args: str) -> list[str]:
    proc = subprocess.run([CLI, "search", "--color", "#dc1e1e", "-k", "10", "--json", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return [m["path"] for m in json.loads(proc.stdout)]


def test_the_previous_index_is_searched_and_validated_as_it_is(tmp_path: Path) -> None:
    _, index = unpack(tmp_path)
    assert storage_version(index / "chromatica_metadata.db") == "v1.0.0+"
    found = search("--index-dir", str(index))
    assert sorted(found) == sorted(f"{BUILT_UNDER}/{p}" for p in PHOTOS) and found[0].endswith("/red.jpg")
    assert len(found) == 7
    proc = subprocess.run([CLI, "validate", str(index)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Its FAISS file holds plain Hellinger vectors: not damaged, made again by the daemon from the catalog.
    assert "[ok] index of an earlier release: checkpoint holds hellinger vectors" in proc.stdout


def test_the_daemon_takes_the_previous_index_over_without_reading_a_photo(daemon_env: DaemonEnv,
                                                                          tmp_path: Path) -> None:
    photos, index = unpack(tmp_path / "previous")
    daemon_env.pictures.rmdir()
    photos.rename(daemon_env.pictures)
    index.rename(daemon_env.index_dir)
    # any decode of these now would be a failure
    scramble_keeping_stat([daemon_env.pictures / p for p in PHOTOS if p != READ_AGAIN])
    daemon_env.start()
    wait_until(lambda: daemon_env.idle_with(7) and daemon_env.status()["counts"]["tombstoned"] == 1, timeout=60)
    counts = daemon_env.status()["counts"]
    assert counts["indexed"] == 7 and counts["failed"] == 0
    log = daemon_env.log()
    # The FAISS file (plain Hellinger vectors) is made again from the catalog's histograms: never a decode.
    assert "checkpoint unusable" not in log
    assert "live index of an earlier release (checkpoint holds hellinger vectors" in log
    assert f"holds the photos of {BUILT_UNDER}" in log  # the rows were moved to the new folder, not re-read
    assert "decode JPEG XL files to other pixels" in log and "1 photos will be read again" in log
    found = search("--config", str(daemon_env.config))
    assert found[0] == str(daemon_env.pictures / "red.jpg") and len(found) == 7
    # The details pass gives the previous catalog's rows what searches filter on, reading headers only (these
    # files are scrambled: no date in them, so each falls back to its file's date, and nothing fails).
    wait_until(lambda: daemon_env.status().get("details_pending") == 0, timeout=60)
    proc = daemon_env.cli("search", "--taken-after", "1971", "--color", "#ff0000", "-k", "7", "--json")
    assert proc.returncode == 0, proc.stderr
    dated = json.loads(proc.stdout)
    assert len(dated) == 7 and {r["taken_source"] for r in dated} == {"mtime"}
    assert dated[0]["path"] == str(daemon_env.pictures / "red.jpg") and dated[0]["shares"][0]["share"] > 0.1
    assert daemon_env.status()["counts"]["failed"] == 0
    assert daemon_env.stop() == 0
    # written by DuckDB 2 in place, still in the storage version the previous install reads (a rollback works)
    assert storage_version(daemon_env.index_dir / "chromatica_metadata.db") == "v1.0.0+"
