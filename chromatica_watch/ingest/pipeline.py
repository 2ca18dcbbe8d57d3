"""From ingest results to one committed batch: catalog first (the commit point), then the live index.

Shared by `build` and the daemon. A file whose bytes hash to content the catalog already has is not
decoded: a vanished file with that hash makes it a move (same id, new path); otherwise its histogram is
copied from the catalog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from chromatica_watch.core.paths import DiskFile, Key, absolute_key, display_path, is_under
from chromatica_watch.core.records import Changes, Failure, LiveFile, Move, NewImage
from chromatica_watch.imaging.thumbnail_cache import CacheWrite
from chromatica_watch.ingest.diff import Diff, MatchBy, diff
from chromatica_watch.ingest.pool import Failed, Indexed, Known, Result, ResultSource, Task, Unstable
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.histfile import HistogramFile
from chromatica_watch.storage.index import LiveIndex
from chromatica_watch.storage.store import Store

logger = logging.getLogger(__name__)


@dataclass
class Vanished:
    """Catalog rows whose files are gone from disk, by content hash, waiting to be claimed by a move."""

    by_hash: dict[str, list[tuple[int, Key]]] = field(default_factory=dict)

    def add(self, content_hash: str, image_id: int, key: Key) -> None:
        self.by_hash.setdefault(content_hash, []).append((image_id, key))

    def claim(self, content_hash: str) -> int | None:
        rows = self.by_hash.get(content_hash)
        if not rows:
            return None
        image_id, _ = rows.pop(0)
        if not rows:
            del self.by_hash[content_hash]
        return image_id

    def hashes(self) -> frozenset[str]:
        return frozenset(self.by_hash)

    def remaining_ids(self) -> list[int]:
        return sorted(i for rows in self.by_hash.values() for i, _ in rows)


@dataclass
class Outcome:
    added: int = 0
    moved: int = 0
    refreshed: int = 0  # same content, new stat (touched): id kept
    tombstoned: int = 0
    failed: list[Failure] = field(default_factory=list)
    unstable: list[Unstable] = field(default_factory=list)
    thumbnails: list[CacheWrite] = field(default_factory=list)  # grid thumbnails cached while indexing, or not
    new_images: list[NewImage] = field(default_factory=list)  # the rows a batch added (one batch's, not totalled)
    processed: int = 0  # tasks whose results were committed (the first ones: results come in task order)


@dataclass(frozen=True)
class Replaced:
    """The catalog row a re-read file used to be."""

    image_id: int
    content_hash: str


class Committer:
    """The one door through which ingest writes: a batch of results, path rewrites before any read, and
    changes that need no read; each a catalog transaction first, then the live index."""

    def __init__(self, catalog: Catalog, index: LiveIndex, histograms: HistogramFile | None = None) -> None:
        self.catalog = catalog
        self.index = index
        self.histograms = histograms  # kept with each commit's new rows, when the owner has one

    @classmethod
    def of(cls, store: Store) -> Committer:
        """The committer of the store's pair as it is now (a compaction or a replaced catalog swaps it)."""
        catalog = store.catalog
        return cls(catalog, store.live, store.histograms_of(catalog))

    def apply(self, changes: Changes) -> None:
        """Changes that need no file read (deletes, moves, failure records): catalog, then index."""
        self.catalog.apply(changes)
        if changes.tombstoned:
            self.index.mark_deleted(changes.tombstoned)

    def commit(self, results: Iterable[Result], replaced: Mapping[Key, Replaced],
               vanished: Vanished, extra_tombstones: Iterable[int] = ()) -> Outcome:
        """Commit one batch: one catalog transaction, then the index; returns what happened."""
        changes = Changes(tombstoned=list(extra_tombstones))
        outcome = Outcome()
        copies: list[Known] = []
        for r in results:
            key = (r.task.root, r.task.path)
            old = replaced.get(key)
            if isinstance(r, Unstable):
                outcome.unstable.append(r)
                continue
            if isinstance(r, Known) and old is not None and r.content_hash == old.content_hash:
                # Touched, not changed: keep the id, refresh the stat.
                changes.moved.append(Move(old.image_id, r.task.root, r.task.path, r.size, r.mtime_ns, r.ctime_ns))
                outcome.refreshed += 1
                continue
            if old is not None:
                changes.tombstoned.append(old.image_id)
            if isinstance(r, Indexed):
                if r.thumbnail is not None:
                    outcome.thumbnails.append(r.thumbnail)
                changes.added.append(NewImage(r.task.root, r.task.path, r.size, r.mtime_ns, r.content_hash,
                                              r.width, r.height, r.histogram, r.details, r.ctime_ns))
            elif isinstance(r, Known):
                moved_id = vanished.claim(r.content_hash)
                if moved_id is not None:
                    changes.moved.append(Move(moved_id, r.task.root, r.task.path, r.size, r.mtime_ns, r.ctime_ns))
                else:
                    copies.append(r)
            elif isinstance(r, Failed):
                f = Failure(r.task.root, r.task.path, r.size, r.mtime_ns, r.reason)
                changes.failed.append(f)
                outcome.failed.append(f)
                logger.warning("cannot index %s: %s", display_path(absolute_key(key)), r.reason)
        changes.added.extend(self._copies(copies))
        ids = self.catalog.apply(changes) if changes else []
        if ids:
            added_hists = np.stack([a.histogram for a in changes.added])
            self.index.add(np.asarray(ids, dtype=np.int64), added_hists)
            if self.histograms is not None:
                self.histograms.append(np.asarray(ids, dtype=np.int64), added_hists)
        if changes.tombstoned:
            self.index.mark_deleted(changes.tombstoned)
        outcome.added = len(ids)
        outcome.new_images = changes.added
        outcome.moved = len(changes.moved) - outcome.refreshed
        outcome.tombstoned = len(changes.tombstoned)
        return outcome

    def rewrite(self, plan: IngestPlan) -> int:
        """The plan's path rewrites, committed before any file is read: the folder it adopts (relocated to
        its root) and the files that moved (same name, size and mtime elsewhere); and the inode change times
        of unchanged rows that had none (a stat, no read). Returns the rows adopted."""
        adopted = 0
        if plan.adopt is not None:
            relocated = self.catalog.relocate(plan.adopt, plan.root)
            self.index.mark_deleted(relocated.superseded)
            adopted = relocated.moved
        if plan.moves:
            self.catalog.apply(Changes(moved=plan.moves))
        if plan.delta.ctime_unknown:
            self.catalog.fill_ctimes(plan.delta.ctime_unknown)
        return adopted

    def _copies(self, copies: list[Known]) -> list[NewImage]:
        """Files whose content the catalog already holds: reuse the stored histogram."""
        if not copies:
            return []
        found = self.catalog.find_by_hash(r.content_hash for r in copies)
        rows = self.catalog.rows([ids[0] for ids in found.values()])
        out = []
        for r in copies:
            src = rows[found[r.content_hash][0]]
            out.append(NewImage(r.task.root, r.task.path, r.size, r.mtime_ns, r.content_hash, src.width,
                                src.height, src.histogram, ctime_ns=r.ctime_ns))
        return out


