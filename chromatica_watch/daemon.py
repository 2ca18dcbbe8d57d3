"""The daemon: wires everything together and runs the indexer loop.

One indexer thread (the caller of `run`) owns every catalog write and every index add. Watchdog
threads only put events on a queue; socket threads only read (searches take the index lock). Signals
set flags that the loop checks: SIGTERM/SIGINT stop, SIGHUP reloads the config.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import random
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from . import __version__, histogram
from . import config as config_mod
from .batcher import Batcher, Key
from .catalog import Catalog, Changes, Failure, LiveFile, Move
from .config import Config
from .errors import ConfigError, IndexDirError
from .index import LiveIndex, rebuild
from .indexdir import ensure_writable, open_live_index
from .ingest import IngestPool, Task
from .pipeline import Committer, Outcome, Replaced, Vanished, absolute_key, ingest_tasks, make_tasks
from .reconcile import diff
from .scan import DiskFile, ScanProblem, display_path, scan
from .searcher import Result, Searcher
from .server import SearchServer
from .service import SystemdNotifier
from .status import write_status
from .watcher import FsEvent, Watcher

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
RECENT_FAILURES = 20
ROOT_CHECK_EVERY_S = 2.0
SCAN_FALLBACK_INTERVAL_S = 10.0
STREAM_BATCHES = 4  # ready files taken at once, in batches: workers keep busy while a batch commits
STREAM_CHUNK = 2  # files per worker task when streaming: no worker idles long at the end of a take
POOL_IDLE_S = 30.0  # worker processes are stopped after this long without work (idle RSS)


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
        rotating = logging.handlers.RotatingFileHandler(cfg.log_path, maxBytes=cfg.log_max_bytes,
                                                        backupCount=cfg.log_backups, encoding="utf-8")
        rotating.setFormatter(fmt)
        root.addHandler(rotating)
    except OSError as exc:
        logger.warning("no log file (%s): logging to stderr only", exc)


@dataclass
class Stats:
    started_at: float = field(default_factory=time.time)
    indexed_recent: deque[tuple[float, int]] = field(default_factory=deque)
    recent_failures: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_FAILURES))
    last_checkpoint: float | None = None
    last_full_scan: float | None = None
    degraded_reason: str | None = None

    def note_indexed(self, n: int, now: float) -> None:
        if n:
            self.indexed_recent.append((now, n))
        while self.indexed_recent and now - self.indexed_recent[0][0] > 60:
            self.indexed_recent.popleft()

    def rate(self, now: float) -> float:
        self.note_indexed(0, now)
        if not self.indexed_recent:
            return 0.0
        span = max(1.0, now - self.indexed_recent[0][0])
        return sum(n for _, n in self.indexed_recent) / span


class Daemon:
    def __init__(self, cfg: Config, config_path: Path | None = None, clock: Clock = time.monotonic,
                 notifier: SystemdNotifier | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.clock = clock
        self.notifier = notifier or SystemdNotifier()
        self.fingerprint = histogram.fingerprint(cfg.max_dimension)
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.events: queue.Queue[FsEvent] = queue.Queue()
        self.commands: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self.state = "starting"
        self.stats = Stats()
        self.online: dict[str, bool] = {}
        self.index_lock = threading.Lock()  # guards swapping self.live (rebuilds)
        self.catalog: Catalog
        self.live: LiveIndex
        self.pool: IngestPool | None = None  # started when files are queued, stopped when idle
        # Fixed at startup like the fingerprint: a reload must not change how histograms are made.
        self._pool_args = (cfg.worker_count, cfg.max_dimension, cfg.max_pixels)
        self._pool_used_at = 0.0
        self.watcher: Watcher
        self.batcher = Batcher(cfg.settle_seconds, cfg.batch_size, cfg.max_batch_delay)
        self.in_flight = 0
        self._last_status = 0.0
        self._next_rescan = 0.0
        self._last_root_check = 0.0
        self._last_checkpoint_at = 0.0
        self._server: Any = None
        self._catalog_open = False
        self._counts: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        index_dir = Path(self.cfg.index_dir)
        ensure_writable(index_dir)
        for d in (self.cfg.state_dir, self.cfg.runtime_dir):
            try:
                Path(d).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise IndexDirError(f"cannot create {d}: {exc.strerror}") from exc
        self.catalog = Catalog.open(index_dir, self.fingerprint)
        self._catalog_open = True
        self.live, recovery = open_live_index(index_dir, self.catalog, self.fingerprint)
        if recovery.rebuilt_reason:
            self.checkpoint()
        self.watcher = Watcher(self.cfg.excludes, self.events, use_polling=self.cfg.watcher == "polling")
        self.watcher.start()

    def close(self) -> None:
        self.set_state("stopping")
        self.notifier.stopping()
        if self._server is not None:
            self._server.stop()
        self.watcher.stop()
        if self.pool is not None:
            self.pool.close(cancel=True)
        if self.live.dirty:  # an unchanged index is already on disk: do not rewrite and fsync it all
            self.checkpoint()
        self.write_status(force=True)  # last counts, while the catalog is open
        self.catalog.close()
        self._catalog_open = False
        self.set_state("stopped")

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
        self.write_status(force=True)
        self.open()
        try:
            self.start_server()
            self.check_roots(initial=True)
            self.reconcile_all()
            self.schedule_rescan()
            self.set_state("idle")
            self.notifier.ready()
            logger.info("watching %s; %d images indexed", ", ".join(self.cfg.roots),
                        self.catalog.counts()["live"])
            while not self.stop_event.is_set():
                self.step()
        finally:
            self.close()
        return 0

    def start_server(self) -> None:
        self._server = SearchServer(self)
        self._server.start()

    # -- the loop --------------------------------------------------------------------------------
    def step(self) -> None:
        if self.pool is None and len(self.batcher):
            self.ingest_pool(warm=True)  # the workers start while the queued files settle
        now = self.clock()
        self.drain_events(timeout=min(self.batcher.next_deadline(now), self.cfg.status_interval, 0.2))
        if self.stop_event.is_set():
            return
        now = self.clock()
        self.batcher.poll(now)
        keys = self.batcher.take_batch(now, limit=STREAM_BATCHES * self.cfg.batch_size)
        if keys:
            self.set_state("indexing")
            self.index_keys(keys)
        if not len(self.batcher) and self.state == "indexing":
            self.set_state("idle")  # now, so that status.json shows the batch as soon as it is committed
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
        if now >= self._next_rescan:
            self.reconcile_all()
            self.schedule_rescan()
        self.maybe_compact()
        if self.pool is not None and not len(self.batcher) and now - self._pool_used_at >= POOL_IDLE_S:
            logger.debug("no work for %.0f s: stopping the worker processes", POOL_IDLE_S)
            self.pool.close()
            self.pool = None
        if self.live.dirty and now - self._last_checkpoint_at >= self.cfg.checkpoint_interval:
            self.checkpoint()
        self.write_status()

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
        self.handle_events(batch)

    def handle_events(self, events: list[FsEvent]) -> None:
        now = self.clock()
        tombstones: list[int] = []
        moves: list[Move] = []
        for ev in events:
            if ev.kind == "changed":
                self.batcher.note((ev.root, ev.path), now)
            elif ev.kind == "deleted":
                self.batcher.forget((ev.root, ev.path))
                tombstones += self._live_ids(ev.root, [ev.path])
            elif ev.kind == "moved":
                self._handle_move(ev, now, moves, tombstones)
            elif ev.kind == "dir_deleted":
                self._handle_dir_gone(ev.root, ev.path, tombstones)
            elif ev.kind == "dir_moved":
                self._handle_dir_gone(ev.root, ev.path, tombstones, moved_to=ev.dest, moves=moves)
                self._note_subtree(ev.root, ev.dest, now)
            elif ev.kind == "dir_changed":
                self._note_subtree(ev.root, ev.path, now)
        if tombstones or moves:
            moved_ids = {m.image_id for m in moves}
            self.commit_direct(Changes(tombstoned=sorted(set(tombstones) - moved_ids), moved=moves))

    def _live_ids(self, root: str, paths: list[bytes]) -> list[int]:
        found = self.catalog.lookup([(root, p) for p in paths])
        return [f.image_id for f in found.values()]

    def _handle_move(self, ev: FsEvent, now: float, moves: list[Move], tombstones: list[int]) -> None:
        src, dest = (ev.root, ev.path), (ev.root, ev.dest)
        self.batcher.forget(src)
        found = self.catalog.lookup([src, dest])
        old = found.get(src)
        st = _stat(dest)
        if old is None or st is None:
            if st is not None and not _same_stat(found.get(dest), st):
                self.batcher.note(dest, now)
            return
        if (already := found.get(dest)) is not None:
            tombstones.append(already.image_id)  # replaced by the moved file
        moves.append(Move(old.image_id, ev.root, ev.dest, st.size, st.mtime_ns))

    def _handle_dir_gone(self, root: str, prefix: bytes, tombstones: list[int], moved_to: bytes | None = None,
                         moves: list[Move] | None = None) -> None:
        if not os.path.isdir(root):
            self.mark_offline(root)  # an unmounted drive is offline, not deleted
            return
        self.batcher.forget_prefix(root, prefix)
        rows = self.catalog.live_under(root, prefix)
        if moved_to is None or moves is None:
            tombstones += [f.image_id for f in rows.values()]
            return
        for path, f in rows.items():
            new_path = moved_to + path[len(prefix):]
            st = _stat((root, new_path))
            if st is None:
                tombstones.append(f.image_id)
            else:
                moves.append(Move(f.image_id, root, new_path, st.size, st.mtime_ns))

    def _note_subtree(self, root: str, rel: bytes, now: float) -> None:
        base = os.path.join(root, os.fsdecode(rel))
        try:
            files, _ = scan(base, self.cfg.excludes)
        except OSError:
            return
        keys = [(root, rel + b"/" + p) for p in files]
        known = self.catalog.lookup(keys)
        for key, (p, f) in zip(keys, files.items(), strict=True):
            del p
            if not _same_stat(known.get(key), f):
                self.batcher.note(key, now)

    # -- indexing --------------------------------------------------------------------------------
    def index_keys(self, keys: list[Key]) -> None:
        known = self.catalog.lookup(keys)
        replaced = {k: Replaced(f.image_id, f.content_hash) for k, f in known.items()}
        tasks = [Task(root, path, frozenset({replaced[(root, path)].content_hash})
                      if (root, path) in replaced else frozenset()) for root, path in keys]
        self.in_flight = len(tasks)
        try:
            if len(tasks) > self.cfg.batch_size:
                # Streamed, one commit per batch_size results: the workers keep busy while a batch commits.
                ingest_tasks(self.ingest_pool(), tasks, self.committer(), replaced, Vanished(),
                             self.cfg.batch_size, chunk_size=STREAM_CHUNK, should_stop=self.stop_event.is_set,
                             on_batch=self.after_commit)
                return
            results = self.ingest_pool().process(tasks, should_stop=self.stop_event.is_set)  # over all workers
        finally:
            self.in_flight = 0
            self._pool_used_at = self.clock()
        self.after_commit(self.committer().commit(results, replaced, Vanished()))

    def ingest_pool(self, warm: bool = False) -> IngestPool:
        """The worker pool, started on demand (and stopped after POOL_IDLE_S without work, so that an
        idle daemon holds no worker processes). `warm` starts the processes now, without waiting."""
        if self.pool is None:
            self.pool = IngestPool(*self._pool_args)
            if warm:
                self.pool.start()
        self._pool_used_at = self.clock()
        return self.pool

    def committer(self) -> Committer:
        return Committer(self.catalog, self.live)

    def commit_direct(self, changes: Changes) -> None:
        self.catalog.apply(changes)
        if changes.tombstoned:
            self.live.mark_deleted(changes.tombstoned)

    def after_commit(self, outcome: Outcome) -> None:
        now = self.clock()
        self.stats.note_indexed(outcome.added, now)
        for f in outcome.failed:
            self.stats.recent_failures.append({"path": display_path(absolute_key((f.root, f.path))),
                                               "reason": f.reason, "at": time.time()})
        for u in outcome.unstable:
            self.batcher.note((u.task.root, u.task.path), now)  # changed while read: settle again
        self.write_status()  # rate-limited; also the systemd watchdog ping during long reconciles

    # -- reconciling -----------------------------------------------------------------------------
    def reconcile_all(self) -> None:
        for root in self.cfg.roots:
            if self.stop_event.is_set():
                break
            if self.online.get(root):
                self.reconcile(root)
        self.stats.last_full_scan = time.time()

    def reconcile(self, root: str) -> None:
        previous = self.state
        self.set_state("reconciling")
        try:
            self._reconcile(root)
        finally:
            self.set_state("idle" if previous in ("starting", "reconciling", "idle") else previous)

    def _reconcile(self, root: str) -> None:
        started = time.monotonic()
        try:
            disk, problems = scan(root, self.cfg.excludes)
        except OSError as exc:
            logger.error("cannot scan %s: %s; treating it as offline", root, exc.strerror)
            self.mark_offline(root)
            return
        known = self.catalog.live_files(root)
        failures = {p: f for (_, p), f in self.catalog.failed_files(root).items()}
        delta = diff(disk, known, failures, time.time_ns())
        stored = self.catalog.rows([i for _, i in delta.vanished + delta.changed + delta.racy])
        replaced = {(root, p): Replaced(i, stored[i].content_hash) for p, i in delta.changed + delta.racy}
        vanished = Vanished()
        for p, i in delta.vanished:
            vanished.add(stored[i].content_hash, i, (root, p))
        settle_ns = int(self.cfg.settle_seconds * 1e9)
        now_ns, now = time.time_ns(), self.clock()
        settled = []
        for p in delta.to_ingest:
            if now_ns - disk[p].mtime_ns < settle_ns:
                self.batcher.note((root, p), now)  # still being written, perhaps: let it settle
            else:
                settled.append(p)
        tasks = make_tasks(root, settled, replaced, vanished)
        if tasks:
            logger.info("%s: %d files to read (%d new, %d changed), %d gone", root, len(tasks), len(delta.new),
                        len(delta.changed), len(delta.vanished))
        outcome = Outcome()
        if tasks:
            outcome = ingest_tasks(self.ingest_pool(), tasks, self.committer(), replaced, vanished,
                                   self.cfg.batch_size, should_stop=self.stop_event.is_set,
                                   on_batch=self.after_commit)
            self._pool_used_at = self.clock()
        if not self.stop_event.is_set():
            self.commit_direct(Changes(tombstoned=vanished.remaining_ids()))
        self.record_scan_problems(root, problems, failures)
        logger.info("%s: reconciled %d files in %.2f s (%d unchanged, %d read, %d gone)", root, len(disk),
                    time.monotonic() - started, delta.unchanged, len(tasks), outcome.tombstoned)

    def record_scan_problems(self, root: str, problems: list[ScanProblem], known: dict[bytes, Failure]) -> None:
        new = [Failure(root, p.path, 0, 0, p.reason) for p in problems
               if p.path not in known or known[p.path].reason != p.reason]
        if new:
            for f in new:
                logger.warning("cannot index %s: %s", display_path(absolute_key((root, f.path))), f.reason)
            self.catalog.apply(Changes(failed=new))

    # -- requests from other threads (the socket server) -----------------------------------------
    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn` on the indexer thread (which owns catalog writes); the future holds its result."""
        future: Future[Any] = Future()
        self.commands.put((fn, future))
        return future

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
        return len(failures)

    # -- roots -----------------------------------------------------------------------------------
    def check_roots(self, initial: bool = False) -> None:
        self._last_root_check = self.clock()
        for root in self.cfg.roots:
            is_online = os.path.isdir(root)
            was_online = self.online.get(root)
            if is_online and not was_online:
                self.online[root] = True
                self.watcher.watch(root)
                if not initial:
                    logger.info("%s is back online: rescanning it", root)
                    self.reconcile(root)
            elif not is_online and was_online is not False:
                self.mark_offline(root)

    def mark_offline(self, root: str) -> None:
        if self.online.get(root) is not False:
            logger.warning("%s is offline (missing or unmounted): keeping its images in the index", root)
        self.online[root] = False
        self.watcher.unwatch(root)
        self.batcher.forget_root(root)

    def restart_watcher(self) -> None:
        self.watcher.stop()
        self.watcher = Watcher(self.cfg.excludes, self.events, use_polling=self.cfg.watcher == "polling")
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
        fixed = [k for k in ("index_dir", "state_dir", "runtime_dir", "max_dimension", "workers")
                 if getattr(new, k) != getattr(self.cfg, k)]
        if fixed:
            logger.warning("config reload: %s only take effect after a restart", ", ".join(fixed))
        logger.info("config reloaded from %s", self.config_path or "defaults")
        old_roots = set(self.cfg.roots)
        self.cfg = new
        self.batcher.settle_seconds = new.settle_seconds
        self.batcher.batch_size = new.batch_size
        self.batcher.max_batch_delay = new.max_batch_delay
        for root in old_roots - set(new.roots):
            self.watcher.unwatch(root)
            self.online.pop(root, None)
        self.restart_watcher()
        self.check_roots()
        self.schedule_rescan()

    # -- index maintenance -----------------------------------------------------------------------
    def maybe_compact(self) -> None:
        total = self.live.ntotal
        if total and self.live.tombstone_count / total > self.cfg.tombstone_rebuild_ratio:
            logger.info("rebuilding the live index: %d of %d vectors are tombstoned",
                        self.live.tombstone_count, total)
            fresh = rebuild(self.catalog.iter_histograms())
            with self.index_lock:
                self.live = fresh
            self.checkpoint()

    def search(self, query: np.ndarray, k: int) -> list[Result]:
        """Answer a query on a socket thread. The live index's own lock keeps this search and the
        indexer's adds apart (HNSW add during a search crashes); each holds it for milliseconds."""
        with self.index_lock:
            live = self.live
        return Searcher(self.catalog, live, self.cfg.search_candidates).search(query, k)

    def checkpoint(self) -> None:
        try:
            self.live.checkpoint(Path(self.cfg.index_dir), self.fingerprint)
        except OSError as exc:
            self.stats.degraded_reason = f"checkpoint failed: {exc}"
            logger.error("checkpoint failed: %s", exc)
            return
        self.stats.last_checkpoint = time.time()
        self._last_checkpoint_at = self.clock()

    # -- status ----------------------------------------------------------------------------------
    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.write_status(force=True)

    def status(self) -> dict[str, Any]:
        now = self.clock()
        if self._catalog_open:
            self._counts = self.catalog.counts()
        counts = self._counts
        queued = len(self.batcher) + self.in_flight
        rate = self.stats.rate(now)
        state = self.state
        if self.stats.degraded_reason and state in ("idle", "indexing"):
            state = "degraded"
        return {
            "state": state,
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.stats.started_at,
            "updated_at": time.time(),
            "roots": [{"path": r, "online": bool(self.online.get(r))} for r in self.cfg.roots],
            "index_dir": self.cfg.index_dir,
            "counts": {"indexed": counts.get("live", 0), "queued": queued, "failed": counts.get("failed", 0),
                       "tombstoned": counts.get("tombstoned", 0)},
            "throughput_per_s": round(rate, 2),
            "eta_seconds": round(queued / rate, 1) if rate > 0 and queued else None,
            "last_checkpoint": self.stats.last_checkpoint,
            "watcher_mode": dict(self.watcher.modes) if hasattr(self, "watcher") else {},
            "last_full_scan": self.stats.last_full_scan,
            "recent_failures": list(self.stats.recent_failures),
            "degraded_reason": self.stats.degraded_reason,
            "socket": str(self.cfg.socket_path),
        }

    def write_status(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_status < self.cfg.status_interval:
            return
        self._last_status = now
        status = self.status()
        try:
            write_status(self.cfg.status_path, status)
        except OSError as exc:
            logger.warning("cannot write %s: %s", self.cfg.status_path, exc)
        self.notifier.status(f"{status['state']}: {status['counts']['indexed']} indexed, "
                             f"{status['counts']['queued']} queued")
        self.notifier.watchdog()


def _stat(key: Key) -> DiskFile | None:
    try:
        st = os.stat(absolute_key(key))
    except OSError:
        return None
    return DiskFile(st.st_size, st.st_mtime_ns)


def _same_stat(row: LiveFile | None, f: DiskFile) -> bool:
    return row is not None and (row.size, row.mtime_ns) == (f.size, f.mtime_ns)


def run(cfg: Config, config_path: Path | None = None) -> int:
    configure_logging(cfg)
    daemon = Daemon(cfg, config_path)
    daemon.install_signal_handlers()
    return daemon.run()
