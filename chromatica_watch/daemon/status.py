"""What the daemon says about itself: the status reporter, status.json, and how `status` judges it.

The indexer thread reports into a `StatusReporter` (state, counts, failures, a heartbeat each time its
loop turns); the reporter publishes snapshots under one lock, so socket threads read a consistent
copy and never touch the indexer's objects. Its own thread writes status.json every few seconds and
at once on a state change, and pings the systemd watchdog only while the indexer's loop keeps turning:
a loop stuck with work queued turns the state to `degraded` and lets systemd restart the service.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from chromatica_watch.core.fsutil import atomic_write

logger = logging.getLogger(__name__)



class State(StrEnum):
    """What the daemon is doing, as status.json and `status` say it."""

    STARTING = "starting"
    RECONCILING = "reconciling"  # comparing a folder with the catalog
    INDEXING = "indexing"
    IDLE = "idle"
    DEGRADED = "degraded"  # running, but not doing its whole job (reason in degraded_reason)
    STOPPING = "stopping"
    STOPPED = "stopped"  # ended cleanly
    FAILED = "failed"  # ended on an error (reason in degraded_reason)


HEALTHY_STATES = (State.STARTING, State.RECONCILING, State.INDEXING, State.IDLE)
BUSY_STATES = (State.STARTING, State.RECONCILING, State.INDEXING)
EXIT_HEALTHY, EXIT_DEGRADED, EXIT_NOT_RUNNING = 0, 1, 3
RECENT_FAILURES = 20
RATE_WINDOW_S = 60.0

Clock = Callable[[], float]


class Notifier(Protocol):
    def status(self, text: str) -> bool: ...
    def watchdog(self) -> bool: ...


class Rate:
    """Images indexed per second over the last minute."""

    def __init__(self) -> None:
        self._recent: deque[tuple[float, int]] = deque()

    def note(self, n: int, now: float) -> None:
        if n:
            self._recent.append((now, n))
        while self._recent and now - self._recent[0][0] > RATE_WINDOW_S:
            self._recent.popleft()

    def per_second(self, now: float) -> float:
        self.note(0, now)
        if not self._recent:
            return 0.0
        return sum(n for _, n in self._recent) / max(1.0, now - self._recent[0][0])


def stalled_for(state: str, queued: int, last_beat: float, now: float, stall_timeout: float) -> float | None:
    """Seconds the indexer loop has not turned while it had work, once past `stall_timeout`; else None."""
    idle_for = now - last_beat
    busy = queued > 0 or state in BUSY_STATES
    return idle_for if busy and idle_for > stall_timeout else None


class StatusReporter:
    """The daemon's status, owned in one place; see the module docstring."""

    def __init__(self, path: Path, notifier: Notifier, *, interval: float, stall_timeout: float,
                 base: dict[str, Any], clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.path = path
        self.notifier = notifier
        self.interval = interval
        self.stall_timeout = stall_timeout
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # the reporter's thread and the indexer both publish
        self._fields: dict[str, Any] = {
            "state": State.STARTING, "pid": os.getpid(), "started_at": wall(), "counts": {}, "queued": 0,
            "last_checkpoint": None, "last_full_scan": None, "degraded_reason": None, "alerts": [],
            "roots": [], "watcher_mode": {}, "rescanned": {}, "unwatched": {},
            "watch_unchecked": [], "live_index": None, **base}
        self._failures: deque[dict[str, Any]] = deque(maxlen=RECENT_FAILURES)
        self._rate = Rate()
        self._last_beat = clock()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_warned = False

    # -- reported by the indexer thread ---------------------------------------------------------
    def beat(self) -> None:
        """The indexer's loop turned (or made progress inside a long step)."""
        with self._lock:
            self._last_beat = self._clock()

    def set_state(self, state: State) -> None:
        with self._lock:
            changed = self._fields["state"] != state
            self._fields["state"] = state
            self._last_beat = self._clock()
        if changed:
            self._changed.set()

    @property
    def state(self) -> State:
        with self._lock:
            return State(self._fields["state"])

    def update(self, **fields: Any) -> None:
        with self._lock:
            self._fields.update(fields)

    def set_degraded(self, reason: str | None) -> None:
        with self._lock:
            changed = self._fields["degraded_reason"] != reason
            self._fields["degraded_reason"] = reason
        if changed:
            self._changed.set()

    def alert(self, text: str) -> None:
        """Something the user must hear about, kept in the status for this daemon's lifetime."""
        with self._lock:
            self._fields["alerts"] = [*self._fields["alerts"], {"at": self._wall(), "message": text}]
        self._changed.set()

    def note_indexed(self, n: int) -> None:
        with self._lock:
            self._rate.note(n, self._clock())

    def note_failure(self, path: str, reason: str) -> None:
        with self._lock:
            self._failures.append({"path": path, "reason": reason, "at": self._wall()})

    # -- read by anyone --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The status as `status --json` shows it, judged now (a stalled loop reads as degraded)."""
        with self._lock:
            now = self._clock()
            fields = dict(self._fields)
            rate = self._rate.per_second(now)
            failures = list(self._failures)
            last_beat = self._last_beat
        queued = int(fields.pop("queued"))
        counts = {"indexed": 0, "failed": 0, "tombstoned": 0, **fields["counts"], "queued": queued}
        stalled = stalled_for(fields["state"], queued, last_beat, now, self.stall_timeout)
        if stalled is not None:
            fields["degraded_reason"] = (f"the indexer has not moved for {stalled:.0f} s with work queued "
                                         "(stuck; systemd's watchdog will restart it)")
        state = fields["state"]
        if fields["degraded_reason"] and state in (State.IDLE, State.INDEXING, State.RECONCILING):
            state = State.DEGRADED
        return {**fields, "state": state, "counts": counts, "updated_at": self._wall(),
                "throughput_per_s": round(rate, 2),
                "eta_seconds": round(queued / rate, 1) if rate > 0 and queued else None,
                "recent_failures": failures, "stalled": stalled is not None}

    # -- the reporter's own thread ---------------------------------------------------------------
    def start(self) -> None:
        self.publish()
        self._thread = threading.Thread(target=self._loop, name="status-reporter", daemon=True)
        self._thread.start()

    def stop(self, final_state: State, reason: str | None = None) -> None:
        """Stop the thread and write the last word: `stopped` (clean) or `failed` with the reason."""
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            self._fields["state"] = final_state
            self._fields["degraded_reason"] = reason
            self._fields["stopped_at"] = self._wall()
        self.publish(ping=False)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._changed.wait(self.interval)
            self._changed.clear()
            if self._stop.is_set():
                return
            self.publish()

    def publish(self, ping: bool = True) -> dict[str, Any]:
        with self._write_lock:
            status = self.snapshot()
            try:
                write_status(self.path, status)
                self._write_warned = False
            except OSError as exc:
                if not self._write_warned:  # once per episode (a full disk), not every few seconds
                    self._write_warned = True
                    logger.warning("cannot write %s: %s", self.path, exc.strerror or exc)
        counts = status["counts"]
        self.notifier.status(f"{status['state']}: {counts['indexed']} indexed, {counts['queued']} queued"
                             + (f" ({status['degraded_reason']})" if status["degraded_reason"] else ""))
        if ping and not status["stalled"]:
            self.notifier.watchdog()  # withheld while stuck, so that systemd restarts the service
        return status


class RebuildReport:
    """A long rebuild of the live index, as the store tells it (`RebuildProgress`): each chunk is a beat (it
    moves: no stall), and status says how far it is (`live_index`) until it is over."""

    def __init__(self, reporter: StatusReporter) -> None:
        self._reporter = reporter

    def moved(self, added: int, total: int) -> None:
        self._reporter.beat()
        self._reporter.update(live_index={"added": added, "total": max(total, added)})

    def finished(self) -> None:
        self._reporter.update(live_index=None)


def write_status(path: Path, status: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not fsynced: a status file lost in a power cut is rewritten within seconds of the next start.
    # 0600: it carries the web app's address with its access token, which only this user may read.
    atomic_write(path, json.dumps(status, indent=2, sort_keys=True).encode(), durable=False, mode=0o600)


def read_status(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(status, None), or (None, why there is none: missing or unreadable)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, "no status file"
    except OSError as exc:
        return None, f"status file {path} cannot be read: {exc.strerror}"
    except ValueError:
        return None, f"status file {path} is damaged (not JSON)"
    if not isinstance(data, dict):
        return None, f"status file {path} is damaged (not a JSON object)"
    return data, None


def _when(ts: object) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if isinstance(ts, int | float) else "?"


def judge(live: dict[str, Any] | None, live_problem: str | None, saved: dict[str, Any] | None,
          saved_problem: str | None) -> tuple[int, str]:
    """(exit code, one-line verdict) for `chromatica-watch status`.

    `live` is what the daemon answered over its socket (the truth while it runs); `live_problem` says
    why there is no answer ("no daemon", "busy" or "not answering"). `saved` is status.json, which only tells
    how the last daemon ended. A pid alone proves nothing: pids are reused.
    """
    if live is not None:
        state = live.get("state", "?")
        if state in HEALTHY_STATES and not live.get("degraded_reason"):
            return EXIT_HEALTHY, f"running ({state})"
        return EXIT_DEGRADED, f"degraded: {live.get('degraded_reason') or state}"
    if live_problem == "not answering":
        return EXIT_DEGRADED, "not responding: a daemon holds the socket but did not answer"
    if live_problem == "busy":
        return EXIT_DEGRADED, "busy: the daemon said it is answering too many requests; try again in a moment"
    if saved is None:
        return EXIT_NOT_RUNNING, f"not running ({saved_problem or 'no status file'})"
    state = saved.get("state", "?")
    if state == State.STOPPED:
        return EXIT_NOT_RUNNING, f"not running (stopped cleanly at {_when(saved.get('stopped_at'))})"
    if state == State.FAILED:
        return EXIT_NOT_RUNNING, (f"not running: it stopped on an error at {_when(saved.get('stopped_at'))}: "
                                  f"{saved.get('degraded_reason') or 'see the log'}")
    return EXIT_NOT_RUNNING, (f"not running: it ended unexpectedly (killed or crashed) while {state}; "
                              f"last update {_when(saved.get('updated_at'))}")
