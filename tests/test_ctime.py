"""The inode change time, compared as git's index does: a file replaced while the daemon was stopped by one of
the same size with its mtime set back is hashed again (and decoded, its content being new); a file whose
inode changed but not its bytes is hashed, not decoded; an unchanged file is not read at all, and a catalog
from before ctime was kept is filled in by the first scan without reading a file. Real files, a real daemon."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import duckdb
import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.hashing import hash_bytes
from chromatica_watch.core.paths import DiskFile
from chromatica_watch.core.records import LiveFile
from chromatica_watch.ingest.diff import diff
from chromatica_watch.storage.catalog import CATALOG_FILE, Catalog
from tests.conftest import solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv, assert_index_matches_disk

FP = H.fingerprint(256)
HOUR_NS = 3600 * 10**9
RED, GREEN, BLUE = (220, 20, 20), (20, 200, 40), (20, 40, 220)


def write_old(path: Path, rgb: tuple[int, int, int]) -> Path:
    """An uncompressed BMP (its size depends only on its dimensions) written an hour ago: out of the racy
    window, where a same stat does not prove the same file and the bytes are hashed anyway."""
    write_rgb(path, solid(rgb))
    hour_ago = path.stat().st_mtime_ns - HOUR_NS
    os.utime(path, ns=(hour_ago, hour_ago))
    return path


def top_hit(env: DaemonEnv, colour: str) -> str:
    proc = env.cli("search", "--color", f"{colour}:1", "-k", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    return str(found[0]["relative_path"]) if found else ""


def rows(env: DaemonEnv) -> dict[bytes, LiveFile]:
    with Catalog.open(env.index_dir, FP, read_only=True) as cat:
        return cat.live_files(str(env.pictures))


def start_and_reconcile(env: DaemonEnv) -> str:
    """Start the daemon and wait for its startup scan of the root: the log it wrote meanwhile."""
    offset = len(env.log())
    env.start()
    done = re.compile(rf"{re.escape(str(env.pictures))}: reconciled \d+ files")
    wait_until(lambda: done.search(env.log()[offset:]), timeout=60)
    return env.log()[offset:]


def reconciled(log: str) -> tuple[int, int]:
    """(unchanged, read) of the startup scan: `read` counts the files opened and hashed."""
    found = re.search(r"reconciled \d+ files in [\d.]+ s \((\d+) unchanged, (\d+) read", log)
    assert found is not None, log
    return int(found[1]), int(found[2])


@pytest.mark.parametrize("how", ["overwritten in place", "renamed over"])
def test_a_file_replaced_while_stopped_by_one_of_the_same_size_and_mtime_is_read_again(
        daemon_env: DaemonEnv, how: str) -> None:
    env = daemon_env
    photo = write_old(env.pictures / "photo.bmp", RED)
    write_old(env.pictures / "other.bmp", GREEN)
    env.start()
    wait_until(lambda: env.idle_with(2), timeout=60)
    assert top_hit(env, "#dc1414") == "photo.bmp"
    assert env.stop() == 0
    old_id = rows(env)[b"photo.bmp"].image_id

    before = photo.stat()
    blue = write_rgb(env.pictures / ".blue.bmp", solid(BLUE)).read_bytes()
    (env.pictures / ".blue.bmp").unlink()
    if how == "renamed over":
        tmp = env.pictures / ".photo.bmp.new"
        tmp.write_bytes(blue)
        os.replace(tmp, photo)
    else:
        photo.write_bytes(blue)
    os.utime(photo, ns=(before.st_atime_ns, before.st_mtime_ns))  # the mtime set back; the ctime moves anyway
    after = photo.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns

    log = start_and_reconcile(env)
    assert "1 with a new inode change time" in log, log
    wait_until(lambda: env.idle_with(2), timeout=60)
    assert top_hit(env, "#1428dc") == "photo.bmp"  # the histogram is the new content's
    assert top_hit(env, "#dc1414") != "photo.bmp"
    assert env.stop() == 0
    row = rows(env)[b"photo.bmp"]
    assert row.image_id != old_id and row.content_hash == hash_bytes(blue)
    assert row.ctime_ns == after.st_ctime_ns
    assert_index_matches_disk(env)


def as_version_3(index_dir: Path) -> None:
    """The catalog as the previous version wrote it: no ctime column, schema version 3."""
    con = duckdb.connect(str(index_dir / CATALOG_FILE))
    try:
        con.execute("ALTER TABLE images DROP COLUMN ctime_ns")
        con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    finally:
        con.close()


def test_an_unchanged_file_is_not_hashed_again_and_an_older_catalog_is_filled_in_without_a_read(
        daemon_env: DaemonEnv) -> None:
    env = daemon_env
    paths = [write_old(env.pictures / f"p{i}.bmp", rgb) for i, rgb in enumerate((RED, GREEN, BLUE))]
    env.start()
    wait_until(lambda: env.idle_with(3), timeout=60)
    assert env.stop() == 0
    ids = {p: r.image_id for p, r in rows(env).items()}
    as_version_3(env.index_dir)

    # The upgrade: every row's ctime unknown; the scan reads no file, and fills them in.
    assert reconciled(start_and_reconcile(env)) == (3, 0)
    assert env.stop() == 0
    filled = rows(env)
    assert {p: r.ctime_ns for p, r in filled.items()} == {
        os.fsencode(p.name): p.stat().st_ctime_ns for p in paths}
    assert reconciled(start_and_reconcile(env)) == (3, 0)  # and a start with nothing changed reads nothing
    assert env.stop() == 0

    # Its inode changed, not its bytes (a chmod): hashed again, not decoded (the row and its id kept).
    os.chmod(paths[0], 0o600)
    log = start_and_reconcile(env)
    assert reconciled(log) == (2, 1)
    assert "indexed 1 new image" not in log
    assert env.stop() == 0
    after = rows(env)
    assert {p: r.image_id for p, r in after.items()} == ids
    assert after[b"p0.bmp"].ctime_ns == paths[0].stat().st_ctime_ns
    assert_index_matches_disk(env)


def test_the_diff_compares_the_ctime_only_when_the_row_knows_it() -> None:
    old = 10**18
    disk = {b"same": DiskFile(5, old, 7), b"swapped": DiskFile(5, old, 9), b"unknown": DiskFile(5, old, 9),
            b"grown": DiskFile(6, old, 9)}
    catalog = {b"same": LiveFile(1, 5, old, "a", 7), b"swapped": LiveFile(2, 5, old, "b", 7),
               b"unknown": LiveFile(3, 5, old, "c"), b"grown": LiveFile(4, 5, old, "d", 7)}
    d = diff(disk, catalog, {}, scan_time_ns=old + 10 * HOUR_NS)
    assert d.ctime_changed == [(b"swapped", 2)] and d.changed == [(b"grown", 4)]
    assert d.ctime_unknown == [(3, 9)] and d.unchanged == 2
    assert d.to_ingest == [b"grown", b"swapped"]
