"""A file whose writer closed it (inotify IN_CLOSE_WRITE) is ready at once, without the settle time; the
settle rule stays for everything else, and a file closed half-written and then finished is indexed whole."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from chromatica_watch.daemon.batcher import Batcher
from chromatica_watch.daemon.events import EventKind, Facts, FsEvent, Ready, Settle, plan_events
from tests.conftest import photo, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv

R = "/photos"


def test_a_closed_file_is_ready_now_and_a_written_one_settles() -> None:
    plan = plan_events([FsEvent(EventKind.CHANGED, R, b"a.jpg"), FsEvent(EventKind.CLOSED, R, b"a.jpg"),
                        FsEvent(EventKind.CHANGED, R, b"b.jpg")], Facts())
    assert plan.actions == [Settle((R, b"a.jpg")), Ready((R, b"a.jpg")), Settle((R, b"b.jpg"))]


def test_the_batcher_takes_a_closed_file_at_once_and_drops_one_gone() -> None:
    disk = {(R, b"a.jpg"): (10, 1), (R, b"b.jpg"): (20, 2)}
    b = Batcher(settle_seconds=2.0, batch_size=10, max_batch_delay=1.0, stat=disk.get)
    b.note((R, b"a.jpg"), now=0.0)
    b.note((R, b"b.jpg"), now=0.0)
    b.ready_now((R, b"a.jpg"), now=0.01)
    b.poll(0.01)
    assert b.take_batch(0.01) == [(R, b"a.jpg")]  # not 2 s later, and no wait for b.jpg to join
    del disk[(R, b"b.jpg")]
    b.ready_now((R, b"b.jpg"), now=0.02)  # closed, then deleted before the event was handled
    assert len(b) == 0 and b.take_batch(5.0) == []


def indexed_paths(env: DaemonEnv) -> list[str]:
    proc = env.cli("search", "--color", "#808080", "-k", "20", "--json")
    return sorted(m["path"] for m in json.loads(proc.stdout)) if proc.returncode == 0 else []


def test_a_copied_photo_is_searchable_long_before_the_settle_time(daemon_env: DaemonEnv, tmp_path: Path) -> None:
    env = daemon_env
    env.write_config(settle_seconds=30.0)  # nothing could be indexed by settling within this test
    first = write_rgb(env.pictures / "first.png", solid((10, 200, 30)))
    os.utime(first, (time.time() - 3600, time.time() - 3600))  # old: the startup scan takes it at once
    env.start()
    wait_until(lambda: env.idle_with(1), timeout=60)  # the startup scan: not an event, settled by age
    source = write_rgb(tmp_path / "outside" / "coffee.jpg", photo("coffee"), IMWRITE_JPEG_QUALITY=90)
    copied = time.monotonic()
    shutil.copy(source, env.pictures / "coffee.jpg")  # cp: create, write, close
    wait_until(lambda: env.idle_with(2), timeout=10)
    assert time.monotonic() - copied < 10  # a third of the settle time: it was never settled
    assert str(env.pictures / "coffee.jpg") in indexed_paths(env)
    assert env.stop() == 0


def test_a_file_closed_half_written_then_finished_is_indexed_whole(daemon_env: DaemonEnv, tmp_path: Path) -> None:
    env = daemon_env
    env.write_config(settle_seconds=0.5)
    env.start()
    whole = write_rgb(tmp_path / "outside" / "rocket.png", photo("rocket")).read_bytes()
    target = env.pictures / "rocket.png"
    with open(target, "wb") as f:  # a writer that closes after the first half...
        f.write(whole[: len(whole) // 2])
    wait_until(lambda: env.status().get("counts", {}).get("failed", 0) >= 1 or env.idle_with(1), timeout=20)
    with open(target, "ab") as f:  # ...and opens it again for the rest
        f.write(whole[len(whole) // 2:])
    wait_until(lambda: env.idle_with(1) and env.status()["counts"]["failed"] == 0, timeout=30)
    failed = env.cli("failed", "--json")
    assert json.loads(failed.stdout) == []  # never left failed
    found = json.loads(env.cli("search", "--image", str(target), "-k", "1", "--json").stdout)
    assert found[0]["path"] == str(target) and np.isclose(found[0]["score"], 0.0, atol=1e-3)
    assert env.stop() == 0
