"""The one place that builds the daemon: every part made once, handed what it works with, and wired."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from chromatica_watch import __version__
from chromatica_watch.colour import histogram
from chromatica_watch.core.config import Config
from chromatica_watch.daemon.batcher import Batcher
from chromatica_watch.daemon.commands import CommandQueue, DamageReports
from chromatica_watch.daemon.daemon import Daemon, Parts
from chromatica_watch.daemon.details_pass import DetailsPass
from chromatica_watch.daemon.events import FsEvent
from chromatica_watch.daemon.guard import StorageGuard
from chromatica_watch.daemon.indexer import Indexer
from chromatica_watch.daemon.ingester import Ingester
from chromatica_watch.daemon.keywords import KeywordWriter
from chromatica_watch.daemon.logs import configure_logging
from chromatica_watch.daemon.publisher import StatusPublisher
from chromatica_watch.daemon.read_cache import ReadCache
from chromatica_watch.daemon.read_side import ReadSide
from chromatica_watch.daemon.rechecks import Rechecks, recheck_quiet
from chromatica_watch.daemon.reconciler import Reconciler
from chromatica_watch.daemon.requests import Requests
from chromatica_watch.daemon.roots import RootKeeper
from chromatica_watch.daemon.scans import Scans
from chromatica_watch.daemon.status import RebuildReport, StatusReporter
from chromatica_watch.daemon.systemd import SystemdNotifier
from chromatica_watch.daemon.upgrades import Upgrades
from chromatica_watch.daemon.watcher import Watcher
from chromatica_watch.imaging.thumbnails import Thumbnailer
from chromatica_watch.ingest.pool import PoolManager, PoolSettings
from chromatica_watch.serving.socket_server import SearchServer, Service
from chromatica_watch.serving.web import WebApp, WebService, load_token
from chromatica_watch.serving.web_server import WebServer
from chromatica_watch.storage.store import Store

Clock = Callable[[], float]
POOL_IDLE_S = 30.0  # worker processes are stopped after this long without work (idle RSS)


def compose(cfg: Config, config_path: Path | None = None, *, clock: Clock = time.monotonic,
            notifier: SystemdNotifier | None = None, config_named: bool = True) -> Daemon:
    notifier = notifier or SystemdNotifier()
    reporter = StatusReporter(
        cfg.status_path, notifier, interval=cfg.status_interval, stall_timeout=cfg.stall_timeout,
        base={"version": __version__, "index_dir": cfg.index_dir, "socket": str(cfg.socket_path),
              "config_file": str(config_path.absolute()) if config_path is not None else None,
              "thumbnail_cache": None}, clock=clock)
    events: queue.Queue[FsEvent] = queue.Queue()
    stop = threading.Event()
    # How histograms are made is fixed at startup, like the fingerprint: a reload does not change it.
    thumbnailer = Thumbnailer(Path(cfg.thumbnail_dir), cfg.max_pixels)
    settings = PoolSettings(cfg.worker_count, cfg.max_dimension, cfg.max_pixels, cfg.file_timeout,
                            thumbnails=thumbnailer if cfg.web and cfg.thumbnails_while_indexing else None)

    def make_watcher(current: Config) -> Watcher:
        return Watcher(current.excludes, events, use_polling=current.watcher == "polling")

    def make_server(service: Service) -> SearchServer:
        return SearchServer(service, cfg.socket_path, cfg.tcp_port)

    def make_web(service: WebService) -> WebServer:
        app = WebApp(service, thumbnailer, cfg.max_dimension, cfg.max_pixels, int(cfg.web_max_upload_mb * 2**20))
        return WebServer(app, load_token(Path(cfg.state_dir)), cfg.web_host, cfg.web_port)

    store = Store(Path(cfg.index_dir), histogram.fingerprint(cfg.max_dimension), progress=RebuildReport(reporter),
                  pca_from=cfg.compact_layout_from)
    batcher = Batcher(cfg.settle_seconds, cfg.batch_size, cfg.max_batch_delay)
    workers = PoolManager(settings, clock, idle_after=POOL_IDLE_S)
    reads = ReadCache()  # counts, roots and failures: read again only after a write
    roots = RootKeeper(cfg, store, batcher, reads, make_watcher, clock)
    guard = StorageGuard(clock, stop, reporter.beat)
    upgrades = Upgrades(store, reporter)
    publisher = StatusPublisher(reporter, store, roots, guard, reads, upgrades.progress, clock, cfg.status_interval)
    reload = threading.Event()  # SIGHUP: set by the signal handler, applied by the indexer between batches
    ingester = Ingester(store, workers, batcher, reporter, publisher, stop, clock, cfg.batch_size, reload)
    # the ingester publishes after each commit, and the publisher counts what the ingester holds
    publisher.queued = lambda: len(batcher) + ingester.in_flight
    # a thumbnail cache that cannot be written (the web app's writes, the workers'): a note in status while it lasts
    thumbnailer.health.on_change = lambda note: reporter.update(thumbnail_cache=note)
    ingester.thumbnails_written = thumbnailer.health.noted
    rechecks = Rechecks(recheck_quiet(cfg))
    reconciler = Reconciler(store, batcher, ingester, roots, clock, stop.is_set, cfg.excludes, cfg.settle_seconds,
                            rechecks)
    scans = Scans(cfg, reconciler, roots, publisher, guard, reporter, clock, stop)
    commands = CommandQueue()
    damage = DamageReports()
    indexer = Indexer(cfg, clock=clock, stop=stop, events=events, batcher=batcher, workers=workers, store=store,
                      ingester=ingester, reconciler=reconciler, scans=scans, roots=roots, upgrades=upgrades,
                      publisher=publisher, guard=guard, reporter=reporter, commands=commands, damage=damage,
                      details=DetailsPass(store, reporter), reload_requested=reload, rechecks=rechecks)
    requests = Requests(cfg, store, batcher, roots, scans, indexer, publisher, clock)
    # colour keywords in sidecars: as photos are indexed (keywords = "xmp"), and on request
    keywords = KeywordWriter(cfg, store, commands, ingester.apply, lambda: roots.cfg.roots)
    ingester.indexed = keywords.indexed
    read_side = ReadSide(store, upgrades, roots, reporter, commands, requests, damage, reads, cfg.search_candidates,
                         keywords=keywords)
    return Daemon(cfg, config_path, Parts(
        stop=stop, notifier=notifier, reporter=reporter, store=store, batcher=batcher, workers=workers, roots=roots,
        upgrades=upgrades, publisher=publisher, guard=guard, ingester=ingester, reconciler=reconciler, scans=scans,
        commands=commands, read_side=read_side, indexer=indexer, requests=requests, make_server=make_server,
        make_web=make_web, keywords=keywords), config_named=config_named)


def run(cfg: Config, config_path: Path | None = None, config_named: bool = True) -> int:
    """Run the daemon; `config_named`: `config_path` was named (--config), not found by the rule."""
    configure_logging(cfg)
    daemon = compose(cfg, config_path, config_named=config_named)
    daemon.install_signal_handlers()
    return daemon.run()
