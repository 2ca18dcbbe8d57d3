"""The daemon: wires everything together and runs the indexer loop.

One indexer thread (the caller of `run`) owns every catalog write and every index add. Watchdog
threads only put events on a queue; socket threads only read (searches take the index lock). Signals
set flags that the loop checks: SIGTERM/SIGINT stop, SIGHUP reloads the config.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import queue
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from chromatica_watch import __version__
from chromatica_watch.colour import histogram
from chromatica_watch.core import config as config_mod
from chromatica_watch.core.config import Config
from chromatica_watch.core.errors import (
    CatalogDamaged,
    ChromaticaError,
    ConfigError,
    DaemonAlreadyRunning,
    IndexDirError,
    StorageError,
)
from chromatica_watch.core.fsutil import is_storage_error, lock_directory
from chromatica_watch.core.paths import Key, display_key, display_path
from chromatica_watch.core.records import Changes, Failure, RootRecord, StoredImage
from chromatica_watch.daemon.batcher import Batcher
from chromatica_watch.daemon.events import (
    EventKind,
    Forget,
    ForgetFolder,
    FsEvent,
    Offline,
    Ready,
    Settle,
    Walk,
    plan_events,
)
from chromatica_watch.daemon.read_cache import ReadCache, RecentResults
from chromatica_watch.daemon.reconciler import Reconciler
from chromatica_watch.daemon.status import State, StatusReporter
from chromatica_watch.daemon.systemd import SystemdNotifier
from chromatica_watch.daemon.watcher import Watcher
from chromatica_watch.imaging.formats import missing_format_support
from chromatica_watch.imaging.thumbnails import Thumbnailer
from chromatica_watch.ingest.pipeline import Committer, Outcome, Replaced, Vanished, ingest_tasks, plan_keys
from chromatica_watch.ingest.pool import IngestPool, PoolManager, PoolSettings, Task
from chromatica_watch.ingest.roots import RETIRED, WATCHED, RootView, expired_roots, relocate, root_problem, root_views
from chromatica_watch.search.readonly import open_pair_readonly
from chromatica_watch.search.searcher import Result, Searcher
from chromatica_watch.serving.socket_server import SearchServer, Service, private_dir
from chromatica_watch.serving.web import WebApp, WebServer, WebService, load_token
from chromatica_watch.storage.catalog import Catalog, stored_fingerprint
from chromatica_watch.storage.index import LiveIndex
from chromatica_watch.storage.indexdir import ensure_writable
from chromatica_watch.storage.store import Store
from chromatica_watch.storage.upgrade import abandoned_upgrades, finish_switch, mark_complete, upgrade_dir

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
ROOT_CHECK_EVERY_S = 2.0
SCAN_FALLBACK_INTERVAL_S = 10.0
STREAM_BATCHES = 4  # ready files taken at once, in batches: workers keep busy while a batch commits
STREAM_CHUNK = 2  # files per worker task when streaming: no worker idles long at the end of a take
VERIFY_EVERY_S = 24 * 3600.0  # the catalog is read back whole after each start and then daily
POOL_IDLE_S = 30.0  # worker processes are stopped after this long without work (idle RSS)


class LogFile(logging.handlers.RotatingFileHandler):
    """The rotating log file. A record it cannot write (a full disk) costs one line on stderr (the
    journal) per episode, never logging's own traceback, and the lines after it go to stderr only."""

    _failing = False

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if self._failing and self.stream is not None and not self.stream.closed:
            self._failing = False  # this one was written: the disk has room again

    def handleError(self, record: logging.LogRecord) -> None:
        if not self._failing:
            self._failing = True
            exc = sys.exc_info()[1]
            sys.stderr.write(f"chromatica-watch: cannot write the log file {self.baseFilename} "
                             f"({getattr(exc, 'strerror', None) or exc}); logging to stderr only until it works\n")
        if self.stream is not None:  # drop what is buffered, or every later flush fails again
            with contextlib.suppress(Exception):
                self.stream.close()
            self.stream = None


def configure_logging(cfg: Config) -> None:
    """Only the daemon configures handlers: stderr (the journal under systemd) and a rotating file."""
    root = logging.getLogger()
    root.setLevel(cfg.log_level)
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(stderr)
    try:
        cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
        rotating = LogFile(cfg.log_path, maxBytes=cfg.log_max_bytes, backupCount=cfg.log_backups, encoding="utf-8")
        rotating.setFormatter(fmt)
        root.addHandler(rotating)
    except OSError as exc:
        logger.warning("no log file (%s): logging to stderr only", exc)


class ShuttingDown(Exception):
    """A stop was asked for while the daemon waited to start."""


