"""Ctrl-C. The first asks to stop and the second interrupts; processes started with SIGINT blocked never
see it. A `build` whose process group gets SIGINT (as a terminal sends it) at any moment says
"interrupted" without a traceback, leaves no process behind, keeps what it read, and the same build run
again ends where an uninterrupted one does: with one writer, and with shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from chromatica_watch.core.interrupt import sigint_blocked, stop_on_sigint
from chromatica_watch.offline.shards import shard_dirs
from chromatica_watch.storage.indexdir import INDEXING_REPORT
from tests.conftest import CLI, wait_until
from tests.test_build import cropped_photos, ended, run_cli, snapshot


def test_the_first_sigint_asks_to_stop_and_the_second_interrupts() -> None:
    before = signal.getsignal(signal.SIGINT)
    asked: list[str] = []
    with stop_on_sigint(on_first=lambda: asked.append("stop")) as should_stop:
        assert not should_stop()
        signal.raise_signal(signal.SIGINT)
        assert should_stop() and asked == ["stop"]
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before and asked == ["stop"]


def test_a_process_started_with_sigint_blocked_never_sees_it_and_the_mask_is_restored() -> None:
    def blocked(status: str) -> bool:
        line = next(x for x in status.splitlines() if x.startswith("SigBlk:"))
        return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))

    read_status = [sys.executable, "-c", "print(open('/proc/self/status').read())"]
    with sigint_blocked():
        inside = subprocess.run(read_status, capture_output=True, text=True, check=True).stdout
    after = subprocess.run(read_status, capture_output=True, text=True, check=True).stdout
    assert blocked(inside) and not blocked(after)
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def _interrupt(argv: list[str], when: Callable[[psutil.Process], bool]) -> tuple[int, str, list[psutil.Process]]:
    """Run the CLI in a session of its own, send SIGINT to its whole process group once `when` holds;
    returns its exit code, its stderr and every process it had started."""
    proc = subprocess.Popen([CLI, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    main = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}

    def ready() -> bool:
        try:
            seen.update((p.pid, p) for p in main.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
        return proc.poll() is not None or when(main)

    wait_until(ready, timeout=120, interval=0.005)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, list(seen.values())


def _children(n: int) -> Callable[[psutil.Process], bool]:
    def at_least(main: psutil.Process) -> bool:
        try:
            return len(main.children(recursive=True)) >= n
        except psutil.NoSuchProcess:
            return True
    return at_least


# A batch of 10 rows adds ~6 KB to the catalog's WAL, its creation ~2 KB: past this, a batch is committed.
FIRST_BATCH_WAL = 6000


def test_ctrl_c_during_a_build_keeps_what_was_read_and_the_same_build_then_finishes_it(tmp_path: Path) -> None:
    dataset = cropped_photos(tmp_path / "dataset", 300)
    reference = tmp_path / "reference"
    run_cli("build", "--dataset", str(dataset), "--output", str(reference), "--batch-size", "10", "-q", check=True)
    out = tmp_path / "out"
    wal = out / "chromatica_metadata.db.wal"
    code, err, started = _interrupt(
        ["build", "--dataset", str(dataset), "--output", str(out), "--batch-size", "10", "--workers", "1"],
        lambda _: wal.exists() and wal.stat().st_size > FIRST_BATCH_WAL)

    assert code == 130, err
    assert "Traceback" not in err and "stopping: committing the files in hand" in err
    assert "interrupted; what was read is kept: run the same command again" in err
    report = json.loads((out / INDEXING_REPORT).read_text())
    assert report["interrupted"] and 0 < report["indexed"] < 300
    wait_until(lambda: all(ended(p) for p in started), timeout=30)
    again = run_cli("build", "--dataset", str(dataset), "--output", str(out), "--batch-size", "10", "-q", check=True)
    assert f"indexed {300 - report['indexed']} new images ({report['indexed']} already indexed" in again.stdout
    assert not json.loads((out / INDEXING_REPORT).read_text())["interrupted"]
    assert snapshot(out) == snapshot(reference)


@pytest.mark.parametrize("moment", ["fork server up", "workers up", "catalog made"])
def test_ctrl_c_while_a_build_starts_ends_it_without_a_traceback_or_a_process_left(tmp_path: Path, moment: str) -> None:
    dataset = cropped_photos(tmp_path / "dataset", 40)
    out = tmp_path / "out"
    when = {"fork server up": _children(1), "workers up": _children(4),
            "catalog made": lambda _: (out / "chromatica_metadata.db").exists()}[moment]
    code, err, started = _interrupt(["build", "--dataset", str(dataset), "--output", str(out)], when)

    assert code in (0, 130) and "Traceback" not in err, err
    wait_until(lambda: all(ended(p) for p in started), timeout=30)
    assert run_cli("build", "--dataset", str(dataset), "--output", str(out), "-q").returncode == 0
    assert run_cli("validate", str(out)).returncode == 0


def test_ctrl_c_during_a_sharded_build_stops_every_shard_and_the_same_command_resumes_them(tmp_path: Path) -> None:
    dataset = cropped_photos(tmp_path / "dataset", 300)
    out = tmp_path / "out"
    argv = ["build", "--dataset", str(dataset), "--output", str(out), "--batch-size", "10", "--shards", "2",
            "--workers", "2"]
    wals = [d / "chromatica_metadata.db.wal" for d in shard_dirs(out, 2)]
    code, err, started = _interrupt(
        argv, lambda _: any(w.exists() and w.stat().st_size > FIRST_BATCH_WAL for w in wals))

    assert code == 130 and "Traceback" not in err, err
    assert not out.exists() and all(d.exists() for d in shard_dirs(out, 2))  # nothing merged, both kept
    wait_until(lambda: all(ended(p) for p in started), timeout=30)
    again = run_cli(*argv[:-4], "--shards", "2", "-q", check=True)
    assert "300 in the index" in again.stdout, again.stdout
    assert not any(d.exists() for d in shard_dirs(out, 2))


def test_ctrl_c_during_a_build_on_a_local_dask_cluster_ends_it_without_a_traceback(tmp_path: Path) -> None:
    dataset = cropped_photos(tmp_path / "dataset", 300)
    out = tmp_path / "out"
    wal = out / "chromatica_metadata.db.wal"
    code, err, started = _interrupt(
        ["build", "--dataset", str(dataset), "--output", str(out), "--batch-size", "10", "--dask", "local:2"],
        lambda _: wal.exists() and wal.stat().st_size > FIRST_BATCH_WAL)

    assert code == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert json.loads((out / INDEXING_REPORT).read_text())["interrupted"]
    wait_until(lambda: all(ended(p) for p in started), timeout=60)
    again = run_cli("build", "--dataset", str(dataset), "--output", str(out), "-q", check=True)
    assert "300 in the index" in again.stdout
