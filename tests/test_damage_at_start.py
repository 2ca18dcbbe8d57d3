"""A catalog found damaged when the daemon starts is set aside and made again in that same start: a real daemon
process, started once on a real DuckDB file damaged on purpose (cut short, or its meta table's block
overwritten: both found by the first read of an opened file, not by the connect)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pytest

from tests.conftest import PHOTO_NAMES, photo, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv, assert_index_matches_disk

FILE_HEADER = 3 * 4096  # DuckDB's main header and its two database headers, then blocks of 256 KiB
BLOCK = 256 * 1024


def block_offset(path: Path, table: str) -> int:
    """Where a table's data lies in the file, from DuckDB's own storage table."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        blocks = [b for (b,) in con.execute(f"SELECT DISTINCT block_id FROM pragma_storage_info('{table}') "
                                             "WHERE block_id >= 0").fetchall()]
    finally:
        con.close()
    assert blocks, f"the {table} table has no block of its own"
    return FILE_HEADER + int(blocks[0]) * BLOCK


def damage(path: Path, how: str) -> None:
    if how == "truncated":
        os.truncate(path, path.stat().st_size // 2)
        return
    offset = block_offset(path, how.split()[0]) + 16
    blob = bytearray(path.read_bytes())
    blob[offset: offset + 64] = bytes(b ^ 0xFF for b in blob[offset: offset + 64])
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("how", ["truncated", "meta block overwritten", "roots block overwritten"])
def test_a_catalog_damaged_at_start_is_made_again_in_the_same_start(daemon_env: DaemonEnv, how: str) -> None:
    env = daemon_env
    for i, name in enumerate(PHOTO_NAMES):
        write_rgb(env.pictures / f"{i}.jpg", photo(name))
    for i in range(30):  # enough rows for the catalog to span several blocks
        write_rgb(env.pictures / f"s{i:02d}.png", solid((8 * i, 255 - 8 * i, 90), (24, 24)))
    n = len(PHOTO_NAMES) + 30
    env.start()
    wait_until(lambda: env.idle_with(n), timeout=120)
    assert env.stop() == 0
    catalog = env.index_dir / "chromatica_metadata.db"
    damage(catalog, how)
    damaged = catalog.read_bytes()

    proc = env.start(wait=False)
    wait_until(lambda: env.idle_with(n) or proc.poll() is not None, timeout=120)
    assert proc.poll() is None, env.stderr()[-2000:]
    kept = list(env.index_dir.glob("chromatica_metadata.db.damaged-*"))
    assert [p.name for p in kept if not p.name.endswith(".wal")] == [kept[0].name]
    assert kept[0].read_bytes() == damaged  # set aside as it was, never deleted

    # Searches answer from the new catalog: every photo is found.
    found = env.cli("search", "--color", "#ff8800", "-k", str(n), "--json")
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)) == n

    # status says what happened, once.
    code, answer = env.verdict()
    alerts = [a["message"] for a in answer["status"]["alerts"] if "damaged" in a["message"]]
    assert code == 0 and len(alerts) == 1 and kept[0].name in alerts[0], answer
    text = env.cli("status").stdout
    notes = [line for line in text.splitlines() if "NOTE:" in line and "damaged" in line]
    assert len(notes) == 1 and kept[0].name in notes[0], text
    assert env.stop() == 0
    assert_index_matches_disk(env)
