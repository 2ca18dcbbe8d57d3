"""Status publishing: what only the indexer thread may read (the catalog's counts, the roots, the watcher,
the queue) handed to the status reporter, which other threads read snapshots of and whose own thread
writes status.json. Counts are read at most every `status_interval` from the loop, at once after a
state change or a commit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chromatica_watch.core.paths import display_path
from chromatica_watch.daemon.guard import StorageGuard
from chromatica_watch.daemon.read_cache import ReadCache
from chromatica_watch.daemon.roots import RootKeeper
from chromatica_watch.daemon.status import State, StatusReporter
from chromatica_watch.ingest.roots import RETIRED, WATCHED
from chromatica_watch.storage.store import Store

Clock = Callable[[], float]


class StatusPublisher:
    def __init__(self, reporter: StatusReporter, store: Store, roots: RootKeeper, guard: StorageGuard,
                 reads: ReadCache, upgrade: Callable[[int], dict[str, Any] | None], clock: Clock,
                 interval: float) -> None:
        self.reporter = reporter
        self.store = store
        self.roots = roots
        self.guard = guard
        self.reads = reads
        self.clock = clock
        self.interval = interval
        self.queued: Callable[[], int] = lambda: 0  # files waiting: the batcher's and those being read
        self.upgrade = upgrade  # an upgrade's progress, given how many photos are indexed (None: none)
        self._counts_at = -float("inf")  # when the catalog's counts were last handed to the reporter

    def reconfigure(self, interval: float) -> None:
        self.interval = interval

    @property
    def state(self) -> State:
        return self.reporter.state

    def set_state(self, state: State) -> None:
        if state != self.reporter.state:
            self.reporter.set_state(state)
            self.publish_counts(write=True)

    def refresh_degraded(self) -> None:
        reasons = self.roots.offline_reasons()
        if self.guard.problem:
            reasons.insert(0, self.guard.problem)
        self.reporter.set_degraded("; ".join(reasons) or None)

    def refresh_counts(self, now: float) -> None:
        """From the loop: the counts at most every status_interval (a catalog query; the reporter's own
        thread writes status.json on that timer), not on every turn of an idle loop."""
        if now - self._counts_at >= self.interval:
            self.publish_counts()

    def publish_counts(self, write: bool = False) -> None:
        """`write` or an idle daemon also writes status.json at once (a batch just committed shows without
        waiting)."""
        self._counts_at = self.clock()
        is_open = self.store.is_open
        counts = self.reads.get(self.store.catalog, "counts", self.store.catalog.counts) if is_open else {}
        views = self.roots.views()
        configured = [v for v in views if v.state != RETIRED]  # a retired root is never counted as indexed
        self.reporter.update(
            counts={"indexed": sum(v.photos for v in configured), "failed": sum(v.failed for v in configured),
                    "tombstoned": counts.get("tombstoned", 0),
                    "retired": sum(v.photos for v in views if v.state == RETIRED)},
            queued=self.queued(),
            roots=[{**v.to_json(), "online": v.state == WATCHED and self.roots.is_online(v.path)} for v in views],
            **self._watcher_fields(),
            upgrade=self.upgrade(sum(v.photos for v in configured)))
        if write or self.state is State.IDLE:
            self.reporter.publish()  # at once: status.json shows a committed batch without waiting

    def _watcher_fields(self) -> dict[str, Any]:
        watcher = self.roots.watcher
        plans = {root: {"rescan": plan.rescan, "reason": plan.reason}
                 for root, plan in self.roots.plans.items() if plan.rescan is not None}
        if watcher is None:
            return {"watcher_mode": {}, "unwatched": {}, "watch_unchecked": [], "rescanned": plans}
        return {"rescanned": plans, "watcher_mode": dict(watcher.modes),
                "unwatched": {root: [{"folder": display_path(rel), "reason": why} for rel, why in folders]
                              for root, folders in watcher.unwatched.items()},
                "watch_unchecked": sorted(watcher.unchecked)}
