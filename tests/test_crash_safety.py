"""kill -9 the daemon at random moments while the folder changes; the index must always recover."""

from __future__ import annotations

import os
import random
import signal

import numpy as np

from chromatica_watch.storage.index import INDEX_FILE
from tests.conftest import solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv, assert_index_matches_disk, disk_state

KILLS = int(os.environ.get("CHROMATICA_CRASH_KILLS", "20"))


def mutate(env: DaemonEnv, rng: random.Random, serial: list[int]) -> None:
    files = sorted(p for p in env.pictures.rglob("*.png"))
    op = rng.choice(["add", "add", "add", "modify", "rename", "delete"]) if files else "add"
    if op == "add":
        serial[0] += 1
        color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        write_rgb(env.pictures / f"d{serial[0] % 3}" / f"f{serial[0]}.png", solid(color, (12, 12)))
    elif op == "modify":
        write_rgb(rng.choice(files), solid((rng.randrange(256), 0, rng.randrange(256)), (12, 12)))
    elif op == "rename":
        src = rng.choice(files)
        serial[0] += 1
        src.rename(src.with_name(f"r{serial[0]}.png"))
    else:
        rng.choice(files).unlink()


def test_kill_9_at_random_moments_recovers_to_what_is_on_disk(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    env.write_config(settle_seconds=0.1, max_batch_delay=0.05, checkpoint_interval=0.5, batch_size=4)
    rng = random.Random(1234)
    np.random.seed(0)
    serial = [0]
    for _ in range(12):
        mutate(env, rng, serial)
    for kill in range(KILLS):
        if kill % 7 == 3 and (env.index_dir / INDEX_FILE).exists():
            # A corrupted checkpoint must lead to a rebuild, never a crash or wrong answers.
            blob = (env.index_dir / INDEX_FILE).read_bytes()
            (env.index_dir / INDEX_FILE).write_bytes(blob[: len(blob) // 2])
        proc = env.start(wait=False)
        for _ in range(rng.randrange(0, 8)):
            mutate(env, rng, serial)
        # Kill at a random moment: during startup and recovery, mid-reconcile, or while indexing events.
        moment = rng.choice(["startup", "running", "events"])
        if moment != "startup":
            wait_until(lambda: env.status().get("pid") == proc.pid or proc.poll() is not None, timeout=60,
                       interval=0.005)
        if moment == "events":
            wait_until(lambda: env.state() in ("idle", "indexing") or proc.poll() is not None, timeout=60,
                       interval=0.005)
            for _ in range(rng.randrange(1, 10)):
                mutate(env, rng, serial)
            wait_until(lambda: env.status().get("counts", {}).get("queued", 0) > 0 or env.state() == "indexing"
                       or rng.random() < 0.02 or proc.poll() is not None, timeout=30, interval=0.005)
        assert proc.poll() is None, env.stderr()[-3000:]
        env.stop(signal.SIGKILL)
        if kill % 5 == 4:
            env.start()
            n = len(disk_state(env.pictures))
            wait_until(lambda n=n: env.idle_with(n), timeout=60)
            assert env.stop() == 0
            assert_index_matches_disk(env)
    env.start()
    n = len(disk_state(env.pictures))
    wait_until(lambda: env.idle_with(n), timeout=60)
    assert env.stop() == 0
    assert_index_matches_disk(env)
