"""The daemon's life: refuse a second daemon, start the status reporter and the two doors (socket, web app),
open the index (waiting, degraded, on a full disk), compare every root with the catalog, then turn the
indexer's loop until a signal stops it, and close everything in order.

One indexer thread (the caller of `run`) owns every catalog write and every index add. Watchdog threads
only put events on a queue; socket and web threads get the read side only. Signals set flags that the
loop checks: SIGTERM/SIGINT stop, SIGHUP reloads the config.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from chromatica_watch.core import config as config_mod
from chromatica_watch.core.config import Config
from chromatica_watch.core.errors import ChromaticaError, ConfigError, DaemonAlreadyRunning, IndexDirError, StorageError
from chromatica_watch.core.fsutil import lock_directory
from chromatica_watch.daemon.batcher import Batcher
from chromatica_watch.daemon.commands import CommandQueue
from chromatica_watch.daemon.guard import ShuttingDown, StorageGuard
from chromatica_watch.daemon.indexer import Indexer
from chromatica_watch.daemon.ingester import Ingester
from chromatica_watch.daemon.keywords import KeywordWriter
from chromatica_watch.daemon.publisher import StatusPublisher
from chromatica_watch.daemon.read_side import ReadSide
from chromatica_watch.daemon.reconciler import Reconciler
from chromatica_watch.daemon.requests import Requests
from chromatica_watch.daemon.roots import RootKeeper
from chromatica_watch.daemon.scans import Scans
from chromatica_watch.daemon.status import State, StatusReporter
from chromatica_watch.daemon.systemd import SystemdNotifier
from chromatica_watch.daemon.upgrades import Upgrades
from chromatica_watch.imaging.formats import missing_format_support
from chromatica_watch.ingest.pool import PoolManager
from chromatica_watch.ingest.roots import RETIRED
from chromatica_watch.serving.socket_server import SearchServer, Service, private_dir
from chromatica_watch.serving.web import WebService
from chromatica_watch.serving.web_server import WebServer
from chromatica_watch.storage.indexdir import ensure_writable
from chromatica_watch.storage.store import Store

logger = logging.getLogger(__name__)

# Settings that a reload cannot change: they take effect after a restart.
FIXED_AT_START = ("index_dir", "state_dir", "runtime_dir", "max_dimension", "workers", "file_timeout",
                  "thumbnail_dir", "thumbnails_while_indexing")


@dataclass
class Parts:
    """Everything the daemon is made of, built and wired by `compose`."""

    stop: threading.Event  # set by SIGTERM/SIGINT; every loop and wait checks it
    notifier: SystemdNotifier
    reporter: StatusReporter
    store: Store
    batcher: Batcher
    workers: PoolManager
    roots: RootKeeper
    upgrades: Upgrades
    publisher: StatusPublisher
    guard: StorageGuard
    ingester: Ingester
    reconciler: Reconciler
    scans: Scans
    commands: CommandQueue
    read_side: ReadSide
    indexer: Indexer
    requests: Requests
    make_server: Callable[[Service], SearchServer]
    make_web: Callable[[WebService], WebServer] | None
    keywords: KeywordWriter | None = None  # colour keywords in XMP sidecars


class Daemon:
    def __init__(self, cfg: Config, config_path: Path | None, parts: Parts, *, config_named: bool = True) -> None:
        self.cfg = cfg
        self.config_path = config_path
        # Named (--config): a reload reads that file. Else it is found again by the rule (find_config_file):
        # the user's file created since the start is read, and one removed since leaves the built-in defaults.
        self.config_named = config_named
        self.parts = parts
        self.notifier, self.reporter, self.store = parts.notifier, parts.reporter, parts.store
        self.batcher, self.workers, self.roots = parts.batcher, parts.workers, parts.roots
        self.upgrades, self.publisher, self.guard = parts.upgrades, parts.publisher, parts.guard
        self.ingester, self.scans, self.commands = parts.ingester, parts.scans, parts.commands
        self.read_side, self.indexer = parts.read_side, parts.indexer
        self.stop_event = parts.stop
        self.indexer.reload = self.reload
        self._locks: list[int] = []
        self._server: SearchServer | None = None
        self._web: WebServer | None = None

    # -- starting --------------------------------------------------------------------------------
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
            self.indexer.check_roots(initial=True)
            self.indexer.guarded(self.scans.all)
            self.scans.schedule()
            self.publisher.set_state(State.IDLE)
            self.notifier.ready()
            logger.info("watching %s; %d images indexed", ", ".join(self.cfg.roots),
                        sum(v.photos for v in self.roots.views() if v.state != RETIRED))
            while not self.stop_event.is_set():
                self.indexer.guarded(self.indexer.step)
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
        self.upgrades.prepare(index_dir, self.cfg.roots)
        while True:  # a full disk at startup: wait, degraded, instead of exiting into a restart loop
            try:
                self.indexer.open_store()
                break
            except StorageError as exc:
                self.indexer.storage_failed(str(exc))
                self.guard.wait()
        self.roots.start_watching()

    def start_server(self) -> None:
        self._server = self.parts.make_server(self.read_side)
        self._server.start()

    def start_web(self) -> None:
        """The web app, if configured: a port in use costs the app (said in the log and status), not the
        daemon."""
        if self.parts.make_web is None or not self.cfg.web:
            return
        web = self.parts.make_web(self.read_side)
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

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            logger.info("received %s: shutting down", signal.Signals(signum).name)
            self.stop_event.set()

        def reload(_signum: int, _frame: FrameType | None) -> None:
            self.indexer.reload_requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    # -- a new config (SIGHUP), on the indexer thread --------------------------------------------
    def reload(self) -> None:
        self.notifier.reloading()
        path = self.config_path if self.config_named else config_mod.find_config_file()
        try:
            new = config_mod.load(path)
        except ConfigError as exc:
            logger.error("config reload refused, keeping the running config: %s", exc)
        else:
            self.config_path = path.absolute() if path is not None else None
            self.reporter.update(config_file=str(self.config_path) if self.config_path is not None else None)
            self.apply_config(new)
        finally:
            self.notifier.ready()

    def apply_config(self, new: Config) -> None:
        """Hand the new config to every part that follows it; what is fixed at start stays."""
        fixed = [k for k in FIXED_AT_START if getattr(new, k) != getattr(self.cfg, k)]
        if fixed:
            logger.warning("config reload: %s only take effect after a restart", ", ".join(fixed))
        logger.info("config reloaded from %s", self.config_path or "defaults")
        self.cfg = new
        self.batcher.reconfigure(new.settle_seconds, new.batch_size, new.max_batch_delay)
        self.parts.reconciler.reconfigure(new.excludes, new.settle_seconds)
        self.ingester.reconfigure(new.batch_size)
        self.publisher.reconfigure(new.status_interval)
        self.read_side.reconfigure(new.search_candidates)
        self.parts.requests.reconfigure(new)
        if self.parts.keywords is not None:
            self.parts.keywords.reconfigure(new)
        self.indexer.reconfigure(new)
        self.roots.reconfigure(new)
        self.indexer.check_roots()
        self.scans.reconfigure(new)

    # -- stopping --------------------------------------------------------------------------------
    def close(self) -> None:
        self.publisher.set_state(State.STOPPING)
        self.notifier.stopping()
        self.commands.refuse()
        if self._server is not None:
            self._server.stop()
        if self._web is not None:
            self._web.stop()
        self.roots.stop_watching()
        self.workers.close()  # a stop does not wait for a slow or hung file
        if self.parts.keywords is not None:
            self.parts.keywords.stop()  # the sidecars in hand are written (each whole, or not at all)
        if self.store.is_open:
            if self.store.live.dirty:  # an unchanged index is already on disk: do not rewrite and fsync it all
                self.indexer.checkpoint()
            self.publisher.publish_counts()
            self.store.close()
        self.upgrades.close()
