"""Roots with a real daemon: a folder moved and the config changed at its default place, a root retired
from the config (hidden, counted out, back when configured again, dropped after its grace period), an
offline root's photos still found and marked, and relocate through the running daemon."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tests.conftest import CLI, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv
from tests.test_relocate import scramble_keeping_stat, write_photos


def search_paths(env: DaemonEnv, k: int = 50) -> list[str]:
    proc = env.cli("search", "--color", "#808080", "--color", "#20a0ff", "-k", str(k), "--json")
    assert proc.returncode == 0, proc.stderr
    return [m["path"] for m in json.loads(proc.stdout)]


def roots(env: DaemonEnv) -> dict[str, dict[str, Any]]:
    proc = env.cli("roots", "--json")
    assert proc.returncode == 0, proc.stderr
    return {r["path"]: r for r in json.loads(proc.stdout)}


def test_pictures_moved_to_photos_and_the_default_config_changed(daemon_env: DaemonEnv, tmp_path: Path) -> None:
    """The issue's user: no duplicates in any search, status counts what is on disk, no image read again."""
    env_vars = {k: v for k, v in os.environ.items() if k != "CHROMATICA_WATCH_CONFIG"}
    env_vars["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    user_file = tmp_path / "xdg" / "chromatica-watch" / "config.toml"
    user_file.parent.mkdir(parents=True)
    pictures, photos = daemon_env.pictures, tmp_path / "Photos"
    names = [f"{'2025/' if i % 2 else ''}p{i}.jpg" for i in range(5)]
    write_photos(pictures, names)

    def run_daemon() -> subprocess.Popen[bytes]:
        log = open(tmp_path / "daemon.log", "ab")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen([CLI, "run"], stdout=log, stderr=log, env=env_vars)  # the user's file, found
        daemon_env.proc = proc
        return proc

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, env=env_vars)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    user_file.write_text(daemon_env.config.read_text())
    proc = run_daemon()
    wait_until(lambda: daemon_env.idle_with(5), timeout=60)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0

    scramble_keeping_stat([pictures / n for n in names])  # any read of these now would be a failure
    pictures.rename(photos)
    user_file.write_text(user_file.read_text().replace(f'"{pictures}"', f'"{photos}"'))
    proc = run_daemon()
    wait_until(lambda: daemon_env.idle_with(5), timeout=60)
    status = json.loads(cli("status", "--json").stdout)["status"]
    assert status["counts"]["indexed"] == 5 and status["counts"]["failed"] == 0  # nothing decoded
    assert status["counts"]["retired"] == 0
    assert any(f"holds the photos of {pictures}" in a["message"] for a in status["alerts"])
    found = json.loads(cli("search", "--color", "#808080", "-k", "50", "--json").stdout)
    assert sorted(m["path"] for m in found) == sorted(str(photos / n) for n in names)  # once each, new place
    listed = json.loads(cli("roots", "--json").stdout)
    assert [(r["path"], r["state"], r["photos"]) for r in listed] == [(str(photos), "watched", 5)]
    assert "holds the photos of" in (daemon_env.state_dir / "chromatica-watch.log").read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_a_root_left_out_of_the_config_is_retired_then_restored_then_dropped(daemon_env: DaemonEnv,
                                                                             tmp_path: Path) -> None:
    env, second = daemon_env, tmp_path / "Second"
    write_photos(env.pictures, ["a0.jpg", "a1.jpg"])
    write_photos(second, ["b0.jpg", "b1.jpg", "b2.jpg"], first_seed=10)
    env.write_config(roots=[str(env.pictures), str(second)])
    env.start()
    wait_until(lambda: env.idle_with(5), timeout=60)
    assert len(search_paths(env)) == 5

    env.write_config(roots=[str(env.pictures)])
    env.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    wait_until(lambda: env.idle_with(2) and env.status()["counts"].get("retired") == 3, timeout=30)
    assert sorted(search_paths(env)) == sorted(str(env.pictures / n) for n in ("a0.jpg", "a1.jpg"))
    listed = roots(env)
    assert listed[str(second)]["state"] == "retired" and listed[str(second)]["photos"] == 3
    assert listed[str(second)]["dropped_after"] - listed[str(second)]["retired_at"] == 30 * 86400
    human = env.cli("status").stdout
    assert f"root {second}: retired (not in the config): 3 photos hidden from searches" in human
    assert "is no longer in the config" in env.log()

    env.write_config(roots=[str(env.pictures), str(second)])  # a mistaken edit undone: nothing read again
    env.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    wait_until(lambda: env.idle_with(5) and env.status()["counts"].get("retired") == 0, timeout=30)
    assert len(search_paths(env)) == 5
    assert env.log().count("indexed 3 new image(s)") == 1  # only the first time

    env.write_config(roots=[str(env.pictures)], retired_root_grace_days=0)
    env.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    wait_until(lambda: str(second) not in roots(env) and env.idle_with(2), timeout=30)
    assert env.status()["counts"]["retired"] == 0 and env.status()["counts"]["tombstoned"] >= 3
    assert "its 3 photos are removed from the index" in env.log()
    assert env.stop() == 0


def test_an_offline_roots_photos_are_still_found_and_marked(daemon_env: DaemonEnv, tmp_path: Path) -> None:
    env, drive = daemon_env, tmp_path / "drive"
    write_photos(env.pictures, ["here.jpg"])
    write_photos(drive, ["away.jpg"], first_seed=5)
    env.write_config(roots=[str(env.pictures), str(drive)])
    env.start()
    wait_until(lambda: env.idle_with(2), timeout=60)
    drive.rename(tmp_path / "unplugged")
    wait_until(lambda: roots(env)[str(drive)]["state"] == "offline", timeout=30)
    found = json.loads(env.cli("search", "--color", "#808080", "-k", "5", "--json").stdout)
    assert {m["path"]: m["offline"] for m in found} == {str(env.pictures / "here.jpg"): False,
                                                       str(drive / "away.jpg"): True}
    assert f"(offline: {drive} is not reachable)" in env.cli("search", "--color", "#808080", "-k", "5").stdout
    assert env.stop() == 0


