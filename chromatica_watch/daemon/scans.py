"""When the folders are compared with the catalog (events are hints; the scan is the truth): every root at
the start, every `rescan_interval` (jittered; every few seconds for a root the watcher cannot watch), when
a root comes back, when the watcher breaks, and the folders left without a watch every few seconds."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from chromatica_watch.core.config import Config
from chromatica_watch.daemon.guard import StorageGuard
from chromatica_watch.daemon.publisher import StatusPublisher
from chromatica_watch.daemon.reconciler import Reconciler
from chromatica_watch.daemon.roots import RootKeeper
from chromatica_watch.daemon.status import State, StatusReporter

logger = logging.getLogger(__name__)

SCAN_FALLBACK_INTERVAL_S = 10.0
# A root rescanned on a short interval (a network share) waits at least this many times its last rescan's
# length before the next: a share that takes 20 s to list is listed at most a fifth of the time.
RESCAN_PACE = 4.0


class Scans:
    def __init__(self, cfg: Config, reconciler: Reconciler, roots: RootKeeper, publisher: StatusPublisher,
                 guard: StorageGuard, reporter: StatusReporter, clock: Callable[[], float],
                 stop: threading.Event) -> None:
        self.cfg = cfg
        self.reconciler = reconciler
        self.roots = roots
        self.publisher = publisher
        self.guard = guard
        self.reporter = reporter
        self.clock = clock
        self.stop = stop
        self.scanned = False  # every online root compared with the catalog since the store opened
        self._next_rescan = 0.0
        self._next_unwatched = 0.0
        self._next_root: dict[str, float] = {}  # when each root rescanned on a short interval is due

    def reconfigure(self, cfg: Config) -> None:
        self.cfg = cfg
        self.schedule()

    def schedule(self) -> None:
        interval = self.cfg.rescan_interval
        watcher = self.roots.watcher
        if watcher is not None and any(m == "scan" for m in watcher.modes.values()):
            interval = min(interval, SCAN_FALLBACK_INTERVAL_S)  # no native watch: scans find changes
        jitter = interval * self.cfg.rescan_jitter
        self._next_rescan = self.clock() + interval + random.uniform(-jitter, jitter)

    def run_due(self, now: float) -> None:
        if now >= self._next_rescan:
            self.all()
            self.schedule()
        elif now >= self._next_unwatched:
            self.unwatched()
        self.frequent(now)

    def frequent(self, now: float) -> None:
        """The roots whose plan asks for rescans on a short interval (on a network share, changes made
        elsewhere send no event): each compared with the catalog when due, paced by its last length."""
        for root, plan in list(self.roots.plans.items()):
            if plan.rescan is None or not self.roots.is_online(root) or self.stop.is_set():
                continue
            due = self._next_root.setdefault(root, now + plan.rescan)  # the full scans cover it until then
            if now < due:
                continue
            started = self.clock()
            self._compare(root, quiet=True)
            ended = self.clock()
            self._next_root[root] = ended + max(plan.rescan, RESCAN_PACE * (ended - started))

    def all(self) -> None:
        """Every online root, then which of its folders still lack a watch (folders made since)."""
        for root in self.cfg.roots:
            if self.stop.is_set():
                return
            if self.roots.is_online(root):
                self.root(root)
                if self.roots.watcher is not None:
                    self.roots.watcher.recheck(root)
        self.scanned = not self.guard.failing
        self.reporter.update(last_full_scan=time.time())
        self._next_unwatched = self.clock() + SCAN_FALLBACK_INTERVAL_S

    def unwatched(self) -> None:
        """Folders the watcher could not watch (a path too long, no permission, the watch limit) are compared
        with the catalog every SCAN_FALLBACK_INTERVAL_S; the rest of their root stays watched."""
        watcher = self.roots.watcher
        for root, folders in list(watcher.unwatched.items()) if watcher is not None else []:
            if self.roots.is_online(root):
                for rel, _reason in folders:
                    self._compare(root, rel)
        self._next_unwatched = self.clock() + SCAN_FALLBACK_INTERVAL_S

    def root(self, root: str) -> None:
        if self.guard.waiting():
            return  # writes fail now: the catch-up after the back-off rescans every root anyway
        previous = self.publisher.state
        self.publisher.set_state(State.RECONCILING)
        try:
            self._compare(root)
        finally:
            self.publisher.set_state(State.IDLE if previous in (State.STARTING, State.RECONCILING, State.IDLE)
                                     else previous)

    def folder(self, root: str, under: bytes) -> None:
        """One folder of a root compared with the catalog (a recheck after a rename storm)."""
        self._compare(root, under)

    def _compare(self, root: str, under: bytes = b"", quiet: bool = False) -> None:
        try:
            done = self.reconciler.reconcile(root, under, quiet=quiet)
            if done.adopted is not None:
                self.reporter.alert(f"{root} holds the photos of {done.adopted}: its {done.adopted_rows} "
                                    "catalog rows were relocated there, no image was read")
                self.roots.sync()
        except OSError as exc:
            logger.error("cannot scan %s: %s; treating it as offline", root, exc.strerror)
            self.roots.mark_offline(root, f"cannot be read: {exc.strerror}")
            self.publisher.refresh_degraded()
