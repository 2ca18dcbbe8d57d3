"""Colour keywords in the daemon: written to each photo's XMP sidecar once it is indexed (`keywords = "xmp"`), on
a thread of their own so that the indexer never waits for a sidecar's fsync, and on request (`chromatica-watch
keywords write|remove`, over the socket), on the socket's thread that asked.

The sidecars are not the daemon's to index: a `.xmp` file (and the hidden temp file it is written through) is
no candidate (`ingest.scan.is_candidate`), so the watcher drops its events and no scan lists it, and the
photo beside it is not read again. What could not be written is a failure record keyed by the sidecar, put in
the catalog by the indexer thread (the only writer) through the command queue; a sidecar written fine again
loses its record.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from chromatica_watch.core.config import Config
from chromatica_watch.core.paths import Key
from chromatica_watch.core.records import Changes, NewImage
from chromatica_watch.daemon.commands import CommandQueue
from chromatica_watch.imaging.sidecars import available
from chromatica_watch.offline.keywords import KeywordReport, apply, is_sidecar_record, places, run
from chromatica_watch.storage.store import Store

logger = logging.getLogger(__name__)


class KeywordWriter:
    def __init__(self, cfg: Config, store: Store, commands: CommandQueue, apply_changes: Callable[[Changes], None],
                 configured_roots: Callable[[], Sequence[str]]) -> None:
        self.store = store
        self.commands = commands
        self.apply_changes = apply_changes  # on the indexer thread: the ingester's door for writes with no read
        self.configured_roots = configured_roots
        self.mode, self.naming = cfg.keywords, cfg.keywords_sidecar
        self._queue: queue.Queue[list[tuple[Key, np.ndarray]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._one_at_a_time = threading.Lock()  # the thread's writes and a request's never touch one sidecar at once
        self.written = 0  # sidecars written or changed since the start (status)
        if self.mode == "xmp" and (why := available()) is not None:
            logger.error("keywords = \"xmp\": %s; no keyword is written", why)

    def reconfigure(self, cfg: Config) -> None:
        self.mode, self.naming = cfg.keywords, cfg.keywords_sidecar

    # -- as photos are indexed (the indexer thread hands them over, the writer's thread writes) ---------
    def indexed(self, images: list[NewImage]) -> None:
        """Called after each commit with its new rows: their keywords are due (only with keywords = "xmp")."""
        if self.mode != "xmp" or not images:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="keywords", daemon=True)
            self._thread.start()
        self._queue.put([((i.root, i.path), i.histogram) for i in images])

    def _loop(self) -> None:
        while (batch := self._queue.get()) is not None:
            try:
                self._write(batch)
            except Exception as exc:  # a bug must not end the thread: the next photos still get their keywords
                logger.error("colour keywords: writing %d sidecar(s) failed: %s", len(batch), exc)
                logger.debug("colour keywords failed", exc_info=exc)  # the trace only at debug level

    def _write(self, batch: list[tuple[Key, np.ndarray]]) -> None:
        if available() is not None:
            return
        report = KeywordReport("write", dry_run=False)
        with self._one_at_a_time:
            for key, hist in batch:
                if not apply(report, key, hist, self.naming):
                    logger.warning("colour keywords: %s; `chromatica-watch keywords write` writes the rest once "
                                   "there is room", report.stopped)
                    break
        self.written += report.written
        logger.debug("colour keywords: %d sidecar(s) written, %d unchanged, %d failed", report.written,
                     report.unchanged, len(report.failed))
        self.record(report)

    # -- on request (a socket thread) --------------------------------------------------------------
    def request(self, action: str, folder: str | None, dry_run: bool) -> dict[str, Any]:
        """`keywords write|remove [--in FOLDER] [--dry-run]`: every indexed photo there, from the catalog."""
        if (why := available()) is not None:
            from chromatica_watch.imaging.sidecars import KeywordsUnavailable

            raise KeywordsUnavailable(why)
        where = places(folder, list(self.configured_roots()))
        with self._one_at_a_time:
            report = run(self.store.catalog, where, action, self.naming, dry_run)
        logger.info("colour keywords %s%s: %d photo(s), %d sidecar(s) written, %d removed, %d deleted, %d failed",
                    action, " (dry run)" if dry_run else "", report.photos, report.written, report.removed,
                    report.deleted, len(report.failed))
        if not dry_run:
            self.record(report).result(timeout=600)
        return report.to_json()

    def record(self, report: KeywordReport) -> Future[None]:
        """Failure records for the sidecars that failed; those of sidecars now fine go. On the indexer thread."""
        failed, done = list(report.failed), list(report.done)

        def commit() -> None:
            known = {k for k in self.store.catalog.failed_files() if is_sidecar_record(k[1])}
            cleared = [k for k in done if k in known]
            if failed or cleared:
                self.apply_changes(Changes(failed=failed, cleared_failures=cleared))

        if not failed and not done:
            done_now: Future[None] = Future()
            done_now.set_result(None)
            return done_now
        return self.commands.call(commit)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
