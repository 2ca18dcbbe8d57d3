"""The long run (opt-in: CHROMATICA_SLOW=1): 200 kill -9s during churn, with a disk-full episode and a
damaged catalog in the middle. After every restart the catalog's live rows equal the files on disk and
the index's ids equal the live ids. Prints kills survived, files lost or duplicated, longest recovery.

    CHROMATICA_SLOW=1 CHROMATICA_SOAK_KILLS=200 .venv/bin/python -m pytest -q -s tests/test_soak.py
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.indexdir import open_live_index
from tests.conftest import mounted_tmpfs, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv, disk_state
from tests.test_hardening import _damage_catalog_header, fill_up

KILLS = int(os.environ.get("CHROMATICA_SOAK_KILLS", "200"))

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("CHROMATICA_SLOW") != "1", reason="opt-in soak: CHROMATICA_SLOW=1")]


@pytest.fixture
def soak_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk", "64m") as mnt:
        yield mnt


def churn(env: DaemonEnv, rng: random.Random, serial: list[int]) -> None:
    """One random change: add, edit in place, rename, delete, or move a whole folder."""
    files = sorted(env.pictures.rglob("*.png"))
    op = rng.choice(["add", "add", "add", "edit", "rename", "delete", "move_folder"]) if files else "add"
    serial[0] += 1
    if op == "add":
        color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        write_rgb(env.pictures / f"d{serial[0] % 4}" / f"f{serial[0]}.png", solid(color, (12, 12)))
    elif op == "edit":
        write_rgb(rng.choice(files), solid((rng.randrange(256), 7, rng.randrange(256)), (12, 12)))
    elif op == "rename":
        src = rng.choice(files)
        src.rename(src.with_name(f"r{serial[0]}.png"))
    elif op == "delete":
        rng.choice(files).unlink()
    else:
        folders = sorted(p for p in env.pictures.iterdir() if p.is_dir())
        if folders:
            src = rng.choice(folders)
            src.rename(env.pictures / f"moved{serial[0]}")


def compare(env: DaemonEnv) -> tuple[int, int, int]:
    """(files lost, files extra, duplicated ids) between the folder, the catalog and the index."""
    fp = H.fingerprint(256)
    catalog = Catalog.open(env.index_dir, fp, read_only=True)
    try:
        live = {p: f.content_hash for p, f in catalog.live_files(str(env.pictures)).items()}
        failed = {p for (_, p) in catalog.failed_files()}
        on_disk = {p: h for p, h in disk_state(env.pictures).items() if p not in failed}
        lost = sum(1 for p, h in on_disk.items() if live.get(p) != h)
        extra = sum(1 for p in live if p not in on_disk)
        index, _ = open_live_index(env.index_dir, catalog, fp)
        ids = index.ids().tolist()
        dup = len(ids) - len(set(ids))
        indexed = set(ids) - set(catalog.deleted_ids().tolist())
        assert indexed == set(catalog.live_ids().tolist()), "index ids != live catalog ids"
    finally:
        catalog.close()
    return lost, extra, dup


def test_soak_kill_9_during_churn_with_a_full_disk_and_a_damaged_catalog(daemon_env: DaemonEnv,
                                                                         soak_disk: Path) -> None:
    env = daemon_env
    env.index_dir = soak_disk / "index"
    env.write_config(settle_seconds=0.1, max_batch_delay=0.05, checkpoint_interval=0.5, batch_size=4)
    rng = random.Random(2026)
    serial = [0]
    for _ in range(20):
        churn(env, rng, serial)
    recoveries: list[float] = []
    totals = [0, 0, 0]
    filler: Path | None = None
    started_at = time.monotonic()
    for kill in range(KILLS):
        if kill == KILLS // 2:
            filler = fill_up(soak_disk)  # a disk-full episode: kills and restarts while full
        if kill == KILLS // 2 + 10 and filler is not None:
            filler.unlink()
            filler = None
        if kill == (3 * KILLS) // 4:
            _damage_catalog_header(env.index_dir)  # a damaged catalog: set aside, folder indexed again
        proc = env.start(wait=False)
        moment = rng.choice(["startup", "running", "churn"])
        if moment != "startup":
            wait_until(lambda: env.status().get("pid") == proc.pid or proc.poll() is not None, timeout=60,
                       interval=0.005)
        if moment == "churn":
            for _ in range(rng.randrange(1, 8)):
                churn(env, rng, serial)
            time.sleep(rng.random() * 0.5)  # the kill lands anywhere in the daemon's work on that churn
        assert proc.poll() is None, env.stderr()[-3000:]
        env.stop(signal.SIGKILL)
        # Restart: it must recover by itself to exactly what is on disk.
        restart = time.monotonic()
        env.start(wait=False)
        n = len(disk_state(env.pictures))
        if filler is None:
            wait_until(lambda n=n: env.idle_with(n), timeout=120, interval=0.02)
            recoveries.append(time.monotonic() - restart)
            assert env.stop() == 0
            lost, extra, dup = compare(env)
            totals = [totals[0] + lost, totals[1] + extra, totals[2] + dup]
            assert (lost, extra, dup) == (0, 0, 0), f"after kill {kill + 1}"
        else:  # the disk is full: it runs on (degraded as soon as a write fails), never exits or crashes
            wait_until(lambda: env.status().get("state") in ("idle", "degraded") or env.proc.poll() is not None,
                       timeout=60)
            assert env.proc is not None and env.proc.poll() is None, env.stderr()[-3000:]
            env.stop(signal.SIGKILL)
    print(f"\nsoak: {KILLS} kills survived in {time.monotonic() - started_at:.0f} s; files lost {totals[0]}, "
          f"extra {totals[1]}, duplicated ids {totals[2]}; recovery to idle after a restart: longest "
          f"{max(recoveries):.2f} s, median {sorted(recoveries)[len(recoveries) // 2]:.2f} s "
          f"({len(recoveries)} checked)")
    assert totals == [0, 0, 0]
