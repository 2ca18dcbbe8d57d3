"""The indexer thread's loop, which owns every catalog write and every index add. One turn (`step`) reads top
to bottom: events in (planned by the pure rules of events.py), files settled, what is ready read and
committed, then the periodic work (roots, commands from other threads, rescans, the read-back, compaction,
an upgrade's switch, idle workers, the checkpoint, the counts). A full disk pauses it, degraded, and a
damaged catalog is replaced; neither ends it."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from chromatica_watch.core.config import Config
from chromatica_watch.core.errors import CatalogDamaged, StorageError
from chromatica_watch.core.fsutil import is_storage_error
from chromatica_watch.daemon.batcher import Batcher
from chromatica_watch.daemon.commands import CommandQueue, DamageReports
from chromatica_watch.daemon.details_pass import DetailsPass
from chromatica_watch.daemon.events import (
    EventKind,
    Forget,
    ForgetFolder,
    FsEvent,
    Offline,
    Ready,
    Recheck,
    Settle,
    Walk,
    plan_events,
)
from chromatica_watch.daemon.guard import StorageGuard
from chromatica_watch.daemon.ingester import STREAM_BATCHES, Ingester
from chromatica_watch.daemon.publisher import StatusPublisher
from chromatica_watch.daemon.rechecks import Rechecks, recheck_quiet
from chromatica_watch.daemon.reconciler import Reconciler
from chromatica_watch.daemon.roots import RootKeeper
from chromatica_watch.daemon.scans import Scans
from chromatica_watch.daemon.status import State, StatusReporter
from chromatica_watch.daemon.upgrades import Upgrades
from chromatica_watch.ingest.pool import PoolManager
from chromatica_watch.storage.store import Store

logger = logging.getLogger(__name__)

ROOT_CHECK_EVERY_S = 2.0
VERIFY_EVERY_S = 24 * 3600.0  # the catalog is read back whole after each start and then daily


class Indexer:
    def __init__(self, cfg: Config, *, clock: Callable[[], float], stop: threading.Event,
                 events: queue.Queue[FsEvent], batcher: Batcher, workers: PoolManager, store: Store,
                 ingester: Ingester, reconciler: Reconciler, scans: Scans, roots: RootKeeper, upgrades: Upgrades,
                 publisher: StatusPublisher, guard: StorageGuard, reporter: StatusReporter,
                 commands: CommandQueue, damage: DamageReports, details: DetailsPass,
                 reload_requested: threading.Event, rechecks: Rechecks) -> None:
        self.cfg = cfg
        self.clock = clock
        self.stop = stop
        self.events = events
        self.batcher = batcher
        self.workers = workers
        self.store = store
        self.ingester = ingester
        self.reconciler = reconciler
        self.scans = scans
        self.roots = roots
        self.upgrades = upgrades
        self.publisher = publisher
        self.guard = guard
        self.reporter = reporter
        self.commands = commands
        self.damage = damage
        self.details = details
        self.reload: Callable[[], None] = lambda: None  # SIGHUP's work, run between turns (set by the daemon)
        self.reload_requested = reload_requested
        self.rechecks = rechecks
        self._next_verify = 0.0  # the first turn after the start reads the catalog back
        self._last_checkpoint_at = 0.0

    def reconfigure(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rechecks.reconfigure(recheck_quiet(cfg))

    # -- the loop --------------------------------------------------------------------------------
    def step(self) -> None:
        self.reporter.beat()
        if (damage := self.damage.take()) is not None:
            self.replace_damaged(damage)
        if self.guard.failing:
            self.paused_step()
            return
        if len(self.batcher):
            self.workers.get(warm=True)  # the workers start while the queued files settle
        now = self.clock()
        self.drain_events(timeout=min(self.batcher.next_deadline(now), self.rechecks.next_deadline(now),
                                      self.cfg.status_interval, 0.2))
        if self.stop.is_set():
            return
        self.index_ready(self.clock())
        self.recheck_folders(self.clock())
        self.periodic(self.clock())

    def paused_step(self) -> None:
        """Writing fails: remember what changes, and try again once the back-off has passed."""
        self.drain_events(timeout=0.2)
        if not self.guard.waiting():
            self.retry_storage()
        self.periodic(self.clock())

    def index_ready(self, now: float) -> None:
        self.batcher.poll(now)
        keys = self.batcher.take_batch(now, limit=STREAM_BATCHES * self.cfg.batch_size)
        if keys:
            self.publisher.set_state(State.INDEXING)
            try:
                self.ingester.ingest_keys(keys)
            except StorageError:
                for key in keys:
                    self.batcher.note(key, now)  # kept queued for when writing works again
                raise
        if not len(self.batcher) and self.publisher.state is State.INDEXING:
            self.publisher.set_state(State.IDLE)  # now, so that status.json shows the batch as soon as committed

    def recheck_folders(self, now: float) -> None:
        """Folders the disk had moved on from when their events were read (a rename storm), compared with
        the catalog once their root is quiet: moves found by name, size and mtime, nothing decoded."""
        for root, folder in self.rechecks.due(now):
            if root in self.cfg.roots and self.roots.is_online(root):
                self.scans.folder(root, folder)

    def periodic(self, now: float) -> None:
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self.reload()
        if now - self.roots.last_check >= ROOT_CHECK_EVERY_S:
            self.check_roots()
        if not self.roots.watcher_healthy():
            logger.error("the filesystem watcher stopped; restarting it and rescanning")
            self.roots.restart_watcher()
            self.scans.all()
        self.commands.run_pending()
        if self.guard.failing:
            self.publisher.refresh_counts(now)
            return  # no rescan, compaction or checkpoint until writing works again
        self.scans.run_due(now)
        if now >= self._next_verify:
            # Read back every block (~1 s per 100k photos): damage where no ordinary read goes (a histogram
            # block) is found now, once after each start and then daily, not by some search months later.
            self._next_verify = now + VERIFY_EVERY_S
            self.store.catalog.verify()
            self.roots.sync()  # and retired roots past their grace period go
        self.maybe_compact()
        self.maybe_finish_upgrade()
        if not len(self.batcher) and not self.ingester.in_flight and not self.upgrades.running:
            self.details.step()  # rows indexed before the detail columns existed, a chunk while idle
        self.workers.stop_if_idle(has_work=bool(len(self.batcher)))
        if self.store.live.dirty and now - self._last_checkpoint_at >= self.cfg.checkpoint_interval:
            self.checkpoint()
        self.publisher.refresh_counts(now)

    def drain_events(self, timeout: float) -> None:
        try:
            first = self.events.get(timeout=max(0.01, timeout))
        except queue.Empty:
            return
        batch = [first]
        while len(batch) < 10_000:
            try:
                batch.append(self.events.get_nowait())
            except queue.Empty:
                break
        if self.guard.failing:
            for ev in batch:  # paused: remember what to index; deletions are found by the catch-up scan
                if ev.kind in (EventKind.CHANGED, EventKind.CLOSED):
                    self.batcher.note((ev.root, ev.path), self.clock())
            return
        self.handle_events(batch)

    def handle_events(self, events: list[FsEvent]) -> None:
        """Gather what the rules need, let `events.plan_events` decide, carry out its plan."""
        plan = plan_events(events, self.reconciler.facts(events))
        now = self.clock()
        for root in {ev.root for ev in events}:
            self.rechecks.touched(root, now)  # a root's rechecks wait until its events calm down
        for action in plan.actions:
            if isinstance(action, Settle):
                self.batcher.note(action.key, now)
            elif isinstance(action, Ready):
                self.batcher.ready_now(action.key, now)
            elif isinstance(action, Forget):
                self.batcher.forget(action.key)
            elif isinstance(action, ForgetFolder):
                self.batcher.forget_prefix(action.root, action.folder)
            elif isinstance(action, Walk):
                self.reconciler.walk_new_folder(action.root, action.folder)
            elif isinstance(action, Offline):
                self.roots.mark_offline(action.root)
                self.publisher.refresh_degraded()
            elif isinstance(action, Recheck):
                self.rechecks.note(action.root, action.folder, now)
        if plan.changes:
            self.ingester.apply(plan.changes)

    # -- the store -------------------------------------------------------------------------------
    def open_store(self) -> None:
        self.scans.scanned = False
        rebuilt, damage = self.store.open()
        if damage:
            self.reporter.alert(damage)
        try:
            self._opened(rebuilt)
        except CatalogDamaged as exc:  # found by the first reads past the open (a block of the roots table)
            self.reporter.alert(self.store.replace_damaged(exc))
            self._opened(False)

    def _opened(self, rebuilt: bool) -> None:
        self.roots.sync()
        if rebuilt:
            self.checkpoint()
        self.publisher.publish_counts()

    def check_roots(self, initial: bool = False) -> None:
        """Roots that went away are offline; those back are compared with the catalog (at the start, the
        first full reconcile does that)."""
        for root in self.roots.check():
            if not initial:
                logger.info("%s is back online: rescanning it", root)
                self.scans.root(root)
        self.publisher.refresh_degraded()

    def guarded(self, work: Callable[[], None]) -> None:
        """Run one piece of work; a full disk degrades the daemon and a damaged catalog is replaced,
        instead of either ending it."""
        try:
            work()
        except StorageError as exc:
            self.storage_failed(str(exc))  # what happened and where: "no space left on device writing ..."
        except CatalogDamaged as exc:
            try:
                self.replace_damaged(exc)
            except StorageError as full:  # no room for the new catalog: retried like any write
                self.storage_failed(str(full))

    def storage_failed(self, reason: str) -> None:
        self.guard.failed(reason)
        self.publisher.refresh_degraded()

    def retry_storage(self) -> None:
        """After a storage error: once the back-off has passed, checkpoint and rescan; both must write."""
        if not self.store.is_open:  # a damaged catalog was set aside but the new one could not be made
            self.open_store()
        if self.store.live.dirty:
            self.checkpoint()
            if self.guard.waiting():
                return  # the checkpoint failed again
        self.scans.all()
        self.guard.recovered()
        self.publisher.refresh_degraded()

    def replace_damaged(self, exc: CatalogDamaged) -> None:
        self.workers.close()
        self.publisher.set_state(State.RECONCILING)  # before the set-aside: no status shows old counts as current
        self.reporter.alert(self.store.replace_damaged(exc))
        self.roots.sync()
        self.publisher.publish_counts()
        self.scans.all()

    def checkpoint(self) -> None:
        try:
            self.store.checkpoint()
        except OSError as exc:
            if not is_storage_error(exc):
                raise
            self.storage_failed(f"cannot save the live index in {self.cfg.index_dir}: {exc.strerror}")
            return
        self.reporter.update(last_checkpoint=time.time())
        self._last_checkpoint_at = self.clock()

    def maybe_compact(self) -> None:
        if self.store.compact_if_needed(self.cfg.tombstone_rebuild_ratio):
            self.checkpoint()

    def maybe_finish_upgrade(self) -> None:
        if not self.upgrades.running or not self.scans.scanned or len(self.batcher) or self.ingester.in_flight:
            return
        if not self.roots.all_online():
            return  # an offline root's photos cannot be indexed again yet: the old index keeps them
        index_dir = Path(self.cfg.index_dir)
        self.checkpoint()
        if self.guard.failing:
            return  # not saved: tried again once writing works
        self.upgrades.switch(index_dir)
        self.open_store()
        self.scans.scanned = True  # the index just switched in was compared with every folder
        self.upgrades.announce_done(index_dir)
        self.publisher.publish_counts(write=True)
