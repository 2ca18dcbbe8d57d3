"""Holding on a real machine (issue 8): special files, stops, status that tells the truth, symlinks,
roots that are not folders, failure records that follow the folder, and a private, bounded socket.
Real daemon processes, real signals, real files."""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CLI, PHOTO_NAMES, mounted_tmpfs, photo, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv, assert_index_matches_disk


def test_a_fifo_named_like_a_photo_is_recorded_and_never_stalls_indexing(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    os.mkfifo(env.pictures / "at-start.jpg")  # found by the startup scan
    env.start()
    os.mkfifo(env.pictures / "live.png")  # found by an event, handed to a worker
    write_rgb(env.pictures / "after.jpg", photo("coffee"))
    wait_until(lambda: env.idle_with(1) and env.status()["counts"]["failed"] == 2, timeout=60)
    failed = json.loads(env.cli("failed", "--json").stdout)
    reasons = {Path(f["path"]).name: f["reason"] for f in failed}
    assert reasons == {"at-start.jpg": "not a regular file: a named pipe (FIFO)",
                       "live.png": "not a regular file: a named pipe (FIFO)"}
    query = subprocess.run([CLI, "search", "--image", str(env.pictures / "live.png"), "--config", str(env.config)],
                           capture_output=True, text=True, timeout=30)
    assert query.returncode == 2 and "named pipe" in query.stderr and "Traceback" not in query.stderr
    started = time.monotonic()
    assert env.stop() == 0
    assert time.monotonic() - started < 10
    assert_index_matches_disk(env)


def test_sigterm_during_a_large_ingest_stops_within_seconds_and_loses_nothing(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    env.write_config(workers=2, batch_size=16)
    env.start()
    for i in range(400):
        write_rgb(env.pictures / f"p{i:03d}.jpg", photo(PHOTO_NAMES[i % len(PHOTO_NAMES)]))
    wait_until(lambda: env.status()["state"] == "indexing" and env.indexed() > 0, timeout=60, interval=0.01)
    started = time.monotonic()
    assert env.stop(timeout=30) == 0
    assert time.monotonic() - started < 5
    assert env.status()["state"] == "stopped"
    env.start()
    wait_until(lambda: env.idle_with(400), timeout=120)
    assert env.stop() == 0
    assert_index_matches_disk(env)


def test_a_second_run_is_refused_before_it_touches_any_file(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    first = env.start()
    status_file = env.state_dir / "status.json"
    before = status_file.read_bytes()
    second = subprocess.run([CLI, "run", "--config", str(env.config)], capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "already running" in second.stderr and "Traceback" not in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert json.loads(status_file.read_bytes())["pid"] == first.pid
    assert status_file.read_bytes() == before or json.loads(status_file.read_bytes())["state"] == "idle"
    code, answer = env.verdict()
    assert code == 0 and answer["status"]["pid"] == first.pid
    assert env.stop() == 0


def test_status_tells_the_truth_after_kill_9_freeze_reused_pid_and_damaged_file(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    proc = env.start()
    assert env.verdict()[0] == 0
    # Frozen (every thread stopped): the socket does not answer, so it is not healthy.
    proc.send_signal(signal.SIGSTOP)
    try:
        code, answer = env.verdict()
        assert code == 1 and "not responding" in answer["verdict"]
    finally:
        proc.send_signal(signal.SIGCONT)
    # A damaged status.json while the daemon runs: the daemon itself is asked.
    (env.state_dir / "status.json").write_text("{ not json")
    code, answer = env.verdict()
    assert code == 0 and answer["live"] is True
    # kill -9: not "stopped cleanly"
    env.stop(signal.SIGKILL)
    code, answer = env.verdict()
    assert code == 3 and "ended unexpectedly" in answer["verdict"], answer
    # A status file naming a live pid (reused by another process) does not make a dead daemon alive.
    saved = json.loads((env.state_dir / "status.json").read_text())
    saved["pid"] = os.getpid()
    (env.state_dir / "status.json").write_text(json.dumps(saved))
    code, answer = env.verdict()
    assert code == 3
    (env.state_dir / "status.json").write_text("{ not json")
    code, answer = env.verdict()
    assert code == 3 and "damaged" in answer["verdict"]
    # A clean stop says so.
    env.start()
    assert env.stop() == 0
    code, answer = env.verdict()
    assert code == 3 and "stopped cleanly" in answer["verdict"]


def test_status_piped_into_head_ends_quietly(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    env.start()
    for name in PHOTO_NAMES:
        write_rgb(env.pictures / f"{name}.jpg", photo(name))
        (env.pictures / f"{name}-broken.jpg").write_bytes(b"")
    wait_until(lambda: env.idle_with(len(PHOTO_NAMES)), timeout=60)
    for args in (["status"], ["failed"], ["search", "--color", "#ff8800", "-k", "6"]):
        proc = subprocess.run(f"'{CLI}' {' '.join(repr(a) for a in args)} --config '{env.config}' | head -1",
                              shell=True, capture_output=True, text=True, timeout=60)
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, (args, proc.stderr)
        assert "Exception" not in proc.stderr, (args, proc.stderr)
        assert len(proc.stdout.splitlines()) == 1
    assert env.stop() == 0


def test_a_symlink_back_to_the_parent_never_doubles_the_library(daemon_env: DaemonEnv, tmp_path: Path) -> None:
    env = daemon_env
    env.start()
    for i, name in enumerate(PHOTO_NAMES[:3]):
        write_rgb(env.pictures / f"top{i}.jpg", photo(name))
    wait_until(lambda: env.idle_with(3), timeout=60)
    album = tmp_path / "album"
    for i, name in enumerate(PHOTO_NAMES[3:]):
        write_rgb(album / f"a{i}.jpg", photo(name))
    (album / "parent").symlink_to("..")  # inside the root, this links back to the root itself
    (album / "alias.jpg").symlink_to("a0.jpg")  # a second name for a photo of the album
    album.rename(env.pictures / "album")  # moved in live
    n = 3 + len(PHOTO_NAMES[3:])
    wait_until(lambda: env.idle_with(n) and env.status()["counts"]["failed"] == 2, timeout=60)
    failed = {Path(f["path"]).name: f["reason"] for f in json.loads(env.cli("failed", "--json").stdout)}
    assert set(failed) == {"parent", "alias.jpg"}
    assert all("symbolic link not followed" in r for r in failed.values()), failed
    # The full scan at the next start agrees with what the live events did.
    assert env.stop() == 0
    env.start()
    wait_until(lambda: env.idle_with(n), timeout=60)
    assert env.status()["counts"]["failed"] == 2
    assert env.stop() == 0
    assert_index_matches_disk(env)


def test_failure_records_of_deleted_files_go_with_them(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    (env.pictures / "gone-while-stopped.jpg").write_bytes(b"not a jpeg at all")
    env.start()
    (env.pictures / "sub").mkdir()
    (env.pictures / "sub" / "gone-live.png").write_bytes(b"")
    (env.pictures / "moved-away.png").write_bytes(b"garbage")
    wait_until(lambda: env.status()["counts"]["failed"] == 3, timeout=30)
    (env.pictures / "sub" / "gone-live.png").unlink()
    (env.pictures / "moved-away.png").rename(env.pictures.parent / "moved-away.png")
    wait_until(lambda: env.status()["counts"]["failed"] == 1, timeout=30)
    assert env.stop() == 0
    (env.pictures / "gone-while-stopped.jpg").unlink()
    env.start()
    wait_until(lambda: env.idle_with(0) and env.status()["counts"]["failed"] == 0, timeout=30)
    assert json.loads(env.cli("failed", "--json").stdout) == []
    assert env.stop() == 0


def test_a_root_that_is_a_file_or_missing_is_named_and_degraded(daemon_env: DaemonEnv, tmp_path: Path) -> None:
    env = daemon_env
    not_a_folder = tmp_path / "photos.txt"
    not_a_folder.write_text("oops")
    env.write_config(roots=[str(not_a_folder)])
    proc = env.start(wait=False)
    wait_until(lambda: env.status().get("pid") == proc.pid and env.status().get("state") == "degraded", timeout=60)
    code, answer = env.verdict()
    assert code == 1 and "not a folder" in answer["verdict"], answer
    assert "not a folder" in env.log() and "unmounted" not in env.log()
    assert env.stop() == 0
    env.write_config(roots=[str(tmp_path / "unplugged")])  # its only root is missing
    env.start(wait=False)
    wait_until(lambda: env.status().get("state") == "degraded", timeout=60)
    code, answer = env.verdict()
    assert code == 1 and "offline" in answer["verdict"]
    assert env.stop() == 0


def test_each_committed_batch_leaves_one_info_line(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    env.write_config(log_level="INFO")
    env.start()
    write_rgb(env.pictures / "one.jpg", photo("rocket"))
    wait_until(lambda: env.idle_with(1), timeout=30)
    lines = [line for line in env.log().splitlines() if "indexed 1 new image" in line]
    assert len(lines) == 1 and " INFO " in lines[0]
    assert env.stop() == 0


def test_the_socket_is_private_and_idle_connections_are_bounded_and_timed_out(daemon_env: DaemonEnv) -> None:
    from chromatica_watch.serving.connections import MAX_PENDING, REQUEST_DEADLINE_S

    env = daemon_env
    env.start()
    sock_path = str(env.runtime_dir / "chromatica-watch.sock")
    assert (os.stat(env.runtime_dir).st_mode & 0o777) == 0o700
    idle = []
    for _ in range(MAX_PENDING + 5):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)
        s.settimeout(REQUEST_DEADLINE_S + 10)
        idle.append(s)
    try:
        started = time.monotonic()
        # Past the bound, the oldest are told "busy" and closed at once; the rest when their deadline passes.
        closed_at, said = _seconds_until_closed(idle, started, limit=REQUEST_DEADLINE_S + 10)
        assert sum(t < 2 for t in closed_at) >= 5, closed_at
        assert all(b'"busy": true' in said[i] for i, t in enumerate(closed_at) if t < 2), said
        assert max(closed_at) < REQUEST_DEADLINE_S + 5, closed_at
        assert min(t for t in closed_at if t >= 2) > REQUEST_DEADLINE_S - 1, closed_at
        assert all(b"no request line within" in said[i] for i, t in enumerate(closed_at) if t >= 2), said
    finally:
        for s in idle:
            s.close()
    code, _ = env.verdict()
    assert code == 0  # it still answers
    assert env.stop() == 0


def _seconds_until_closed(socks: list[socket.socket], started: float,
                          limit: float) -> tuple[list[float], list[bytes]]:
    """For each socket, the seconds after `started` when the server closed it (read gives b""), and what it
    said before."""
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    closed: dict[int, float] = {}
    said = [b""] * len(socks)
    while len(closed) < len(socks) and time.monotonic() - started < limit:
        for key, _ in sel.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = sock.recv(4096)
            said[key.data] += data
            if not data:
                closed[key.data] = time.monotonic() - started
                sel.unregister(sock)
    sel.close()
    return [closed.get(i, float("inf")) for i in range(len(socks))], said


def test_a_folder_deeper_than_path_max_is_named_and_the_rest_stays_watched(daemon_env: DaemonEnv) -> None:
    from tests.test_watcher import first_too_long, make_deep, remove_tree

    env = daemon_env
    rels = make_deep(env.pictures)
    too_long, length, limit = first_too_long(env.pictures, rels)
    try:
        env.start()
        status = env.status()
        assert status["watcher_mode"][str(env.pictures)] == "native"
        unwatched = status["unwatched"][str(env.pictures)]
        assert [u["folder"] for u in unwatched] == [too_long.decode()]
        assert f"{length} bytes, longer than the system limit of {limit} bytes" in unwatched[0]["reason"]
        log = env.log()
        assert "inotify watch limit" not in log and "max_user_watches" not in log
        started = time.monotonic()
        write_rgb(env.pictures / "normal" / "new.jpg", photo("coffee"))
        wait_until(lambda: env.idle_with(1), timeout=30)
        assert time.monotonic() - started < 8  # seen by its event, not by a periodic scan of the root
        code, answer = env.verdict()
        assert code == 0, answer
        assert env.stop() == 0
    finally:
        fd = os.open(env.pictures, os.O_RDONLY | os.O_DIRECTORY)
        try:
            remove_tree(fd, rels[0].decode())
        finally:
            os.close(fd)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "small-disk", "24m") as mnt:
        yield mnt


def fill_up(mnt: Path) -> Path:
    """Write a file until the file system has not one byte left."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 1 << 20
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                size //= 2
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_degrades_retries_politely_and_catches_up_by_itself(daemon_env: DaemonEnv,
                                                                        small_tmpfs: Path) -> None:
    """The index, status.json and the log all on one disk that fills up (the default layout)."""
    env = daemon_env
    env.index_dir, env.state_dir = small_tmpfs / "index", small_tmpfs / "state"
    env.write_config(log_level="INFO")
    env.start()
    for i, name in enumerate(PHOTO_NAMES[:3]):
        write_rgb(env.pictures / f"before{i}.jpg", photo(name))
    wait_until(lambda: env.idle_with(3), timeout=60)
    filler = fill_up(small_tmpfs)
    for i, name in enumerate(PHOTO_NAMES[3:]):
        write_rgb(env.pictures / f"during{i}.jpg", photo(name))
    # status.json cannot be written now: `status` asks the daemon itself.
    wait_until(lambda: env.verdict()[1]["status"]["state"] == "degraded", timeout=60, interval=0.5)
    code, answer = env.verdict()
    assert code == 1 and "no space left on device" in answer["verdict"].lower(), answer
    first_error = time.monotonic()
    wait_until(lambda: time.monotonic() - first_error > 8 and env.proc is not None and env.proc.poll() is None,
               timeout=30, interval=0.5)
    stderr = env.stderr()  # the journal: every line goes there; the log file cannot be written
    attempts = [line for line in stderr.splitlines() if "indexing is paused and retried" in line]
    assert 1 <= len(attempts) <= 5, attempts  # a capped back-off, not five a second
    assert "Traceback" not in stderr and "cannot rollback" not in stderr and "Logging error" not in stderr
    assert stderr.count("cannot write the log file") <= 1
    assert list(env.index_dir.glob(".*.tmp")) == [] and list(env.state_dir.glob(".*.tmp")) == []
    # kill -9 while the disk is full, and start again: degraded, waiting, not a crash loop.
    env.stop(signal.SIGKILL)
    proc = env.start(wait=False)
    wait_until(lambda: env.verdict()[1]["status"].get("pid") == proc.pid and env.verdict()[0] in (0, 1),
               timeout=60, interval=0.5)
    assert proc.poll() is None
    filler.unlink()  # space is back: it catches up by itself
    n = len(PHOTO_NAMES)
    wait_until(lambda: env.idle_with(n) and env.verdict()[0] == 0, timeout=120, interval=0.5)
    assert env.stop() == 0
    assert list(env.index_dir.glob(".*.tmp")) == []
    check = subprocess.run([CLI, "validate", str(env.index_dir)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert_index_matches_disk(env)
    assert "indexed" in env.log()  # the log file works again


def _damage_catalog_header(index_dir: Path) -> bytes:
    """Flip bytes in the catalog's database header (DuckDB checks it when the file is opened)."""
    path = index_dir / "chromatica_metadata.db"
    blob = bytearray(path.read_bytes())
    blob[4096 + 8: 4096 + 40] = bytes(b ^ 0xFF for b in blob[4096 + 8: 4096 + 40])
    path.write_bytes(bytes(blob))
    return bytes(blob)


def test_a_damaged_catalog_is_kept_aside_and_the_folder_indexed_again(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    for i, name in enumerate(PHOTO_NAMES):
        write_rgb(env.pictures / f"{i}.jpg", photo(name))
    env.start()
    wait_until(lambda: env.idle_with(len(PHOTO_NAMES)), timeout=60)
    assert env.stop() == 0
    damaged = _damage_catalog_header(env.index_dir)
    # With the daemon stopped, every command that reads the catalog says which file and what to do.
    for args in (["search", "--color", "#ff8800"], ["failed"], ["validate", str(env.index_dir)]):
        proc = env.cli(*args) if args[0] != "validate" else subprocess.run(
            [CLI, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and "duckdb" not in (proc.stdout + proc.stderr).lower(), proc.stderr
        out = proc.stderr if args[0] != "validate" else proc.stdout
        assert "chromatica_metadata.db" in out and "damaged" in out, (args, out)
        if args[0] != "validate":
            assert len(proc.stderr.strip().splitlines()) == 1 and "chromatica-watch run" in proc.stderr
    # The daemon keeps it aside (never deleted), says so loudly, and indexes the folder again.
    env.start()
    wait_until(lambda: env.idle_with(len(PHOTO_NAMES)), timeout=60)
    kept = list(env.index_dir.glob("chromatica_metadata.db.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged
    assert any(" ERROR " in line and "damaged" in line and kept[0].name in line for line in env.log().splitlines())
    code, answer = env.verdict()
    assert code == 0 and any(kept[0].name in a["message"] for a in answer["status"]["alerts"])
    status_text = env.cli("status").stdout
    assert "NOTE:" in status_text and "damaged" in status_text
    assert env.stop() == 0
    assert_index_matches_disk(env)
    check = subprocess.run([CLI, "validate", str(env.index_dir)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout


def _hidden_damage_offset(index_dir: Path, scratch: Path) -> int:
    """An offset in the catalog whose damage a start does not see (open, counts and the live rows read
    fine) but reading every block does: a histogram block. Found by trying each block on a copy."""
    from chromatica_watch.colour import histogram as H
    from chromatica_watch.core.errors import CatalogDamaged
    from chromatica_watch.storage.catalog import Catalog

    blob = (index_dir / "chromatica_metadata.db").read_bytes()
    fp = H.fingerprint(256)
    for offset in range(12288 + 100, len(blob), 262144):
        trial = scratch / f"at{offset}"
        trial.mkdir(parents=True)
        damaged = bytearray(blob)
        damaged[offset: offset + 64] = bytes(b ^ 0xFF for b in damaged[offset: offset + 64])
        (trial / "chromatica_metadata.db").write_bytes(bytes(damaged))
        try:
            catalog = Catalog.open(trial, fp, read_only=True)
        except CatalogDamaged:
            continue
        try:
            catalog.counts()
            catalog.live_ids()
            catalog.live_files(next(iter(catalog.roots())))
        except CatalogDamaged:
            continue
        try:
            catalog.verify()
        except CatalogDamaged:
            return offset
        finally:
            catalog.close()
    raise AssertionError("no block whose damage only a full read finds")


def test_damage_no_start_reads_is_found_by_the_read_back_after_the_start(daemon_env: DaemonEnv,
                                                                          tmp_path: Path) -> None:
    env = daemon_env
    for i in range(40):
        write_rgb(env.pictures / f"{i:02d}.jpg", photo(PHOTO_NAMES[i % len(PHOTO_NAMES)]))
        write_rgb(env.pictures / f"s{i:02d}.png", solid((6 * i, 255 - 6 * i, 90), (24, 24)))
    env.start()
    wait_until(lambda: env.idle_with(80), timeout=120)
    assert env.stop() == 0
    offset = _hidden_damage_offset(env.index_dir, tmp_path / "scratch")
    path = env.index_dir / "chromatica_metadata.db"
    blob = bytearray(path.read_bytes())
    blob[offset: offset + 64] = bytes(b ^ 0xFF for b in blob[offset: offset + 64])
    path.write_bytes(bytes(blob))
    env.start()
    wait_until(lambda: env.status().get("alerts") and env.idle_with(80), timeout=120)
    assert "damaged" in env.status()["alerts"][0]["message"]
    assert len(list(env.index_dir.glob("chromatica_metadata.db.damaged-*"))) == 1
    assert env.stop() == 0
    assert_index_matches_disk(env)