def make_tasks(root: str, paths: Iterable[bytes], replaced: Mapping[Key, Replaced],
               vanished: Vanished) -> list[Task]:
    common = vanished.hashes()
    tasks = []
    for p in paths:
        old = replaced.get((root, p))
        skip = common | {old.content_hash} if old is not None else common
        tasks.append(Task(root, p, skip))
    return tasks


@dataclass
class IngestPlan:
    """What a folder's delta means for the catalog before any file is read: the rows that changed
    files replace, the rows whose files vanished (claimable by a move, by content hash), the rows that
    follow their file elsewhere without a read, and what to read. The daemon's reconciler and `build`
    both make it with `plan_delta` and carry it out the same way (`Committer.rewrite`, then the reads);
    `chromatica-watch diff` prints it: the seed's "delta analysis"."""

    root: str
    delta: Diff
    replaced: dict[Key, Replaced]
    vanished: Vanished
    failures: dict[bytes, Failure] = field(default_factory=dict)  # recorded failures in the folder
    moves: list[Move] = field(default_factory=list)
    adopt: str | None = None  # another root whose rows this one takes over (a folder renamed)

    def tasks(self, paths: Iterable[bytes] | None = None) -> list[Task]:
        """Tasks for `paths` (default: every path the delta says to read), in the given order."""
        return make_tasks(self.root, self.delta.to_ingest if paths is None else paths, self.replaced, self.vanished)