def _send(socket_path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(120)
        s.connect(str(socket_path))
        s.sendall(json.dumps(payload).encode() + b"\n")
        return dict(json.loads(s.makefile("rb").readline()))


def test_relocate_through_the_daemon_and_a_second_relocate_meanwhile_is_refused(daemon_env: DaemonEnv,
                                                                              tmp_path: Path) -> None:
    env, old, moved = daemon_env, tmp_path / "old", tmp_path / "moved"
    write_photos(old, [f"o{i}.jpg" for i in range(4)], first_seed=40)
    env.write_config(roots=[str(old)])
    env.start()
    wait_until(lambda: env.idle_with(4), timeout=60)
    assert env.stop() == 0
    shutil.copytree(old, moved)  # copied with its times; the old folder stays (a backup, say)
    write_photos(env.pictures, [f"new{i:04d}.jpg" for i in range(1200)], first_seed=1000)  # work to wait behind
    env.write_config(roots=[str(env.pictures)])
    env.start(wait=False)
    socket_path = env.runtime_dir / "chromatica-watch.sock"
    wait_until(lambda: socket_path.exists() and "is no longer in the config" in env.log(), timeout=60)
    first: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: first.update(_send(socket_path, {
        "op": "relocate", "old": str(old), "new": str(moved)})))
    runner.start()
    try:
        wait_until(lambda: f"relocate of {old} to {moved} requested" in env.log(), timeout=30)
        second = env.cli("relocate", str(old), str(moved))
        assert second.returncode == 1 and "another relocate is running" in second.stderr
    finally:
        runner.join(timeout=120)
    assert first.get("ok") and first["relocated"]["moved"] == 4 and first["relocated"]["configured"] is False, first
    wait_until(lambda: env.idle_with(1200), timeout=120)
    listed = roots(env)
    assert [(p, r["state"], r["photos"]) for p, r in listed.items()] == [(str(env.pictures), "watched", 1200),
                                                                         (str(moved), "retired", 4)]
    assert "no image read" in env.log()
    assert env.stop() == 0


def test_nested_roots_are_refused_at_start_and_at_reload(daemon_env: DaemonEnv, tmp_path: Path) -> None:
    env, inner = daemon_env, daemon_env.pictures / "2024"
    write_photos(env.pictures, ["a0.jpg", "a1.jpg"])
    write_photos(inner, ["b0.jpg", "b1.jpg"], first_seed=10)
    (tmp_path / "link").symlink_to(inner)
    for nested in ([str(env.pictures), str(inner)], [str(inner), str(env.pictures)],
                   [str(env.pictures), str(tmp_path / "link")]):
        env.write_config(roots=nested)
        started = subprocess.run([CLI, "run", "--config", str(env.config)], capture_output=True, text=True,
                                 timeout=60)
        assert started.returncode == 2 and "Traceback" not in started.stderr
        assert "is inside" in started.stderr and str(env.pictures) in started.stderr, started.stderr
        assert len(started.stderr.strip().splitlines()) == 1, started.stderr

    env.write_config(roots=[str(env.pictures)])
    env.start()
    wait_until(lambda: env.idle_with(4), timeout=60)
    env.write_config(roots=[str(env.pictures), str(tmp_path / "link")])  # added by a reload
    env.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    wait_until(lambda: "config reload refused" in env.log(), timeout=30)
    assert "is inside" in env.log() and "Traceback" not in env.log()
    env.write_config(roots=[str(env.pictures)])  # for the CLI's own reading of it
    wait_until(lambda: env.idle_with(4), timeout=30)
    found = search_paths(env)
    assert len(found) == 4 and len(set(found)) == 4  # each photo once
    assert list(roots(env)) == [str(env.pictures)]
    assert env.stop() == 0


def test_a_root_removed_by_a_reload_mid_ingest_is_neither_indexed_nor_found(daemon_env: DaemonEnv,
                                                                            tmp_path: Path) -> None:
    """The reload is applied between batches: what the removed root still had queued is dropped, and
    what it had committed is hidden at once."""
    env, second = daemon_env, tmp_path / "Second"
    write_photos(env.pictures, ["a0.jpg", "a1.jpg"])
    rng = np.random.default_rng(4)
    base = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (1600, 1200))
    for i in range(160):  # large enough that reading them all takes seconds with one worker
        write_rgb(second / f"b{i:03d}.jpg", np.roll(base, i * 7, axis=1), IMWRITE_JPEG_QUALITY=95)
    env.write_config(roots=[str(env.pictures), str(second)], batch_size=4, workers=1)
    env.start(wait=False)
    wait_until(lambda: env.indexed() >= 8, timeout=60)
    env.write_config(roots=[str(env.pictures)], batch_size=4, workers=1)
    env.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    wait_until(lambda: "config reloaded" in env.log(), timeout=30)
    wait_until(lambda: env.idle_with(2), timeout=60)
    time.sleep(1.0)  # long enough for a leak to show: the ingest went on after the reload
    assert sorted(search_paths(env)) == sorted(str(env.pictures / n) for n in ("a0.jpg", "a1.jpg"))
    assert env.idle_with(2) and env.status()["counts"]["retired"] < 150
    listed = roots(env)
    assert listed[str(second)]["state"] == "retired" and listed[str(second)]["photos"] < 150
    assert env.stop() == 0
