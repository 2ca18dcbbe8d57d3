"""The scan is the truth: a folder compared with the catalog, and the difference committed.

Used for the full rescans (at startup, every `rescan_interval`, when a root comes back or the watcher
breaks), for the folders the watcher cannot watch, and for a folder that appears (created or moved
in). The same walk and the same rules in every case, so live events and full scans agree.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from chromatica_watch.core.paths import DiskFile, Key, absolute_key, display_key, is_under, stat_file
from chromatica_watch.core.records import Changes, Failure
from chromatica_watch.daemon.batcher import Batcher
from chromatica_watch.daemon.events import Facts, FsEvent, needs, same_stat, stats_needed
from chromatica_watch.daemon.rechecks import Rechecks
from chromatica_watch.ingest.pipeline import Committer, Outcome, Replaced, Vanished, plan_delta
from chromatica_watch.ingest.pool import Task
from chromatica_watch.ingest.roots import relocation_source
from chromatica_watch.ingest.scan import ScanProblem, scan
from chromatica_watch.offline.keywords import is_sidecar_record
from chromatica_watch.storage.store import Store

logger = logging.getLogger(__name__)

class Ingest(Protocol):
    """How the reconciler reads files and writes: the daemon's one way (see ingester.py)."""

    def ingest(self, tasks: list[Task], replaced: dict[Key, Replaced], vanished: Vanished) -> Outcome: ...

    def committer(self) -> Committer: ...


class Relocations(Protocol):
    def relocation_candidates(self) -> list[str]:
        """Roots whose rows a new folder may take over: those that went missing or left the config."""
        ...


@dataclass(frozen=True)
class Reconciled:
    files: int
    unchanged: int
    read: int
    gone: int
    seconds: float
    moved: int = 0  # rows that followed their file elsewhere, no read
    adopted: str | None = None  # the root whose rows this one took over (a folder renamed or moved)
    adopted_rows: int = 0


