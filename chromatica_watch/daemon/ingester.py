"""The one way the daemon reads files and commits what they hold, for files the batcher found ready and for
reconciles alike: through the worker processes, one transaction per `batch_size` results, in task order;
and the one door for writes that need no read. Used on the indexer thread only."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from chromatica_watch.core.paths import DiskFile, Key, absolute_key, display_key, stat_file
from chromatica_watch.core.records import Changes, Move, NewImage
from chromatica_watch.daemon.batcher import Batcher
from chromatica_watch.daemon.publisher import StatusPublisher
from chromatica_watch.daemon.status import StatusReporter
from chromatica_watch.imaging.thumbnail_cache import CacheWrite
from chromatica_watch.ingest.arrivals import pair_arrivals
from chromatica_watch.ingest.pipeline import Committer, Outcome, Replaced, Vanished, ingest_tasks, plan_keys
from chromatica_watch.ingest.pool import IngestPool, PoolManager, Task
from chromatica_watch.storage.store import Store

logger = logging.getLogger(__name__)

STREAM_BATCHES = 4  # ready files taken at once, in batches: workers keep busy while a batch commits
STREAM_CHUNK = 2  # files per worker task when streaming: no worker idles long at the end of a take


class Ingester:
    def __init__(self, store: Store, workers: PoolManager, batcher: Batcher, reporter: StatusReporter,
                 publisher: StatusPublisher, stop: threading.Event, clock: Callable[[], float],
                 batch_size: int, reload: threading.Event) -> None:
        self.store = store
        self.clock = clock
        self.workers = workers
        self.batcher = batcher
        self.reporter = reporter
        self.publisher = publisher
        self.stop = stop
        self.reload = reload  # a reload waits: the ingest stops between batches for it
        self.batch_size = batch_size  # follows config reloads
        self.in_flight = 0  # files handed to the workers and not committed yet
        # What the workers' writes to the thumbnail cache met, told to its health (see compose)
        self.thumbnails_written: Callable[[list[CacheWrite]], None] = lambda _writes: None
        # The rows each commit added, for their colour keywords (daemon/keywords.py; see compose)
        self.indexed: Callable[[list[NewImage]], None] = lambda _images: None

    def reconfigure(self, batch_size: int) -> None:
        self.batch_size = batch_size

    @property
    def pool(self) -> IngestPool | None:
        """The running worker pool, if any (none while idle)."""
        return self.workers.current

    def committer(self) -> Committer:
        return Committer.of(self.store)

    def apply(self, changes: Changes) -> None:
        """Deletes, moves and failure records: no file to read."""
        self.committer().apply(changes)

    def ingest_keys(self, keys: list[Key]) -> Outcome:
        """Files the batcher found ready; those moved from a path whose row is left (a rename storm) keep
        that row instead of being read as new."""
        found = self.store.catalog.lookup(keys)
        moved = self.moved_here([k for k in keys if k not in found])
        if moved:
            self.apply(Changes(moved=moved))
            logger.info("%d file(s) moved while their events were read: their rows follow them, nothing read",
                        len(moved))
            arrived = {(m.root, m.path) for m in moved}
            keys = [k for k in keys if k not in arrived]
        replaced, tasks = plan_keys(keys, found)
        return self.ingest(tasks, replaced, Vanished())

    def moved_here(self, keys: list[Key]) -> list[Move]:
        """Moves of the rows these files (with no row at their path) came from (`arrivals.pair_arrivals`)."""
        moves: list[Move] = []
        by_root: dict[str, dict[bytes, DiskFile]] = {}
        for key in keys:
            if (st := stat_file(absolute_key(key))) is not None:
                by_root.setdefault(key[0], {})[key[1]] = st
        for root, arrivals in by_root.items():
            candidates = self.store.catalog.live_with_stat(root, {(f.size, f.mtime_ns) for f in arrivals.values()})
            if not candidates:
                continue
            still_there = {p for p, _ in candidates if stat_file(absolute_key((root, p))) is not None}
            for path, row in pair_arrivals(arrivals, candidates, still_there, time.time_ns()).items():
                f = arrivals[path]
                moves.append(Move(row.image_id, root, path, f.size, f.mtime_ns, f.ctime_ns))
        return moves

    def ingest(self, tasks: list[Task], replaced: dict[Key, Replaced], vanished: Vanished) -> Outcome:
        pool = self.workers.get()
        # A batch is spread evenly over the workers; more is streamed in small chunks so the workers
        # keep busy while each batch commits and none idles long at the end.
        many = len(tasks) > self.batch_size
        chunk = STREAM_CHUNK if many else max(1, -(-len(tasks) // pool.workers))
        self.in_flight = len(tasks)
        try:
            outcome = ingest_tasks(pool, tasks, self.committer(), replaced, vanished, self.batch_size,
                                   chunk_size=chunk, should_stop=self._interrupted, on_result=self._progress,
                                   on_batch=self.after_commit)
        finally:
            self.in_flight = 0
            self.workers.used()
        if outcome.processed < len(tasks) and not self.stop.is_set():
            # A reload is applied between batches, not after thousands of files: what was not read waits in
            # the batcher, which drops it if its root left the config.
            now = self.clock()
            for task in tasks[outcome.processed:]:
                self.batcher.note((task.root, task.path), now)
        return outcome

    def _interrupted(self) -> bool:
        return self.stop.is_set() or self.reload.is_set()

    def _progress(self, _done: int) -> None:
        self.reporter.beat()

    def after_commit(self, outcome: Outcome) -> None:
        self.reporter.note_indexed(outcome.added)
        for f in outcome.failed:
            self.reporter.note_failure(display_key((f.root, f.path)), f.reason)
        now = self.clock()
        for u in outcome.unstable:
            self.batcher.note((u.task.root, u.task.path), now)  # changed while read: settle again
        if outcome.thumbnails:
            self.thumbnails_written(outcome.thumbnails)
        if outcome.new_images:
            self.indexed(outcome.new_images)
        if outcome.added or outcome.moved or outcome.failed:
            logger.info("indexed %d new image(s); %d moved, %d removed, %d could not be indexed",
                        outcome.added, outcome.moved, outcome.tombstoned, len(outcome.failed))
        self.publisher.publish_counts()
