"""An index made with other histogram settings, upgraded in the background (see storage/upgrade.py for the
directory layout and the commit point): the old index stays open read-only for searches while the folders
are indexed again into an upgrade dir beside it; once every root has been compared and nothing is queued,
the new one is switched in."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from chromatica_watch.core.errors import CatalogDamaged
from chromatica_watch.daemon.status import StatusReporter
from chromatica_watch.search.readonly import open_pair_readonly
from chromatica_watch.storage.catalog import Catalog, stored_fingerprint
from chromatica_watch.storage.index import LiveIndex
from chromatica_watch.storage.store import Store
from chromatica_watch.storage.upgrade import abandoned_upgrades, finish_switch, mark_complete, upgrade_dir

logger = logging.getLogger(__name__)


class Upgrades:
    def __init__(self, store: Store, reporter: StatusReporter) -> None:
        self.store = store
        self.reporter = reporter
        # During an upgrade: the old index, searched read-only (other threads read this attribute).
        self.previous: tuple[Catalog, LiveIndex] | None = None
        self._from = ""
        self._total = 0

    def prepare(self, index_dir: Path, roots: tuple[str, ...]) -> None:
        """Before the store opens: finish a switch a kill interrupted; then, if the index was made with other
        histogram settings, keep it for searches (read-only) and point the store at an upgrade dir."""
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
        self.previous = open_pair_readonly(index_dir, old, roots)
        self._from = old
        self._total = self.previous[0].counts()["live"]
        target = upgrade_dir(index_dir, self.store.fingerprint)
        target.mkdir(exist_ok=True)
        self.store.index_dir = target
        message = (f"the index was made with other histogram settings ({old}; now {self.store.fingerprint}): "
                   f"its {self._total} photos are indexed again in the background, and searches use the old "
                   "index until the new one is complete")
        logger.warning("%s", message)
        self.reporter.alert(message)

    @property
    def running(self) -> bool:
        return self.previous is not None

    def switch(self, index_dir: Path) -> None:
        """The new index is complete and checkpointed: commit the switch (COMPLETE), carry it out, and point
        the store back at the index dir (the caller opens it again)."""
        upgrade = self.store.index_dir
        self.store.close()
        mark_complete(upgrade)
        finish_switch(index_dir)
        # The old catalog's connection goes before the new one opens at the same path (DuckDB keeps one
        # database per path in a process); a search meanwhile hears that the index is opening.
        previous, self.previous = self.previous, None
        if previous is not None:
            previous[0].close()
        self.store.index_dir = index_dir

    def announce_done(self, index_dir: Path) -> None:
        message = f"upgrade complete: the index of {index_dir} now uses histogram settings {self.store.fingerprint}"
        logger.warning("%s", message)
        self.reporter.alert(message)

    def progress(self, done: int) -> dict[str, Any] | None:
        """For the status: how far the upgrade is (None when there is none)."""
        if self.previous is None:
            return None
        return {"from": self._from, "to": self.store.fingerprint, "total": self._total, "done": done}

    def close(self) -> None:
        if self.previous is not None:
            self.previous[0].close()