class Reconciler:
    def __init__(self, store: Store, batcher: Batcher, ingester: Ingest, relocations: Relocations,
                 clock: Callable[[], float], should_stop: Callable[[], bool], excludes: Sequence[str],
                 settle_seconds: float, rechecks: Rechecks) -> None:
        self.store = store
        self.rechecks = rechecks  # folders changing while walked are compared again once quiet
        self.batcher = batcher
        self.ingester = ingester
        self.relocations = relocations
        self.clock = clock
        self.should_stop = should_stop
        self.excludes = excludes
        self.settle_seconds = settle_seconds

    def reconfigure(self, excludes: Sequence[str], settle_seconds: float) -> None:
        """A config reload: what the next walk skips, and how long a new file settles."""
        self.excludes, self.settle_seconds = excludes, settle_seconds

    def reconcile(self, root: str, under: bytes = b"", quiet: bool = False) -> Reconciled:
        """Compare the folder (or only its sub-folder `under`) with the catalog and commit the difference:
        new and changed files are read (those written in the last settle_seconds are left to settle),
        vanished ones are moves when their content turns up elsewhere, else tombstoned. Raises OSError
        when the folder cannot be walked. `quiet`: a frequent rescan that finds nothing logs at DEBUG."""
        started = time.monotonic()
        vanished: list[bytes] = []
        disk, problems = scan(root, self.excludes, under=under, vanished=vanished)
        if vanished:  # the folder changed while walked: this diff may be of a moment, look again when quiet
            self.rechecks.note(root, under, self.clock())
        source = self.adoptable(root, disk) if not under else None
        plan = plan_delta(self.store.catalog, root, disk, time.time_ns(), under, adopt=source)
        delta = plan.delta
        committer = self.ingester.committer()
        adopted_rows = committer.rewrite(plan)  # rows that follow their files, before any read
        if source is not None:
            self.store.refresh_hidden()
            logger.warning("%s holds the photos of %s (same names, sizes and times): its %d rows now point "
                           "there; no image was read", root, source, adopted_rows)
        settle_ns, now_ns, now = int(self.settle_seconds * 1e9), time.time_ns(), self.clock()
        settled = []
        for p in delta.to_ingest:
            if now_ns - disk[p].mtime_ns < settle_ns:
                self.batcher.note((root, p), now)  # still being written, perhaps: let it settle
            else:
                settled.append(p)
        tasks = plan.tasks(settled)
        if tasks:
            logger.info("%s: %d files to read (%d new, %d changed, %d with a new inode change time), %d gone", root,
                        len(tasks), len(delta.new), len(delta.changed), len(delta.ctime_changed), len(delta.vanished))
        outcome = self.ingester.ingest(tasks, plan.replaced, plan.vanished) if tasks else Outcome()
        if not self.should_stop():
            # Failure records of files that are gone (or now fine) go too, or `failed` lists them forever.
            problem_paths = {p.path for p in problems}
            # A sidecar's record (its colour keywords could not be written) stays while the sidecar is there.
            stale = [(root, p) for p in plan.failures if p not in disk and p not in problem_paths
                     and not (is_sidecar_record(p) and os.path.lexists(absolute_key((root, p))))]
            # A folder that moved while walked may have been missed where it went: its rows are not gone,
            # and wait for the recheck noted above.
            gone = [] if vanished else plan.vanished.remaining_ids()
            self.ingester.committer().apply(Changes(tombstoned=gone, cleared_failures=stale))
        self.record_problems(root, problems, plan.failures)
        if not under and not self.should_stop():
            self.store.catalog.note_scan(root, time.time(), len(disk))
        done = Reconciled(len(disk), delta.unchanged, len(tasks), outcome.tombstoned, time.monotonic() - started,
                          len(delta.moved), source, adopted_rows)
        logger.log(logging.DEBUG if under or (quiet and not tasks and not outcome.tombstoned) else logging.INFO,
                   "%s: reconciled %d files in %.2f s (%d unchanged, %d read, %d gone)",
                   display_key((root, under)) if under else root, done.files, done.seconds, done.unchanged,
                   done.read, done.gone)
        return done

    def adoptable(self, root: str, disk: Mapping[bytes, DiskFile]) -> str | None:
        """A root the catalog holds nothing of yet, whose files are those of a root that went missing or left
        the config (same relative paths, sizes and mtimes): that root, to relocate instead of reading all."""
        catalog = self.store.catalog
        others = [r for r in self.relocations.relocation_candidates() if r != root]
        if not others or not disk or catalog.holds(root):
            return None
        candidates = {r: catalog.live_files(r) for r in others}
        found = relocation_source(disk, candidates)
        return found[0] if found else None

    def walk_new_folder(self, root: str, rel: bytes) -> None:
        """A folder appeared (created or moved in): queue its files, and record what cannot be indexed
        there exactly as a full scan would (the same walk, under the same rules)."""
        vanished: list[bytes] = []
        try:
            files, problems = scan(root, self.excludes, under=rel, vanished=vanished)
        except OSError:
            return
        if vanished:
            self.rechecks.note(root, rel, self.clock())
        keys = [(root, p) for p in files]
        known = self.store.catalog.lookup(keys)
        now = self.clock()
        for key, f in zip(keys, files.values(), strict=True):
            if not same_stat(known.get(key), f):
                self.batcher.note(key, now)
        if problems:
            failed = self.store.catalog.failed_files(root)
            self.record_problems(root, problems, {p: f for (_, p), f in failed.items()})

    def record_problems(self, root: str, problems: Iterable[ScanProblem], known: Mapping[bytes, Failure]) -> None:
        """Scan problems (links not followed, special files, unreadable folders) as failure records,
        each once: logged and recorded only when new or when its reason changed."""
        new = [Failure(root, p.path, 0, 0, p.reason) for p in problems
               if (k := known.get(p.path)) is None or k.reason != p.reason]
        if new:
            for f in new:
                logger.warning("cannot index %s: %s", display_key((root, f.path)), f.reason)
            self.ingester.committer().apply(Changes(failed=new))

    def facts(self, events: list[FsEvent]) -> Facts:
        """What the event rules need to know about these events: catalog rows, stats, roots present."""
        need = needs(events)
        catalog = self.store.catalog
        folders = {f: catalog.live_under(*f) for f in need.folders}
        failed_in_root = {root: list(catalog.failed_files(root)) for root, _ in need.folders}
        return Facts(
            rows=catalog.lookup(need.keys),
            folders=folders,
            failed={(root, folder): [p for _, p in failed_in_root[root] if is_under(p, folder)]
                    for root, folder in need.folders},
            stats={key: stat_file(absolute_key(key)) for key in stats_needed(events, folders)},
            present_roots=frozenset(r for r in need.roots if os.path.isdir(r)),
            present_dirs=frozenset(key for key in need.dirs if _is_folder(absolute_key(key))),
            unsettled_roots=frozenset(root for root in {ev.root for ev in events} if root in self.rechecks))


def _is_folder(path: bytes) -> bool:
    """A folder there now (a link to one is not: the walk does not follow links)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
