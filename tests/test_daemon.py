"""The daemon end to end, as a real process: watch, settle, index, move, delete, recover."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CLI, PHOTO_NAMES, photo, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv, assert_index_matches_disk


def test_end_to_end_drop_photos_and_status_shows_them(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    env.start()
    for name in PHOTO_NAMES[:4]:
        write_rgb(env.pictures / "new" / f"{name}.jpg", photo(name), IMWRITE_JPEG_QUALITY=90)
    wait_until(lambda: env.idle_with(4), timeout=60)
    proc = env.cli("status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "indexed 4" in proc.stdout
    as_json = json.loads(env.cli("status", "--json").stdout)
    assert as_json["status"]["counts"]["indexed"] == 4
    assert as_json["status"]["watcher_mode"][str(env.pictures)] == "native"
    assert as_json["status"]["watch_unchecked"] == []  # which folders got a watch is checked

    # Modified in place: new id, old one tombstoned. Renamed: same id. Deleted: gone at once.
    write_rgb(env.pictures / "new" / "astronaut.jpg", solid((0, 255, 0)))
    (env.pictures / "new" / "coffee.jpg").rename(env.pictures / "renamed coffee.jpg")
    (env.pictures / "new" / "chelsea.jpg").unlink()
    wait_until(lambda: env.idle_with(3), timeout=60)
    wait_until(lambda: env.status()["counts"]["tombstoned"] == 2, timeout=30)
    started = time.monotonic()
    assert env.stop() == 0
    assert time.monotonic() - started < 10
    assert env.status()["state"] == "stopped"
    assert env.cli("status").returncode == 3
    assert_index_matches_disk(env)


def test_slow_copy_is_indexed_once_complete_and_never_half(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    env.write_config(settle_seconds=0.6)
    env.start()
    data = write_rgb(env.pictures / "tmp.jpg", photo("rocket"), IMWRITE_JPEG_QUALITY=90).read_bytes()
    (env.pictures / "tmp.jpg").unlink()
    target = env.pictures / "slow.jpg"
    with target.open("wb") as f:
        for i in range(0, len(data), len(data) // 8):
            f.write(data[i:i + len(data) // 8])
            f.flush()
            time.sleep(0.25)  # the writer's pace (a slow copy), not a wait for the daemon
            assert env.status()["counts"]["failed"] == 0
            assert env.status()["counts"]["indexed"] == 0
    wait_until(lambda: env.idle_with(1), timeout=30)
    assert env.status()["counts"]["failed"] == 0
    assert env.stop() == 0
    assert_index_matches_disk(env)


def test_bad_files_are_recorded_and_the_daemon_keeps_running(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    env.start()
    (env.pictures / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (env.pictures / "empty.png").write_bytes(b"")
    wait_until(lambda: env.status()["counts"]["failed"] == 2, timeout=30)
    write_rgb(env.pictures / "fine.png", solid((10, 20, 200)))
    wait_until(lambda: env.idle_with(1), timeout=30)
    listing = env.cli("failed")
    assert listing.returncode == 0
    assert "broken.jpg" in listing.stdout and "empty.png" in listing.stdout and "empty file" in listing.stdout
    reasons = {f["reason"] for f in env.status()["recent_failures"]}
    assert any("empty file" in r for r in reasons)
    # Fix the broken file: it is retried because it changed.
    write_rgb(env.pictures / "broken.jpg", photo("coffee"))
    wait_until(lambda: env.idle_with(2) and env.status()["counts"]["failed"] == 1, timeout=30)
    retry = env.cli("retry-failed")
    assert retry.returncode == 0 and "re-queued 1" in retry.stdout
    wait_until(lambda: env.status()["counts"]["failed"] == 1, timeout=30)  # still empty: failed again
    assert env.stop() == 0


def test_burst_of_2000_files_none_lost_and_short_lived_never_indexed(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    env.write_config(workers=2, batch_size=128)
    env.start()
    rng = np.random.default_rng(0)
    for i in range(2000):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        write_rgb(env.pictures / f"burst{i // 200}" / f"{i:04d}.png", solid(color, (8, 8)))  # type: ignore[arg-type]
    ghost = env.pictures / "ghost.jpg"
    write_rgb(ghost, photo("chelsea"))
    ghost.unlink()  # created and deleted before it settled
    wait_until(lambda: env.idle_with(2000), timeout=180)
    assert env.stop() == 0
    assert_index_matches_disk(env)


def test_rename_storm_and_folder_moves(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    env.start()
    for i, name in enumerate(PHOTO_NAMES[:3]):
        write_rgb(env.pictures / "a" / f"{i}.jpg", photo(name))
    wait_until(lambda: env.idle_with(3), timeout=30)
    f = env.pictures / "a" / "0.jpg"
    for i in range(60):
        nxt = env.pictures / "a" / f"storm{i}.jpg"
        f.rename(nxt)
        f = nxt
    (env.pictures / "a").rename(env.pictures / "b")  # a whole folder moved
    wait_until(lambda: env.idle_with(3), timeout=30)
    outside = env.pictures.parent / "outside"
    (env.pictures / "b").rename(outside)  # moved out of the root: like a delete
    wait_until(lambda: env.idle_with(0), timeout=30)
    outside.rename(env.pictures / "c")  # and back in
    wait_until(lambda: env.idle_with(3), timeout=30)
    assert env.stop() == 0
    assert_index_matches_disk(env)


def test_root_that_disappears_is_offline_not_deleted(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    env.start()
    write_rgb(env.pictures / "x.png", solid((200, 0, 0)))
    wait_until(lambda: env.idle_with(1), timeout=30)
    away = env.pictures.parent / "unmounted"
    env.pictures.rename(away)
    wait_until(lambda: env.status()["roots"][0]["online"] is False, timeout=30)
    assert env.status()["counts"]["indexed"] == 1  # nothing tombstoned
    write_rgb(away / "y.png", solid((0, 200, 0)))
    away.rename(env.pictures)
    wait_until(lambda: env.status()["roots"][0]["online"] and env.idle_with(2), timeout=30)
    assert env.stop() == 0
    assert_index_matches_disk(env)


def test_index_dir_not_writable_is_a_clear_startup_error(daemon_env: DaemonEnv, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    daemon_env.write_config(index_dir=str(blocker / "index"))
    proc = subprocess.run([CLI, "run", "--config", str(daemon_env.config)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert "index dir" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_config_is_refused_with_the_key_named(daemon_env: DaemonEnv) -> None:
    daemon_env.config.write_text(daemon_env.config.read_text() + "setle_seconds = 3\n")
    proc = subprocess.run([CLI, "run", "--config", str(daemon_env.config)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "setle_seconds" in proc.stderr


def _watch_limit_prefix(limit: int) -> tuple[str, ...]:
    """Run a command in its own user namespace, whose inotify watch limit we may lower.

    The limit is per user namespace (and applies on top of every ancestor's), so this reaches the
    real ENOSPC from inotify_add_watch without touching the machine's own limit.
    """
    return ("unshare", "--user", "--map-root-user", "sh", "-c",
            f'echo {limit} > /proc/sys/user/max_inotify_watches && exec "$@"', "sh")


def _can_limit_watches() -> bool:
    probe = subprocess.run([*_watch_limit_prefix(5), "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_limit_watches(), reason="cannot create a user namespace to lower the limit")
def test_inotify_limit_falls_back_to_scans(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    for i in range(40):
        (env.pictures / f"d{i}").mkdir()
    env.start(prefix=_watch_limit_prefix(10))
    assert env.status()["watcher_mode"][str(env.pictures)] == "scan"
    log = env.stderr()
    assert "fs.inotify.max_user_watches" in log
    assert log.count("inotify watch limit") == 1  # one clear error, not one per folder
    write_rgb(env.pictures / "d3" / "late.png", solid((1, 200, 3)))
    wait_until(lambda: env.idle_with(1), timeout=60)  # found by a periodic scan
    assert env.status()["state"] == "idle"
    assert env.stop() == 0


def test_sighup_reloads_the_config(daemon_env: DaemonEnv, tmp_path: Path) -> None:
    env = daemon_env
    env.start()
    second = tmp_path / "More"
    second.mkdir()
    write_rgb(second / "m.png", solid((9, 9, 200)))
    env.write_config(roots=[str(env.pictures), str(second)])
    assert env.proc is not None
    env.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: env.idle_with(1) and len(env.status()["roots"]) == 2, timeout=30)
    assert env.stop() == 0


def test_workers_start_when_files_are_queued_and_stop_when_idle_status_at_once(daemon_env: DaemonEnv) -> None:
    """In process, with a fake clock: an idle daemon holds no worker processes (idle RSS); they are
    started as soon as a file is queued, so their start-up overlaps the settle time."""
    import multiprocessing

    from chromatica_watch.core import config as config_mod
    from chromatica_watch.daemon.compose import POOL_IDLE_S, compose

    env = daemon_env
    now = [1000.0]
    cfg = config_mod.load(env.config, env={})
    daemon = compose(cfg, env.config, clock=lambda: now[0])
    daemon.open()
    try:
        assert daemon.ingester.pool is None and not multiprocessing.active_children()
        write_rgb(env.pictures / "a.jpg", photo("coffee"))
        daemon.batcher.note((str(env.pictures), b"a.jpg"), now[0])
        daemon.indexer.step()
        assert daemon.ingester.pool is not None
        assert len(multiprocessing.active_children()) >= cfg.worker_count  # started before the file settled
        now[0] += cfg.settle_seconds + cfg.max_batch_delay
        daemon.indexer.step()
        assert daemon.store.catalog.counts()["live"] == 1
        # status.json already shows it: written when the batch committed, not on the next loop turn
        status = json.loads(cfg.status_path.read_text())
        assert status["state"] == "idle" and status["counts"]["indexed"] == 1 and status["counts"]["queued"] == 0
        now[0] += POOL_IDLE_S - 1
        daemon.indexer.step()
        assert daemon.ingester.pool is not None  # still recent work
        now[0] += 2
        daemon.indexer.step()
        assert daemon.ingester.pool is None
        assert not [p for p in multiprocessing.active_children() if p.name.startswith("SpawnProcess")]
    finally:
        daemon.close()


def test_restarted_worker_pool_keeps_the_startup_histogram_settings(daemon_env: DaemonEnv) -> None:
    """Workers are stopped when idle and started again later: after a config reload that changed
    max_dimension (which needs a restart), they must still make histograms matching the fingerprint."""
    import dataclasses

    from chromatica_watch.core import config as config_mod
    from chromatica_watch.daemon.compose import compose

    cfg = config_mod.load(daemon_env.config, env={})
    daemon = compose(cfg, daemon_env.config)
    daemon.open()
    try:
        daemon.apply_config(dataclasses.replace(cfg, max_dimension=cfg.max_dimension * 2,
                                                workers=cfg.worker_count + 1))
        pool = daemon.workers.get()
        try:
            assert (pool.max_dimension, pool.workers) == (cfg.max_dimension, cfg.worker_count)
        finally:
            pool.close()
    finally:
        daemon.close()


def test_many_ready_files_are_streamed_in_several_batches_at_once(daemon_env: DaemonEnv) -> None:
    """In process: with more ready files than batch_size, one loop turn streams several batches through
    the workers (committing each), so the workers do not wait for every commit."""
    from chromatica_watch.core import config as config_mod
    from chromatica_watch.daemon.compose import compose
    from chromatica_watch.daemon.ingester import STREAM_BATCHES

    env = daemon_env
    env.write_config(batch_size=8)
    cfg = config_mod.load(env.config, env={})
    n = 3 * cfg.batch_size + 2
    assert n <= STREAM_BATCHES * cfg.batch_size
    now = [1000.0]
    daemon = compose(cfg, env.config, clock=lambda: now[0])
    daemon.open()
    commits: list[int] = []
    after_commit = daemon.ingester.after_commit
    daemon.ingester.after_commit = lambda outcome: (  # type: ignore[method-assign]
        commits.append(outcome.added), after_commit(outcome))
    try:
        for i in range(n):
            write_rgb(env.pictures / f"{i:03d}.png", solid((i, 255 - i, (7 * i) % 256)))
            daemon.batcher.note((str(env.pictures), f"{i:03d}.png".encode()), now[0])
        now[0] += cfg.settle_seconds + cfg.max_batch_delay
        daemon.indexer.step()
        assert daemon.store.catalog.counts()["live"] == n  # all in one loop turn
        # one transaction per batch_size, in order (then the same turn's rescan re-hashes the racy new files)
        assert commits[:4] == [8, 8, 8, 2] and sum(commits) == n
    finally:
        daemon.close()


def test_a_stop_with_nothing_changed_does_not_rewrite_the_index(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    write_rgb(env.pictures / "a.jpg", photo("coffee"), IMWRITE_JPEG_QUALITY=90)
    env.start()
    wait_until(lambda: env.idle_with(1), timeout=60)
    assert env.stop() == 0
    index_file = env.index_dir / "chromatica_index.faiss"
    written = index_file.stat().st_mtime_ns
    env.start()
    assert env.stop() == 0
    assert index_file.stat().st_mtime_ns == written
    assert_index_matches_disk(env)


def test_an_idle_loop_reads_the_counts_and_writes_status_json_once_per_status_interval(
        daemon_env: DaemonEnv) -> None:
    """In process, with a fake clock: the loop turns every 0.2 s; the catalog's counts (a query) and
    status.json (a file write) must not follow it, only status_interval."""
    from chromatica_watch.core import config as config_mod
    from chromatica_watch.daemon.compose import compose

    env = daemon_env
    env.write_config(status_interval=5.0)
    now = [1000.0]
    cfg = config_mod.load(env.config, env={})
    daemon = compose(cfg, env.config, clock=lambda: now[0])
    daemon.open()
    try:
        daemon.indexer.step()  # the first turn's periodic work (the read-back) and its counts
        written = cfg.status_path.stat().st_mtime_ns
        for _ in range(5):
            now[0] += 0.2
            daemon.indexer.step()
        assert cfg.status_path.stat().st_mtime_ns == written
        now[0] += cfg.status_interval
        daemon.indexer.step()
        assert cfg.status_path.stat().st_mtime_ns != written
    finally:
        daemon.close()


def test_a_stopping_daemon_fails_queued_commands_at_once_instead_of_leaving_them_waiting(daemon_env: DaemonEnv) -> None:
    """A socket thread waits for a command's result (a compaction: up to an hour); the server's stop waits
    for its threads. So when the daemon stops, a command still queued, or asked for afterwards, fails at
    once with a line saying why."""
    from chromatica_watch.core import config as config_mod
    from chromatica_watch.core.errors import ChromaticaError
    from chromatica_watch.daemon.compose import compose

    daemon = compose(config_mod.load(daemon_env.config, env={}), daemon_env.config)
    queued = daemon.read_side.submit_compact()
    assert not queued.done()  # the indexer loop is not running: nothing takes it
    daemon.commands.refuse()
    with pytest.raises(ChromaticaError, match="stopped before it could do this"):
        queued.result(timeout=1)
    with pytest.raises(ChromaticaError, match="the daemon is stopping"):
        daemon.read_side.submit_retry_failed().result(timeout=1)
