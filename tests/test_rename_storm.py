"""Rename storms: a folder renamed back and forth faster than the daemon handles the events (a photo manager
reorganising, a sync tool). Whatever order the events are seen in, once the storm is over the index equals
the disk, every photo keeps its row (a move is never a delete and a new read), and no failure is left for
a folder that exists. Randomized, many storms a run: 20 in CI, 500 with CHROMATICA_SLOW=1."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from chromatica_watch.access.remote import DaemonIndex
from chromatica_watch.search.ask import parse_ask
from tests.conftest import wait_until, write_rgb
from tests.daemon_harness import DaemonEnv, disk_state
from tests.test_relocate import blocks

PHOTOS = 300
STORMS = int(os.environ.get("CHROMATICA_STORMS", 500 if os.environ.get("CHROMATICA_SLOW") else 20))
SETTLED_WITHIN_S = 30.0


def indexed_state(env: DaemonEnv) -> tuple[dict[str, int], int]:
    """(path -> id of every photo a search can return, failure records), asked of the running daemon."""
    daemon = DaemonIndex(env.runtime_dir / "chromatica-watch.sock")
    found, _ = daemon.find(parse_ask(folders=[str(env.pictures)]), PHOTOS + 100)  # a filter alone: no ranking
    return {m.path: m.id for m in found}, len(daemon.failures())


def settled(env: DaemonEnv, ids: set[int], deadline: float) -> float:
    """Seconds until what a search returns equals the disk, with the same ids and no failure record; fails
    past the deadline, saying what differs."""
    started = time.monotonic()
    while True:
        on_disk = {str(env.pictures / os.fsdecode(p)) for p in disk_state(env.pictures)}
        rows, failed = indexed_state(env)
        if set(rows) == on_disk and set(rows.values()) == ids and failed == 0 and env.idle_with(PHOTOS) \
                and env.status()["counts"]["failed"] == 0:
            return time.monotonic() - started
        if time.monotonic() - started > deadline:
            pytest.fail(f"not settled in {deadline} s: {len(on_disk - set(rows))} on disk not found, "
                        f"{len(set(rows) - on_disk)} found not on disk, {len(ids - set(rows.values()))} rows lost, "
                        f"{len(set(rows.values()) - ids)} new rows, {failed} failure records; "
                        f"status {env.status().get('counts')}")
        time.sleep(0.1)


def storm(root: Path, rng: random.Random) -> None:
    """The album renamed among a few names (and into a sub-folder and back) 10-40 times, with random gaps."""
    names = ["album", "album2", "Album 3", "nested/album"]
    (root / "nested").mkdir(exist_ok=True)
    where = next(n for n in names if (root / n).is_dir())
    for _ in range(rng.randint(10, 40)):
        to = rng.choice([n for n in names if n != where])
        os.rename(root / where, root / to)
        where = to
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0, 0.03))


def test_rename_storms_end_with_the_index_equal_to_the_disk(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    for i in range(PHOTOS):
        path = write_rgb(env.pictures / "album" / f"p{i:03d}.jpg", blocks(i), IMWRITE_JPEG_QUALITY=92)
        hour_ago = path.stat().st_mtime_ns - 3600 * 10**9
        os.utime(path, ns=(hour_ago, hour_ago))
    env.write_config(settle_seconds=0.3, workers=1)
    env.start()
    wait_until(lambda: env.idle_with(PHOTOS), timeout=120)
    ids = set(indexed_state(env)[0].values())
    assert len(ids) == PHOTOS
    rng = random.Random(int(os.environ.get("CHROMATICA_STORM_SEED", "24")))
    longest = 0.0
    for _ in range(STORMS):
        storm(env.pictures, rng)
        took = settled(env, ids, SETTLED_WITHIN_S)
        print(f"{took:.1f}", end=" ", flush=True)
        longest = max(longest, took)
    print(f"\n{STORMS} storms, 0 photos lost, longest time to a correct end state {longest:.2f} s")
    log = env.log()
    if os.environ.get("CHROMATICA_STORM_LOG"):
        print(log[-20000:])
    assert "Traceback" not in log and "cannot stat" not in log and "cannot list folder" not in log
    assert env.stop() == 0
