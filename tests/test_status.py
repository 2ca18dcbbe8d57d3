"""The status reporter and the verdict of `status`, with plain values and a fake clock (no sleeps)."""

from __future__ import annotations

from pathlib import Path

from chromatica_watch.daemon.status import (
    EXIT_DEGRADED,
    EXIT_HEALTHY,
    EXIT_NOT_RUNNING,
    StatusReporter,
    judge,
    stalled_for,
)


class RecordingNotifier:
    def __init__(self) -> None:
        self.pings = 0
        self.texts: list[str] = []

    def status(self, text: str) -> bool:
        self.texts.append(text)
        return True

    def watchdog(self) -> bool:
        self.pings += 1
        return True


def test_stalled_only_when_busy_and_past_the_bound() -> None:
    assert stalled_for("idle", 0, last_beat=0.0, now=1000.0, stall_timeout=60) is None  # nothing to do
    assert stalled_for("idle", 3, last_beat=0.0, now=59.0, stall_timeout=60) is None  # not yet
    assert stalled_for("idle", 3, last_beat=0.0, now=61.0, stall_timeout=60) == 61.0
    assert stalled_for("reconciling", 0, last_beat=10.0, now=100.0, stall_timeout=60) == 90.0


def test_a_stuck_indexer_reads_degraded_and_the_watchdog_ping_stops(tmp_path: Path) -> None:
    now = [100.0]
    notifier = RecordingNotifier()
    reporter = StatusReporter(tmp_path / "status.json", notifier, interval=5, stall_timeout=60, base={},
                              clock=lambda: now[0], wall=lambda: 1.7e9)
    reporter.set_state("indexing")
    reporter.update(queued=12, counts={"indexed": 5})
    reporter.publish()
    assert notifier.pings == 1 and reporter.snapshot()["state"] == "indexing"
    now[0] += 30
    reporter.beat()  # progress: still healthy
    now[0] += 59
    reporter.publish()
    assert notifier.pings == 2
    now[0] += 2  # 61 s without a turn, with 12 files queued
    status = reporter.publish()
    assert status["state"] == "degraded" and status["stalled"] is True
    assert "has not moved for 61 s" in status["degraded_reason"]
    assert notifier.pings == 2  # withheld: systemd's watchdog restarts a stuck daemon
    assert judge(status, None, None, None)[0] == EXIT_DEGRADED
    reporter.beat()
    assert reporter.publish()["state"] == "indexing" and notifier.pings == 3


def test_verdicts_from_the_socket_and_the_saved_file() -> None:
    live = {"state": "idle", "degraded_reason": None}
    assert judge(live, None, None, None) == (EXIT_HEALTHY, "running (idle)")
    assert judge({"state": "idle", "degraded_reason": "root /x is offline"}, None, None, None)[0] == EXIT_DEGRADED
    assert judge(None, "not answering", {"state": "idle"}, None)[0] == EXIT_DEGRADED
    code, verdict = judge(None, "no daemon", {"state": "indexing", "pid": 1, "updated_at": 1.7e9}, None)
    assert code == EXIT_NOT_RUNNING and "ended unexpectedly" in verdict  # kill -9: never "stopped cleanly"
    code, verdict = judge(None, "no daemon", {"state": "failed", "degraded_reason": "no space left"}, None)
    assert code == EXIT_NOT_RUNNING and "no space left" in verdict
    code, verdict = judge(None, "no daemon", {"state": "stopped", "stopped_at": 1.7e9}, None)
    assert code == EXIT_NOT_RUNNING and "stopped cleanly" in verdict
    code, verdict = judge(None, "no daemon", None, "status file /s.json is damaged (not JSON)")
    assert code == EXIT_NOT_RUNNING and "damaged" in verdict