def plan_from_delta(root: str, delta: Diff, stored_hashes: Mapping[int, str],
                    failures: Mapping[bytes, Failure] | None = None,
                    disk: Mapping[bytes, DiskFile] | None = None, adopt: str | None = None) -> IngestPlan:
    """The plan for a delta, given the content hash of every row it names and the disk's stats of the
    files that moved (pure)."""
    replaced = {(root, p): Replaced(i, stored_hashes[i]) for p, i in delta.changed + delta.rehash}
    vanished = Vanished()
    for p, i in delta.vanished:
        vanished.add(stored_hashes[i], i, (root, p))
    disk = disk or {}
    moves = [Move(i, root, new, disk[new].size, disk[new].mtime_ns, disk[new].ctime_ns) for _, new, i in delta.moved]
    return IngestPlan(root, delta, replaced, vanished, dict(failures or {}), moves, adopt)


def adopted_view(own: Mapping[bytes, LiveFile], adopted: Mapping[bytes, LiveFile]) -> dict[bytes, LiveFile]:
    """The rows a root holds once another root's rows are relocated into it: its own row wins a path both
    hold (as `Catalog.relocate` does). An adopted row's inode change time is not known (the folder was
    copied, perhaps: every file has a new one), as `Catalog.relocate` leaves it: filled in, not re-hashed."""
    return {**{p: replace(f, ctime_ns=None) for p, f in adopted.items()}, **own}


def plan_delta(catalog: Catalog, root: str, disk: Mapping[bytes, DiskFile], scan_time_ns: int,
               under: bytes = b"", match_by: MatchBy = "path", adopt: str | None = None) -> IngestPlan:
    """Diff what is on disk in `root` (or its folder `under`) against the catalog, and plan it. With
    `adopt`, the rows of that other root count as this root's (the plan relocates them first)."""
    known = catalog.live_under(root, under)
    if adopt is not None:
        known = adopted_view(known, catalog.live_under(adopt, under))
    failures = {p: f for (_, p), f in catalog.failed_files(root).items() if is_under(p, under)}
    delta = diff(disk, known, failures, scan_time_ns, match_by=match_by)
    rows = [i for _, i in delta.vanished + delta.changed + delta.rehash]
    return plan_from_delta(root, delta, catalog.content_hashes(rows), failures, disk, adopt)


def plan_keys(keys: Iterable[Key], found: Mapping[Key, LiveFile]) -> tuple[dict[Key, Replaced], list[Task]]:
    """Files handed over by the batcher: the rows they replace, and their tasks (a file whose bytes
    still hash to its row's content is not decoded again)."""
    replaced = {k: Replaced(f.image_id, f.content_hash) for k, f in found.items()}
    tasks = [Task(root, path, frozenset({replaced[(root, path)].content_hash}) if (root, path) in replaced
                  else frozenset()) for root, path in keys]
    return replaced, tasks


def ingest_tasks(pool: ResultSource, tasks: list[Task], committer: Committer, replaced: Mapping[Key, Replaced],
                 vanished: Vanished, batch_size: int, chunk_size: int = 8,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_result: Callable[[int], None] | None = None,
                 on_batch: Callable[[Outcome], None] | None = None) -> Outcome:
    """Stream tasks through the pool, committing every `batch_size` results in task order.

    Stops between batches when `should_stop()`; what was committed stays committed (`processed` says how
    many of the tasks).
    """
    total = Outcome()
    batch: list[Result] = []

    def flush() -> None:
        outcome = committer.commit(batch, replaced, vanished)
        batch.clear()
        total.added += outcome.added
        total.moved += outcome.moved
        total.refreshed += outcome.refreshed
        total.tombstoned += outcome.tombstoned
        total.failed += outcome.failed
        total.unstable += outcome.unstable
        if on_batch is not None:
            on_batch(outcome)

    done = 0
    for result in pool.run(tasks, chunk_size=chunk_size, should_stop=should_stop):
        batch.append(result)
        done += 1
        if len(batch) >= batch_size:
            flush()
        if on_result is not None:
            on_result(done)
    if batch:
        flush()
    total.processed = done
    return total
