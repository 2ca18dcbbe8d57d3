"""The configured roots as the daemon keeps them: which are online, why the others are not, what the
catalog holds that left the config (retired), and the filesystem watcher that watches the online ones.

The indexer thread calls everything here but `views`, which the socket and web threads read too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from chromatica_watch.core.config import Config
from chromatica_watch.core.mounts import WatchPlan, filesystem_of, watch_plan
from chromatica_watch.core.records import RootRecord
from chromatica_watch.daemon.batcher import Batcher
from chromatica_watch.daemon.read_cache import ReadCache
from chromatica_watch.daemon.watcher import Watcher
from chromatica_watch.ingest.roots import RootView, expired_roots, root_problem, root_views
from chromatica_watch.storage.store import Store

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class RootKeeper:
    def __init__(self, cfg: Config, store: Store, batcher: Batcher, reads: ReadCache,
                 make_watcher: Callable[[Config], Watcher], clock: Clock) -> None:
        self.cfg = cfg
        self.store = store
        self.batcher = batcher
        self.reads = reads
        self.make_watcher = make_watcher
        self.clock = clock
        self.online: dict[str, bool] = {}
        self.problems: dict[str, str] = {}  # root -> why it is offline
        self.retired: tuple[str, ...] = ()  # roots the catalog holds that left the config
        self.plans: dict[str, WatchPlan] = {}  # how each online root is kept current beside its watch
        self.watcher: Watcher | None = None
        self.last_check = 0.0
        self.relocating = threading.Lock()  # one relocate at a time, refused rather than queued

    def is_online(self, root: str) -> bool:
        return bool(self.online.get(root))

    def all_online(self) -> bool:
        return all(self.online.get(r) for r in self.cfg.roots)

    # -- watching --------------------------------------------------------------------------------
    def start_watching(self) -> None:
        self.watcher = self.make_watcher(self.cfg)
        self.watcher.start()

    def restart_watcher(self) -> None:
        self.stop_watching()
        self.start_watching()
        for root, is_online in self.online.items():
            if is_online and self.watcher is not None:
                self.watcher.watch(root)

    def watcher_healthy(self) -> bool:
        return self.watcher is None or self.watcher.healthy()

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    # -- online and offline ----------------------------------------------------------------------
    def check(self) -> list[str]:
        """Look at every configured root: one that is back is watched again (returned, for the caller to
        compare with the catalog), one that went missing or unreadable is marked offline."""
        self.last_check = self.clock()
        back = []
        for root in self.cfg.roots:
            problem = root_problem(root)
            was_online = self.online.get(root)
            if problem is None and not was_online:
                self.online[root] = True
                self.problems.pop(root, None)
                self.plan(root)
                if self.watcher is not None:
                    self.watcher.watch(root)
                back.append(root)
            elif problem is not None and (was_online is not False or self.problems.get(root) != problem):
                self.mark_offline(root, problem)
        return back

    def plan(self, root: str) -> WatchPlan:
        """Decide (and log, when it changed) how a root is kept current beside its watch: a root on a
        filesystem whose changes inotify cannot see is rescanned on a short interval."""
        override = self.cfg.watch_override(root)
        if override is None and self.cfg.watcher != "auto":
            plan = WatchPlan()  # "native": events alone; "polling": watchdog polls it anyway
        else:
            plan = watch_plan(filesystem_of(root) if override is None else None, override,
                              self.cfg.network_rescan_interval)
        if plan != self.plans.get(root, WatchPlan()) and plan.rescan is not None:
            logger.info("%s is watched and also rescanned (stat only) every %g s: %s", root, plan.rescan, plan.reason)
        self.plans[root] = plan
        return plan

    def mark_offline(self, root: str, problem: str | None = None) -> None:
        problem = problem or root_problem(root) or "missing or unmounted"
        if self.online.get(root) is not False or self.problems.get(root) != problem:
            logger.warning("%s is offline (%s): keeping its images in the index", root, problem)
        self.online[root] = False
        self.problems[root] = problem
        if self.watcher is not None:
            self.watcher.unwatch(root)
        self.batcher.forget_root(root)

    def offline_reasons(self) -> list[str]:
        return [f"root {r} is offline ({p})" for r, p in self.problems.items() if r in self.cfg.roots]

    # -- what the catalog holds ------------------------------------------------------------------
    def sync(self) -> None:
        """Tell the catalog which roots are configured: one that left the config is retired (hidden from
        searches and counts, its rows kept `retired_root_grace_days` for a relocate), and dropped after."""
        now = time.time()
        for root in self.store.catalog.sync_roots(self.cfg.roots, now):
            logger.warning("%s is no longer in the config: its photos are hidden from searches and kept %g days "
                           "(retired_root_grace_days) in case it comes back or is relocated", root,
                           self.cfg.retired_root_grace_days)
        records = self.records()  # after the sync: retired_at is set exactly on the unconfigured roots
        dropped = expired_roots(records, now, self.cfg.retired_root_grace_days)
        for root in dropped:
            n = self.store.drop_root(root)
            logger.info("%s left the config over %g days ago: its %d photos are removed from the index", root,
                        self.cfg.retired_root_grace_days, n)
        self.retired = tuple(r for r, rec in records.items() if rec.retired_at is not None and r not in dropped)
        self.store.set_searchable(self.cfg.roots)

    def records(self) -> dict[str, RootRecord]:
        catalog = self.store.catalog
        return self.reads.get(catalog, "roots", catalog.root_records)

    def views(self) -> list[RootView]:
        """Every root as the user sees it (any thread)."""
        if not self.store.is_open:
            return root_views({}, self.cfg.roots, self.problems, 0)
        return root_views(self.records(), self.cfg.roots, self.problems, self.cfg.retired_root_grace_days,
                          {root: plan.describe() for root, plan in self.plans.items()})

    def relocation_candidates(self) -> list[str]:
        """Roots whose rows a newly configured folder may take over: retired ones and offline ones."""
        return [*self.retired, *(r for r in self.cfg.roots if self.online.get(r) is False)]

    # -- a new config ----------------------------------------------------------------------------
    def reconfigure(self, cfg: Config) -> None:
        """The roots after a reload: those gone from the config stop being watched; the watcher starts
        again with the new excludes and mode; the catalog hears of the change."""
        for root in set(self.cfg.roots) - set(cfg.roots):
            if self.watcher is not None:
                self.watcher.unwatch(root)
            self.online.pop(root, None)
            self.problems.pop(root, None)
            self.plans.pop(root, None)
            self.batcher.forget_root(root)  # nothing of a root that left the config is read any more
        self.cfg = cfg
        for root in self.plans:
            self.plan(root)
        self.restart_watcher()
        self.sync()
