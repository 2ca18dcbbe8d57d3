"""The status reporter and the verdict of `status`, with plain values and a fake clock (no sleeps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chromatica_watch.cli.commands.daemon import _print_live_status
from chromatica_watch.colour import histogram as H
from chromatica_watch.core.records import Changes, NewImage
from chromatica_watch.daemon.status import (
    EXIT_DEGRADED,
    EXIT_HEALTHY,
    EXIT_NOT_RUNNING,
    RebuildReport,
    StatusReporter,
    judge,
    stalled_for,
)
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.store import Store


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


def test_a_rebuild_of_the_live_index_says_how_far_it_is_until_it_is_over(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An index of an earlier release, or a lost checkpoint, is built again from the catalog at the start:
    minutes at a million photos. Status says how far it is, and forgets it once the index is open."""
    fp = H.fingerprint(256)
    hists = np.full((300, H.TOTAL_BINS), 1.0 / H.TOTAL_BINS, np.float32)
    with Catalog.open(tmp_path, fp) as catalog:
        catalog.apply(Changes(added=[NewImage("/p", f"{i}.jpg".encode(), 10, 10**18, f"h{i}", 8, 8, h)
                                     for i, h in enumerate(hists)]))
    now = [100.0]
    reporter = StatusReporter(tmp_path / "status.json", RecordingNotifier(), interval=5, stall_timeout=60, base={},
                              clock=lambda: now[0], wall=lambda: 1.7e9)
    reporter.update(queued=1)
    seen: list[dict[str, int]] = []

    class Watched(RebuildReport):
        def moved(self, added: int, total: int) -> None:
            now[0] += 100  # minutes between chunks: each one is a beat, so the daemon is not taken as stuck
            super().moved(added, total)
            status = reporter.snapshot()
            assert not status["stalled"]
            seen.append(status["live_index"])
            _print_live_status(status)

    store = Store(tmp_path, fp, progress=Watched(reporter))
    try:
        store.open()
    finally:
        store.close()
    assert seen == [{"added": 300, "total": 300}]
    assert "building the live index from the catalog: 300 of 300 photos (no image is read); searches wait for it" \
        in capsys.readouterr().out
    assert reporter.snapshot()["live_index"] is None
