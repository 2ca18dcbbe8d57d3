"""An index made with other histogram settings (here: another max_dimension, which changes the
fingerprint exactly as a new histogram algorithm would): the daemon keeps searching the old index while
it indexes the folder again beside it, switches when complete, and a kill -9 at any moment of the switch
leaves one of the two whole."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.offline.validate import validate
from chromatica_watch.storage.catalog import CATALOG_FILE, Catalog, stored_fingerprint
from chromatica_watch.storage.index import INDEX_FILE, MANIFEST_FILE
from chromatica_watch.storage.upgrade import OLD_OUT, PREVIOUS, finish_switch, mark_complete, upgrade_dir
from tests.conftest import wait_until
from tests.daemon_harness import DaemonEnv
from tests.test_relocate import write_photos

FILES = (CATALOG_FILE, CATALOG_FILE + ".wal", INDEX_FILE, MANIFEST_FILE)


# -- the switch, at every point a kill can interrupt it ------------------------------------------------
def index_dirs(tmp_path: Path) -> tuple[Path, Path]:
    index = tmp_path / "index"
    up = upgrade_dir(index, "new")
    up.mkdir(parents=True)
    for name in FILES:
        (index / name).write_text(f"old {name}")
    for name in (CATALOG_FILE, INDEX_FILE, MANIFEST_FILE):  # the new catalog was closed: no WAL
        (up / name).write_text(f"new {name}")
    return index, up


def contents(index: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in index.iterdir() if p.is_file()}


NEW = {CATALOG_FILE: f"new {CATALOG_FILE}", INDEX_FILE: f"new {INDEX_FILE}", MANIFEST_FILE: f"new {MANIFEST_FILE}"}
OLD = {name: f"old {name}" for name in FILES}


def test_without_the_commit_point_nothing_is_switched(tmp_path: Path) -> None:
    index, up = index_dirs(tmp_path)
    assert finish_switch(index) is False
    assert contents(index) == OLD and up.is_dir()  # an upgrade in progress: resumed, not switched


# Every state a kill can leave: some old files out (OLD_OUT not yet written), or all out and some new in.
SWITCH_STATES = [(out, False, 0) for out in range(5)] + [(4, True, moved_in) for moved_in in range(4)]


@pytest.mark.parametrize("moved_out, old_out_written, moved_in", SWITCH_STATES)
def test_a_switch_interrupted_anywhere_is_finished_whole(tmp_path: Path, moved_out: int, old_out_written: bool,
                                                        moved_in: int) -> None:
    """The state a kill leaves after any prefix of the renames: finish_switch ends with the new index whole
    and not one old file beside it (an old WAL beside a new catalog would be replayed into it)."""
    index, up = index_dirs(tmp_path)
    mark_complete(up)
    previous = index / PREVIOUS
    previous.mkdir()
    for name in FILES[:moved_out]:
        os.replace(index / name, previous / name)
    if old_out_written:
        (up / OLD_OUT).write_text("x")
    for name in (CATALOG_FILE, INDEX_FILE, MANIFEST_FILE)[:moved_in]:
        os.replace(up / name, index / name)
    assert finish_switch(index) is True
    assert contents(index) == NEW
    assert not up.exists() and not previous.exists()
    assert finish_switch(index) is False  # and again: nothing left to do


# -- the daemon --------------------------------------------------------------------------------------------
def search_paths(env: DaemonEnv) -> list[str]:
    proc = env.cli("search", "--color", "#808080", "-k", "50", "--json")
    assert proc.returncode == 0, proc.stderr
    return sorted(m["path"] for m in json.loads(proc.stdout))


def test_new_histogram_settings_reindex_in_the_background_and_switch(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    names = [f"p{i:03d}.jpg" for i in range(60)]
    write_photos(env.pictures, names)
    env.start()
    wait_until(lambda: env.idle_with(60), timeout=90)
    before = search_paths(env)
    assert env.stop() == 0
    assert stored_fingerprint(env.index_dir) == H.fingerprint(256)

    env.write_config(max_dimension=128, workers=1, batch_size=4)  # other settings: another fingerprint
    env.start(wait=False)
    wait_until(lambda: (env.status().get("upgrade") or {}).get("total") == 60, timeout=60)
    assert search_paths(env) == before  # the old index answers meanwhile, whole
    human = env.cli("status").stdout
    assert "upgrading:" in human and "of 60 photos indexed again" in human
    wait_until(lambda: env.status().get("upgrade", "") is None and env.idle_with(60), timeout=120)
    assert search_paths(env) == before
    assert any("upgrade complete" in a["message"] for a in env.status()["alerts"])
    assert env.stop() == 0
    assert stored_fingerprint(env.index_dir) == H.fingerprint(128)
    assert sorted(p.name for p in env.index_dir.iterdir() if p.is_dir()) == []  # no upgrade/previous left
    checks = validate(env.index_dir)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_kill_9_during_an_upgrade_and_its_switch_leaves_one_index_whole(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    write_photos(env.pictures, [f"p{i:03d}.jpg" for i in range(40)])
    env.start()
    wait_until(lambda: env.idle_with(40), timeout=90)
    assert env.stop() == 0
    env.write_config(max_dimension=128, workers=1, batch_size=2)
    kills = 0
    for delay_polls in (5, 15, 30, 60, 90):  # kill -9 at ever later moments, up to the switch itself
        proc = env.start(wait=False)
        seen = [0]

        def later(n: int = delay_polls) -> bool:
            seen[0] += 1
            return seen[0] >= n or proc.poll() is not None
        wait_until(later, timeout=60, interval=0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
        env.proc = None
        fp = stored_fingerprint(env.index_dir)  # whichever index is in place is whole and opens
        assert fp in (H.fingerprint(256), H.fingerprint(128))
        with Catalog.open(env.index_dir, fp, read_only=True) as cat:
            assert cat.counts()["live"] == 40
    assert kills >= 3
    env.start()
    wait_until(lambda: env.status().get("upgrade", "") is None and env.idle_with(40), timeout=120)
    assert len(search_paths(env)) == 40
    assert env.stop() == 0
    assert stored_fingerprint(env.index_dir) == H.fingerprint(128)