@dataclass
class Backoff:
    """Capped exponential back-off for retrying writes after a storage error (a full disk)."""

    first: float = 2.0
    cap: float = 300.0
    failures: int = 0
    next_try_at: float = 0.0

    def failed(self, now: float) -> float:
        """Note one more failure at `now`; returns the delay until the next try."""
        self.failures += 1
        delay = min(self.cap, self.first * 2 ** (self.failures - 1))
        self.next_try_at = now + delay
        return delay

    def waiting(self, now: float) -> bool:
        return self.failures > 0 and now < self.next_try_at

    def reset(self) -> None:
        self.failures, self.next_try_at = 0, 0.0


class Daemon:
    """The indexer: one thread that owns every catalog write and index add. Its loop (`step`) drains
    events, settles files, ingests what is ready, then does the periodic work. Built by `compose`,
    which hands it every collaborator."""

    def __init__(self, cfg: Config, config_path: Path | None, *, clock: Clock, notifier: SystemdNotifier,
                 reporter: StatusReporter, batcher: Batcher, workers: PoolManager, store: Store,
                 events: queue.Queue[FsEvent], make_watcher: Callable[[Config], Watcher],
                 make_server: Callable[[Service], SearchServer],
                 make_web: Callable[[WebService], WebServer] | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.clock = clock
        self.notifier = notifier
        self.reporter = reporter
        self.batcher = batcher
        self.workers = workers
        self.store = store
        self.events = events
        self.make_watcher = make_watcher
        self.make_server = make_server
        self.make_web = make_web
        self._web: WebServer | None = None
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.commands: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self._commands_lock = threading.Lock()
        self._taking_commands = True  # until close(): then a command fails at once, never waits forever
        self.online: dict[str, bool] = {}
        self.root_problems: dict[str, str] = {}  # root -> why it is offline
        self.watcher: Watcher
        self.in_flight = 0
        self.storage = Backoff()
        self.storage_problem: str | None = None
        self._locks: list[int] = []
        self._reported_damage: CatalogDamaged | None = None  # found by a socket thread's read
        self._next_rescan = 0.0
        self._next_unwatched_scan = 0.0
        self._next_verify = 0.0  # the first loop turn after the start reads the catalog back
        self._last_root_check = 0.0
        self._last_checkpoint_at = 0.0
        self._counts_at = -float("inf")  # when the catalog's counts were last handed to the reporter
        self.catalog_reads = ReadCache()  # counts, roots and failures: read again only after a write
        self._server: SearchServer | None = None
        self.recent_results = RecentResults()  # where the files of the latest results are, for thumbnails
        # Its one tie back to the daemon is the daemon's own ingest (workers, commits, progress, status).
        self.retired: tuple[str, ...] = ()  # roots the catalog holds that left the config
        # During an upgrade (an index of other histogram settings): the old index, searched read-only.
        self.previous: tuple[Catalog, LiveIndex] | None = None
        self._previous_fingerprint = ""
        self._upgrade_total = 0
        self._scanned = False  # every online root compared with the catalog since the store opened
        self._relocating = threading.Lock()  # one relocate at a time, refused rather than queued
        self.reconciler = Reconciler(store, batcher, self.ingest, clock, self.stop_event.is_set, cfg.excludes,
                                     cfg.settle_seconds, self.relocation_candidates)

    # -- lifecycle -------------------------------------------------------------------------------
    def lock(self) -> None:
        """Refuse a second daemon on the same state or index dir before touching any of its files."""
        for what, d in (("state dir", self.cfg.state_dir), ("index dir", self.cfg.index_dir)):
            try:
                Path(d).mkdir(parents=True, exist_ok=True)
                fd = lock_directory(Path(d))
            except OSError as exc:
                raise IndexDirError(f"cannot use {what} {d}: {exc.strerror}") from exc
            if fd is None:
                raise DaemonAlreadyRunning(f"another chromatica-watch daemon is already running on {d} "
                                           "(see `chromatica-watch status`)")
            self._locks.append(fd)

    def open(self) -> None:
        index_dir = Path(self.cfg.index_dir)
        ensure_writable(index_dir)
        try:
            private_dir(self.cfg.runtime_dir)
        except OSError as exc:
            raise IndexDirError(f"cannot create {self.cfg.runtime_dir}: {exc.strerror}") from exc
        self.prepare_upgrade(index_dir)
        while True:  # a full disk at startup: wait, degraded, instead of exiting into a restart loop
            try:
                self.open_store()
                break
            except StorageError as exc:
                self.storage_failed(str(exc))
                self.wait_for_storage()
        self.watcher = self.make_watcher(self.cfg)
        self.watcher.start()

    def open_store(self) -> None:
        self._scanned = False
        rebuilt, damage = self.store.open()
        if damage:
            self.reporter.alert(damage)
        self.sync_roots()
        if rebuilt:
            self.checkpoint()
        self.publish_counts()

    @property
    def catalog(self) -> Catalog:
        return self.store.catalog

    @property
    def live(self) -> LiveIndex:
        return self.store.live

    def close(self) -> None:
        self.set_state(State.STOPPING)
        self.notifier.stopping()
        self.refuse_commands()
        if self._server is not None:
            self._server.stop()
        if self._web is not None:
            self._web.stop()
        if hasattr(self, "watcher"):
            self.watcher.stop()
        self.workers.close()  # a stop does not wait for a slow or hung file
        if self.store.is_open:
            if self.live.dirty:  # an unchanged index is already on disk: do not rewrite and fsync it all
                self.checkpoint()
            self.publish_counts()
            self.store.close()
        if self.previous is not None:
            self.previous[0].close()

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            logger.info("received %s: shutting down", signal.Signals(signum).name)
            self.stop_event.set()

        def reload(_signum: int, _frame: FrameType | None) -> None:
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def run(self) -> int:
        self.lock()
        self.reporter.start()
        final = State.FAILED
        reason: str | None = "internal error"
        try:
            self.start_server()  # status answers from now on; searches once the index is open
            self.start_web()
            self.open()
            for line in missing_format_support():  # once per start, not once per file
                logger.warning("%s", line)
            self.check_roots(initial=True)
            self.guarded(self.reconcile_all)
            self.schedule_rescan()
            self.set_state(State.IDLE)
            self.notifier.ready()
            logger.info("watching %s; %d images indexed", ", ".join(self.cfg.roots),
                        sum(v.photos for v in self.roots() if v.state != RETIRED))
            while not self.stop_event.is_set():
                self.guarded(self.step)
            final, reason = State.STOPPED, None
        except ShuttingDown:
            final, reason = State.STOPPED, None
        except ChromaticaError as exc:
            reason = str(exc)
            raise
        except Exception as exc:
            reason = f"internal error: {exc}"
            raise
        finally:
            try:
                self.close()
            finally:
                self.reporter.stop(final, reason)
        return 0

    def start_server(self) -> None:
        self._server = self.make_server(self)
        self._server.start()

    def start_web(self) -> None:
        """The web app, if configured: a port in use costs the app (said in the log and status), not the
        daemon."""
        if self.make_web is None or not self.cfg.web:
            return
        web = self.make_web(self)
        try:
            web.start()
        except OSError as exc:
            message = (f"the web app cannot listen on {self.cfg.web_host}:{self.cfg.web_port} "
                       f"({exc.strerror or exc}); set web_port to a free port (or 0 for any)")
            logger.error("%s", message)
            self.reporter.alert(message)
            return
        self._web = web
        self.reporter.update(web_url=web.url)

    # -- errors that the daemon lives through ----------------------------------------------------
    def guarded(self, work: Callable[[], None]) -> None:
        """Run one piece of work; a full disk degrades the daemon and a damaged catalog is replaced,
        instead of either ending it."""
        try:
            work()
        except StorageError as exc:
            self.storage_failed(str(exc))  # what happened and where: "no space left on device writing ..."
        except CatalogDamaged as exc:
            try:
                self.replace_damaged_catalog(exc)
            except StorageError as full:  # no room for the new catalog: retried like any write
                self.storage_failed(str(full))

    def storage_failed(self, reason: str) -> None:
        """Nothing was committed by the failed write; what it carried is found again by the rescan
        that follows recovery (the folder is the truth). Retried with a capped back-off."""
        delay = self.storage.failed(self.clock())
        self.storage_problem = reason
        logger.error("%s; nothing is lost: indexing is paused and retried in %.0f s", reason, delay)
        self.refresh_degraded()

    def wait_for_storage(self) -> None:
        while self.storage.waiting(self.clock()):
            self.reporter.beat()
            if self.stop_event.wait(0.2):
                raise ShuttingDown()

    def retry_storage(self) -> None:
        """After a storage error: once the back-off has passed, checkpoint and rescan; both must write."""
        if not self.store.is_open:  # a damaged catalog was set aside but the new one could not be made
            self.open_store()
        if self.live.dirty:
            self.checkpoint()
            if self.storage.waiting(self.clock()):
                return  # the checkpoint failed again
        self.reconcile_all()
        logger.info("writing works again: indexing resumed and caught up")
        self.storage.reset()
        self.storage_problem = None
        self.refresh_degraded()

    def replace_damaged_catalog(self, exc: CatalogDamaged) -> None:
        self.workers.close()
        self.set_state(State.RECONCILING)  # published before the set-aside: no status shows old counts as current
        self.reporter.alert(self.store.replace_damaged(exc))
        self.sync_roots()
        self.publish_counts()
        self.reconcile_all()

    # -- the loop --------------------------------------------------------------------------------
    def step(self) -> None:
        self.reporter.beat()
        if (damage := self._reported_damage) is not None:
            self._reported_damage = None
            self.replace_damaged_catalog(damage)
        now = self.clock()
        if self.storage.failures:
            self.drain_events(timeout=0.2)
            if not self.storage.waiting(self.clock()):
                self.retry_storage()
            self.periodic(self.clock())
            return
        if len(self.batcher):
            self.workers.get(warm=True)  # the workers start while the queued files settle
        self.drain_events(timeout=min(self.batcher.next_deadline(now), self.cfg.status_interval, 0.2))
        if self.stop_event.is_set():
            return
        now = self.clock()
        self.batcher.poll(now)
        keys = self.batcher.take_batch(now, limit=STREAM_BATCHES * self.cfg.batch_size)
        if keys:
            self.set_state(State.INDEXING)
            try:
                self.index_keys(keys)
            except StorageError:
                for key in keys:
                    self.batcher.note(key, now)  # kept queued for when writing works again
                raise
        if not len(self.batcher) and self.state is State.INDEXING:
            self.set_state(State.IDLE)  # now, so that status.json shows the batch as soon as it is committed
        self.periodic(self.clock())

    def periodic(self, now: float) -> None:
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self.notifier.reloading()
            self.reload()
            self.notifier.ready()
        if now - self._last_root_check >= ROOT_CHECK_EVERY_S:
            self.check_roots()
        if not self.watcher.healthy():
            logger.error("the filesystem watcher stopped; restarting it and rescanning")
            self.restart_watcher()
            self.reconcile_all()
        self.run_commands()
        if self.storage.failures:
            self.refresh_counts(now)
            return  # no rescan, compaction or checkpoint until writing works again
        if now >= self._next_rescan:
            self.reconcile_all()
            self.schedule_rescan()
        elif now >= self._next_unwatched_scan:
            self.scan_unwatched()
        if now >= self._next_verify:
            # Read back every block (~1 s per 100k photos): damage where no ordinary read goes (a histogram
            # block) is found now, once after each start and then daily, not by some search months later.
            self._next_verify = now + VERIFY_EVERY_S
            self.catalog.verify()
            self.sync_roots()  # and retired roots past their grace period go
        self.maybe_compact()
        self.maybe_finish_upgrade()
        self.workers.stop_if_idle(has_work=bool(len(self.batcher)))
        if self.live.dirty and now - self._last_checkpoint_at >= self.cfg.checkpoint_interval:
            self.checkpoint()
        self.refresh_counts(now)

    def schedule_rescan(self) -> None:
        interval = self.cfg.rescan_interval
        if any(m == "scan" for m in self.watcher.modes.values()):
            interval = min(interval, SCAN_FALLBACK_INTERVAL_S)  # no native watch: scans find changes
        jitter = interval * self.cfg.rescan_jitter
        self._next_rescan = self.clock() + interval + random.uniform(-jitter, jitter)

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
        if self.storage.failures:
            for ev in batch:  # paused: remember what to index; deletions are found by the catch-up scan
                if ev.kind in (EventKind.CHANGED, EventKind.CLOSED):
                    self.batcher.note((ev.root, ev.path), self.clock())
            return
        self.handle_events(batch)

    def handle_events(self, events: list[FsEvent]) -> None:
        """Gather what the rules need, let `events.plan_events` decide, carry out its plan."""
        plan = plan_events(events, self.reconciler.facts(events))
        now = self.clock()
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
                self.mark_offline(action.root)
        if plan.changes:
            self.commit_direct(plan.changes)

    # -- indexing --------------------------------------------------------------------------------
    def index_keys(self, keys: list[Key]) -> None:
        """Files the batcher found ready."""
        replaced, tasks = plan_keys(keys, self.catalog.lookup(keys))
        self.ingest(tasks, replaced, Vanished())

    def ingest(self, tasks: list[Task], replaced: dict[Key, Replaced], vanished: Vanished) -> Outcome:
        """The one way files are read and committed, for ready files and for reconciles alike: through
        the workers, one transaction per batch_size results, in task order."""
        pool = self.workers.get()
        # A batch is spread evenly over the workers; more is streamed in small chunks so the workers
        # keep busy while each batch commits and none idles long at the end.
        many = len(tasks) > self.cfg.batch_size
        chunk = STREAM_CHUNK if many else max(1, -(-len(tasks) // pool.workers))
        self.in_flight = len(tasks)
        try:
            return ingest_tasks(pool, tasks, self.committer(), replaced, vanished, self.cfg.batch_size,
                                chunk_size=chunk, should_stop=self.stop_event.is_set, on_result=self._progress,
                                on_batch=self.after_commit)
        finally:
            self.in_flight = 0
            self.workers.used()

    def _progress(self, _done: int) -> None:
        self.reporter.beat()

    @property
    def pool(self) -> IngestPool | None:
        """The running worker pool, if any (none while idle)."""
        return self.workers.current

    def ingest_pool(self, warm: bool = False) -> IngestPool:
        return self.workers.get(warm)

    def committer(self) -> Committer:
        return self.store.committer()

    def commit_direct(self, changes: Changes) -> None:
        self.store.commit(changes)

    def after_commit(self, outcome: Outcome) -> None:
        now = self.clock()
        self.reporter.note_indexed(outcome.added)
        for f in outcome.failed:
            self.reporter.note_failure(display_key((f.root, f.path)), f.reason)
        for u in outcome.unstable:
            self.batcher.note((u.task.root, u.task.path), now)  # changed while read: settle again
        if outcome.added or outcome.moved or outcome.failed:
            logger.info("indexed %d new image(s); %d moved, %d removed, %d could not be indexed",
                        outcome.added, outcome.moved, outcome.tombstoned, len(outcome.failed))
        self.publish_counts()

    # -- reconciling -----------------------------------------------------------------------------
    def reconcile_all(self) -> None:
        for root in self.cfg.roots:
            if self.stop_event.is_set():
                return
            if self.online.get(root):
                self.reconcile(root)
                self.watcher.recheck(root)  # folders made since that could not get a watch
        self._scanned = not self.storage.failures
        self.reporter.update(last_full_scan=time.time())
        self._next_unwatched_scan = self.clock() + SCAN_FALLBACK_INTERVAL_S

    def scan_unwatched(self) -> None:
        """Folders the watcher could not watch (a path too long, no permission, the watch limit) are
        compared with the catalog every SCAN_FALLBACK_INTERVAL_S; the rest of their root stays watched."""
        for root, folders in list(self.watcher.unwatched.items()):
            if self.online.get(root):
                for rel, _reason in folders:
                    self._reconcile(root, rel)
        self._next_unwatched_scan = self.clock() + SCAN_FALLBACK_INTERVAL_S

    def reconcile(self, root: str) -> None:
        if self.storage.waiting(self.clock()):
            return  # writes fail now: the catch-up after the back-off rescans every root anyway
        previous = self.state
        self.set_state(State.RECONCILING)
        try:
            self._reconcile(root)
        finally:
            self.set_state(State.IDLE if previous in (State.STARTING, State.RECONCILING, State.IDLE) else previous)

    def _reconcile(self, root: str, under: bytes = b"") -> None:
        try:
            done = self.reconciler.reconcile(root, under)
            if done.adopted is not None:
                self.reporter.alert(f"{root} holds the photos of {done.adopted}: its {done.adopted_rows} "
                                    "catalog rows were relocated there, no image was read")
                self.sync_roots()
        except OSError as exc:
            logger.error("cannot scan %s: %s; treating it as offline", root, exc.strerror)
            self.mark_offline(root, f"cannot be read: {exc.strerror}")

    # -- requests from other threads (the socket server) -----------------------------------------
    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn` on the indexer thread (which owns catalog writes); the future holds its result."""
        future: Future[Any] = Future()
        with self._commands_lock:
            if self._taking_commands:
                self.commands.put((fn, future))
                return future
        future.set_exception(ChromaticaError("the daemon is stopping; run the command again once it is back"))
        return future

    def refuse_commands(self) -> None:
        """From now on commands fail at once, and those still queued fail now: the socket threads waiting
        for them answer, and the server's stop, which waits for its threads, does not wait on them."""
        with self._commands_lock:
            self._taking_commands = False
        while True:
            try:
                _, future = self.commands.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(ChromaticaError("the daemon stopped before it could do this; run the "
                                                     "command again once it is back"))

    def run_commands(self) -> None:
        while True:
            try:
                fn, future = self.commands.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except Exception as exc:  # the caller gets the error; the daemon keeps running
                future.set_exception(exc)

    def retry_failed(self) -> int:
        """Forget recorded failures and queue their files again."""
        failures = self.catalog.failed_files()
        self.catalog.clear_failures()
        now = self.clock()
        for key in failures:
            self.batcher.note(key, now - self.cfg.settle_seconds)
        self.publish_counts()
        return len(failures)

    def submit_retry_failed(self) -> Future[int]:
        return self.call(self.retry_failed)

    def submit_compact(self) -> Future[dict[str, int]]:
        return self.call(self.compact_now)

    def compact_now(self) -> dict[str, int]:
        """`chromatica-watch compact` while the daemon runs: rebuild without tombstones, checkpoint."""
        before = self.live.ntotal
        if self.store.compact_if_needed(0.0):
            self.checkpoint()
        return {"before": before, "after": self.live.ntotal}

    def failures(self) -> list[Failure]:
        catalog = self.catalog
        with self.noting_damage():
            return self.catalog_reads.get(catalog, "failures", lambda: list(catalog.failed_files().values()))

    def located(self, image_id: int) -> tuple[str, bytes, bool] | None:
        """Where one catalog row's file is, for the web app's thumbnails (on its thread)."""
        catalog, _ = self.search_pair()
        recent = self.recent_results.get((catalog, catalog.generation), image_id)
        if recent is not None:
            return recent
        with self.noting_damage():
            return catalog.describe([image_id]).get(image_id)

    def stored(self, image_id: int) -> StoredImage | None:
        """One catalog row, for the web app (on its thread); None when there is no such id."""
        catalog, _ = self.search_pair()
        with self.noting_damage():
            return catalog.rows([image_id]).get(image_id)

    # -- roots -----------------------------------------------------------------------------------
    def sync_roots(self) -> None:
        """Tell the catalog which roots are configured: one that left the config is retired (hidden from
        searches and counts, its rows kept `retired_root_grace_days` for a relocate), and dropped after."""
        now = time.time()
        catalog = self.catalog
        for root in catalog.sync_roots(self.cfg.roots, now):
            logger.warning("%s is no longer in the config: its photos are hidden from searches and kept %g days "
                           "(retired_root_grace_days) in case it comes back or is relocated", root,
                           self.cfg.retired_root_grace_days)
        records = self.root_records()  # after the sync: retired_at is set exactly on the unconfigured roots
        dropped = expired_roots(records, now, self.cfg.retired_root_grace_days)
        for root in dropped:
            n = self.store.drop_root(root)
            logger.info("%s left the config over %g days ago: its %d photos are removed from the index", root,
                        self.cfg.retired_root_grace_days, n)
        self.retired = tuple(r for r, rec in records.items() if rec.retired_at is not None and r not in dropped)
        self.store.set_searchable(self.cfg.roots)

    def relocation_candidates(self) -> list[str]:
        """Roots whose rows a newly configured folder may take over: retired ones and offline ones."""
        return [*self.retired, *(r for r in self.cfg.roots if self.online.get(r) is False)]

    def roots(self) -> list[RootView]:
        return root_views(self.root_records(), self.cfg.roots, self.root_problems,
                          self.cfg.retired_root_grace_days)

    def root_records(self) -> dict[str, RootRecord]:
        catalog = self.catalog
        return self.catalog_reads.get(catalog, "roots", catalog.root_records)

    def submit_relocate(self, old: str, new: str, dry_run: bool, force: bool) -> Future[dict[str, Any]]:
        """`chromatica-watch relocate` while the daemon runs: on the indexer thread; a second one while
        the first is waiting or running is refused."""
        if not self._relocating.acquire(blocking=False):
            raise ChromaticaError("another relocate is running; try again when it has finished")
        logger.info("relocate of %s to %s requested: it runs when the work in hand is done", old, new)

        def relocate() -> dict[str, Any]:
            try:
                return self.relocate(old, new, dry_run, force)
            finally:
                self._relocating.release()

        try:
            return self.call(relocate)
        except BaseException:
            self._relocating.release()
            raise

    def relocate(self, old: str, new: str, dry_run: bool, force: bool) -> dict[str, Any]:
        report = relocate(self.catalog, old, new, dry_run=dry_run, force=force, rewrite=self.store.relocate)
        report["configured"] = new in self.cfg.roots
        if dry_run:
            return report
        logger.warning("relocated %s to %s: %d rows rewritten, no image read (%s)", old, new, report["moved"],
                       report["summary"])
        self.sync_roots()
        if new in self.cfg.roots:
            self.check_roots()
            if self.online.get(new):
                self.reconcile(new)  # what the sample did not cover: every file compared, the different read
        self.publish_counts(write=True)
        return report

    def check_roots(self, initial: bool = False) -> None:
        self._last_root_check = self.clock()
        for root in self.cfg.roots:
            problem = root_problem(root)
            was_online = self.online.get(root)
            if problem is None and not was_online:
                self.online[root] = True
                self.root_problems.pop(root, None)
                self.watcher.watch(root)
                if not initial:
                    logger.info("%s is back online: rescanning it", root)
                    self.reconcile(root)
                self.refresh_degraded()
            elif problem is not None and (was_online is not False or self.root_problems.get(root) != problem):
                self.mark_offline(root, problem)

    def mark_offline(self, root: str, problem: str | None = None) -> None:
        problem = problem or root_problem(root) or "missing or unmounted"
        if self.online.get(root) is not False or self.root_problems.get(root) != problem:
            logger.warning("%s is offline (%s): keeping its images in the index", root, problem)
        self.online[root] = False
        self.root_problems[root] = problem
        self.watcher.unwatch(root)
        self.batcher.forget_root(root)
        self.refresh_degraded()

    def restart_watcher(self) -> None:
        self.watcher.stop()
        self.watcher = self.make_watcher(self.cfg)
        self.watcher.start()
        for root, is_online in self.online.items():
            if is_online:
                self.watcher.watch(root)

    def reload(self) -> None:
        try:
            new = config_mod.load(self.config_path)
        except ConfigError as exc:
            logger.error("config reload refused, keeping the running config: %s", exc)
            return
        fixed = [k for k in ("index_dir", "state_dir", "runtime_dir", "max_dimension", "workers", "file_timeout",
                             "thumbnail_dir", "thumbnails_while_indexing")
                 if getattr(new, k) != getattr(self.cfg, k)]
        if fixed:
            logger.warning("config reload: %s only take effect after a restart", ", ".join(fixed))
        logger.info("config reloaded from %s", self.config_path or "defaults")
        old_roots = set(self.cfg.roots)
        self.cfg = new
        self.batcher.settle_seconds = new.settle_seconds
        self.batcher.batch_size = new.batch_size
        self.batcher.max_batch_delay = new.max_batch_delay
        self.reconciler.excludes, self.reconciler.settle_seconds = new.excludes, new.settle_seconds
        for root in old_roots - set(new.roots):
            self.watcher.unwatch(root)
            self.online.pop(root, None)
            self.root_problems.pop(root, None)
        self.restart_watcher()
        self.sync_roots()
        self.check_roots()
        self.refresh_degraded()
        self.schedule_rescan()

    # -- upgrading an index of other histogram settings (see upgrade.py) -------------------------
    def prepare_upgrade(self, index_dir: Path) -> None:
        """Finish a switch a kill interrupted; then, if the index was made with other histogram settings,
        keep it for searches (read-only) and index the folders again into an upgrade dir beside it."""
        if finish_switch(index_dir):
            self.reporter.alert("the upgraded index was switched in (the switch had been interrupted)")
        for stale in abandoned_upgrades(index_dir, self.store.fingerprint):
            logger.warning("removing %s: an upgrade towards other histogram settings than this version's", stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            old = stored_fingerprint(index_dir)
        except CatalogDamaged:
            return  # opening the store sets it aside and indexes the folders again
        if old is None or old == self.store.fingerprint:
            return
        self.previous = open_pair_readonly(index_dir, old, self.cfg.roots)
        self._previous_fingerprint = old
        self._upgrade_total = self.previous[0].counts()["live"]
        target = upgrade_dir(index_dir, self.store.fingerprint)
        target.mkdir(exist_ok=True)
        self.store.index_dir = target
        message = (f"the index was made with other histogram settings ({old}; now {self.store.fingerprint}): "
                   f"its {self._upgrade_total} photos are indexed again in the background, and searches use "
                   "the old index until the new one is complete")
        logger.warning("%s", message)
        self.reporter.alert(message)

    def maybe_finish_upgrade(self) -> None:
        if self.previous is None or not self._scanned or len(self.batcher) or self.in_flight:
            return
        if not all(self.online.get(r) for r in self.cfg.roots):
            return  # an offline root's photos cannot be indexed again yet: the old index keeps them
        self.finish_upgrade()

    def finish_upgrade(self) -> None:
        """The new index is complete: commit the switch (COMPLETE), carry it out, reopen."""
        index_dir = Path(self.cfg.index_dir)
        upgrade = self.store.index_dir
        self.checkpoint()
        if self.storage.failures:
            return  # not saved: tried again once writing works
        self.store.close()
        mark_complete(upgrade)
        finish_switch(index_dir)
        # The old catalog's connection goes before the new one opens at the same path (DuckDB keeps one
        # database per path in a process); a search meanwhile hears that the index is opening.
        previous, self.previous = self.previous, None
        if previous is not None:
            previous[0].close()
        self.store.index_dir = index_dir
        self.open_store()
        self._scanned = True  # the index just switched in was compared with every folder
        message = f"upgrade complete: the index of {index_dir} now uses histogram settings {self.store.fingerprint}"
        logger.warning("%s", message)
        self.reporter.alert(message)
        self.publish_counts(write=True)

    # -- index maintenance -----------------------------------------------------------------------
    def maybe_compact(self) -> None:
        if self.store.compact_if_needed(self.cfg.tombstone_rebuild_ratio):
            self.checkpoint()

    def search(self, query: np.ndarray, k: int, group_sidecars: bool = False) -> list[Result]:
        """Answer a query on a socket thread. The live index's own lock keeps this search and the
        indexer's adds apart (HNSW add during a search crashes); each holds it for milliseconds."""
        catalog, live = self.search_pair()
        source = (catalog, catalog.generation)  # read before the search: a write meanwhile voids what it finds
        with self.noting_damage():
            searcher = Searcher(catalog, live, self.cfg.search_candidates,
                                histograms=self.store.histograms_of(catalog))
            results = searcher.search(query, k, group_sidecars=group_sidecars)
        self.recent_results.remember(source, results)
        return results

    def search_pair(self) -> tuple[Catalog, LiveIndex]:
        """What searches read: the index, or during an upgrade the previous one (complete, read-only)."""
        previous = self.previous
        if previous is not None:
            return previous
        if not self.store.is_open:
            raise ChromaticaError("the daemon is starting: its index is not open yet; try again shortly")
        return self.store.pair()

    @contextmanager
    def noting_damage(self) -> Iterator[None]:
        """On a socket thread: a damaged catalog found by a read is handed to the indexer thread, which
        replaces it (the only thread that may); the caller hears what is happening."""
        try:
            yield
        except CatalogDamaged as exc:
            self._reported_damage = exc
            raise ChromaticaError(f"the catalog turned out damaged ({exc.reason}); the daemon is setting it "
                                  "aside and indexing the folder again: try again in a moment") from exc

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

    # -- status ----------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self.reporter.state

    def set_state(self, state: State) -> None:
        if state != self.reporter.state:
            self.reporter.set_state(state)
            self.publish_counts(write=True)

    def refresh_degraded(self) -> None:
        reasons = [f"root {r} is offline ({p})" for r, p in self.root_problems.items() if r in self.cfg.roots]
        if self.storage_problem:
            reasons.insert(0, self.storage_problem)
        self.reporter.set_degraded("; ".join(reasons) or None)

    def refresh_counts(self, now: float) -> None:
        """From the loop: the counts at most every status_interval (a catalog query; the reporter's own
        thread writes status.json on that timer), not on every turn of an idle loop."""
        if now - self._counts_at >= self.cfg.status_interval:
            self.publish_counts()

    def publish_counts(self, write: bool = False) -> None:
        """Hand the reporter what only the indexer thread may read (the catalog's counts); `write` or an
        idle daemon also writes status.json at once (a batch just committed shows without waiting)."""
        self._counts_at = self.clock()
        counts = self.catalog_reads.get(self.catalog, "counts", self.catalog.counts) if self.store.is_open else {}
        roots = self.roots() if self.store.is_open else root_views({}, self.cfg.roots, self.root_problems, 0)
        configured = [v for v in roots if v.state != RETIRED]  # a retired root is never counted as indexed
        self.reporter.update(
            counts={"indexed": sum(v.photos for v in configured), "failed": sum(v.failed for v in configured),
                    "tombstoned": counts.get("tombstoned", 0),
                    "retired": sum(v.photos for v in roots if v.state == RETIRED)},
            queued=len(self.batcher) + self.in_flight,
            roots=[{**v.to_json(), "online": v.state == WATCHED and bool(self.online.get(v.path))} for v in roots],
            watcher_mode=dict(self.watcher.modes) if hasattr(self, "watcher") else {},
            unwatched={root: [{"folder": display_path(rel), "reason": why} for rel, why in folders]
                       for root, folders in self.watcher.unwatched.items()} if hasattr(self, "watcher") else {},
            watch_unchecked=sorted(self.watcher.unchecked) if hasattr(self, "watcher") else [])
        self.reporter.update(upgrade=None if self.previous is None else {
            "from": self._previous_fingerprint, "to": self.store.fingerprint, "total": self._upgrade_total,
            "done": sum(v.photos for v in configured)})
        if write or self.state is State.IDLE:
            self.reporter.publish()  # at once: status.json shows a committed batch without waiting

    def status(self) -> dict[str, Any]:
        return self.reporter.snapshot()


def compose(cfg: Config, config_path: Path | None = None, *, clock: Clock = time.monotonic,
            notifier: SystemdNotifier | None = None) -> Daemon:
    """Build the daemon and everything it works with, wired together: the one place that does."""
    notifier = notifier or SystemdNotifier()
    reporter = StatusReporter(
        cfg.status_path, notifier, interval=cfg.status_interval, stall_timeout=cfg.stall_timeout,
        base={"version": __version__, "index_dir": cfg.index_dir, "socket": str(cfg.socket_path),
              "config_file": str(config_path.absolute()) if config_path is not None else None}, clock=clock)
    events: queue.Queue[FsEvent] = queue.Queue()
    # How histograms are made is fixed at startup, like the fingerprint: a reload does not change it.
    thumbnailer = Thumbnailer(Path(cfg.thumbnail_dir), cfg.max_pixels)
    settings = PoolSettings(cfg.worker_count, cfg.max_dimension, cfg.max_pixels, cfg.file_timeout,
                            thumbnails=thumbnailer if cfg.web and cfg.thumbnails_while_indexing else None)

    def make_watcher(current: Config) -> Watcher:
        return Watcher(current.excludes, events, use_polling=current.watcher == "polling")

    def make_server(service: Service) -> SearchServer:
        return SearchServer(service, cfg.socket_path, cfg.tcp_port)

    def make_web(service: WebService) -> WebServer:
        app = WebApp(service, thumbnailer, cfg.max_dimension,
                     cfg.max_pixels, int(cfg.web_max_upload_mb * 2**20))
        return WebServer(app, load_token(Path(cfg.state_dir)), cfg.web_host, cfg.web_port)

    store = Store(Path(cfg.index_dir), histogram.fingerprint(cfg.max_dimension), progress=reporter.beat,
                  pca_from=cfg.compact_layout_from)
    return Daemon(cfg, config_path, clock=clock, notifier=notifier, reporter=reporter,
                  batcher=Batcher(cfg.settle_seconds, cfg.batch_size, cfg.max_batch_delay),
                  workers=PoolManager(settings, clock, idle_after=POOL_IDLE_S), store=store, events=events,
                  make_watcher=make_watcher, make_server=make_server, make_web=make_web)


def run(cfg: Config, config_path: Path | None = None) -> int:
    configure_logging(cfg)
    daemon = compose(cfg, config_path)
    daemon.install_signal_handlers()
    return daemon.run()
