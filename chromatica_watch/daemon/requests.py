"""What the socket's and the web app's threads ask the daemon to change, carried out on the indexer thread
(they arrive through the command queue): queue the failed files again, compact the live index now,
relocate a root."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from chromatica_watch.core.config import Config
from chromatica_watch.daemon.batcher import Batcher
from chromatica_watch.daemon.indexer import Indexer
from chromatica_watch.daemon.publisher import StatusPublisher
from chromatica_watch.daemon.roots import RootKeeper
from chromatica_watch.daemon.scans import Scans
from chromatica_watch.ingest.roots import relocate
from chromatica_watch.offline.keywords import is_sidecar_record
from chromatica_watch.storage.store import Store

logger = logging.getLogger(__name__)


class Requests:
    def __init__(self, cfg: Config, store: Store, batcher: Batcher, roots: RootKeeper, scans: Scans,
                 indexer: Indexer, publisher: StatusPublisher, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.store = store
        self.batcher = batcher
        self.roots = roots
        self.scans = scans
        self.indexer = indexer
        self.publisher = publisher
        self.clock = clock

    def reconfigure(self, cfg: Config) -> None:
        self.cfg = cfg

    def retry_failed(self) -> int:
        """Forget recorded failures and queue their files again (settled already: read at once). A sidecar's record
        is forgotten only: `keywords write` writes it again."""
        failures = self.store.catalog.failed_files()
        self.store.catalog.clear_failures()
        now = self.clock()
        for key in failures:
            if not is_sidecar_record(key[1]):
                self.batcher.note(key, now - self.cfg.settle_seconds)
        self.publisher.publish_counts()
        return len(failures)

    def compact(self) -> dict[str, int]:
        """`chromatica-watch compact` while the daemon runs: rebuild without tombstones, checkpoint."""
        before = self.store.live.ntotal
        if self.store.compact_if_needed(0.0):
            self.indexer.checkpoint()
        return {"before": before, "after": self.store.live.ntotal}

    def relocate(self, old: str, new: str, dry_run: bool, force: bool) -> dict[str, Any]:
        report = relocate(self.store.catalog, old, new, dry_run=dry_run, force=force, rewrite=self.store.relocate)
        report["configured"] = new in self.cfg.roots
        if dry_run:
            return report
        logger.warning("relocated %s to %s: %d rows rewritten, no image read (%s)", old, new, report["moved"],
                       report["summary"])
        self.roots.sync()
        if new in self.cfg.roots:
            self.indexer.check_roots()
            if self.roots.is_online(new):
                self.scans.root(new)  # what the sample did not cover: every file compared, the different read
        self.publisher.publish_counts(write=True)
        return report
