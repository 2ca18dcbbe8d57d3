"""The daemon's index directory, held open: the catalog (the committed record) and the live index
(derived from it), opened, recovered, compacted and replaced together.

Both are swapped under one lock (a compaction rebuilds the index; a damaged catalog is replaced by a
new one), so a search thread always gets a catalog and an index that belong together. A catalog that
does not read back is set aside with a timestamp (never deleted) and a new one started: the folder is
the truth and is indexed again.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from chromatica_watch.core.errors import CatalogDamaged, ChromaticaError
from chromatica_watch.core.records import Relocated
from chromatica_watch.storage.catalog import Catalog, quarantine
from chromatica_watch.storage.decoder_stamp import check_decoders
from chromatica_watch.storage.histfile import HISTOGRAM_FILE, HistogramFile, discard
from chromatica_watch.storage.index import PCA_FROM, LiveIndex
from chromatica_watch.storage.indexdir import Progress, discard_checkpoint, needs_reshape, open_live_index, rebuild_from
from chromatica_watch.storage.table import SearchTable

logger = logging.getLogger(__name__)


class RebuildProgress(Protocol):
    """Told how a long rebuild of the live index moves (minutes at a million photos: at a start, after an
    upgrade, at a compaction), then that it is over, however it ended."""

    def moved(self, added: int, total: int) -> None: ...

    def finished(self) -> None: ...


class Store:
    def __init__(self, index_dir: Path, fingerprint: str, progress: RebuildProgress | None = None,
                 pca_from: int = PCA_FROM) -> None:
        self.index_dir = index_dir
        self.fingerprint = fingerprint
        self.pca_from = pca_from  # live photos from which the index is rebuilt in the PCA layout
        self._progress = progress
        self.lock = threading.Lock()  # held while the pair is swapped
        self._catalog: Catalog | None = None
        self._live: LiveIndex | None = None
        self._histograms: HistogramFile | None = None  # the catalog's histograms, for searches to read fast
        self._searchable: tuple[str, ...] | None = None  # the configured roots; None: every root
        self._table: SearchTable | None = None  # what containment and filtered searches scan
        self._other_table: SearchTable | None = None  # of an upgrade's previous catalog
        self._warming: threading.Thread | None = None  # loads the search table after opening

    @property
    def is_open(self) -> bool:
        return self._catalog is not None and self._live is not None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            raise ChromaticaError("the index is not open yet")
        return self._catalog

    @property
    def live(self) -> LiveIndex:
        if self._live is None:
            raise ChromaticaError("the index is not open yet")
        return self._live

    def pair(self) -> tuple[Catalog, LiveIndex]:
        """The catalog and the index, as one consistent pair (for a search on another thread)."""
        with self.lock:
            return self.catalog, self.live

    def open(self) -> tuple[bool, str | None]:
        """Open and recover both: (whether the index was rebuilt and so must be checkpointed, a message
        for the user when a damaged catalog was set aside). Raises StorageError on a full disk."""
        try:
            rebuilt = self._open()
        except CatalogDamaged as exc:
            message = self._set_aside(exc)
            return self._open(), message
        return rebuilt, None

    def replace_damaged(self, exc: CatalogDamaged) -> str:
        """A catalog found damaged while open: set it aside and start a new one, under the lock."""
        with self.lock:
            message = self._set_aside(exc)
            self._open()
        return message

    def _open(self) -> bool:
        self._catalog = catalog = Catalog.open(self.index_dir, self.fingerprint)
        check_decoders(catalog)
        with self._rebuilding() as progress:
            self._live, recovery = open_live_index(self.index_dir, catalog, self.fingerprint, progress, self.pca_from)
        self.refresh_hidden()
        self._histograms = HistogramFile(self.index_dir / HISTOGRAM_FILE, catalog.catalog_id,
                                         catalog.counts()["max_id"])
        self._histograms.start(catalog.live_ids, catalog.histogram_rows)
        self._table = SearchTable(catalog)
        self._warming = threading.Thread(target=self._warm_table, args=(self._table,), name="search-table",
                                         daemon=True)
        self._warming.start()
        return recovery.rebuilt_reason is not None

    @contextmanager
    def _rebuilding(self) -> Iterator[Progress | None]:
        try:
            yield None if self._progress is None else self._progress.moved
        finally:
            if self._progress is not None:
                self._progress.finished()

    @staticmethod
    def _warm_table(table: SearchTable) -> None:
        """Load the search table before the first search needs it (seconds at a million photos)."""
        try:
            table.view()
        except ChromaticaError as exc:  # a damaged or closed catalog: the next search says so, or retries
            logger.debug("search table not loaded: %s", exc)

    def table_of(self, catalog: Catalog) -> SearchTable:
        """The search table of this catalog (the one open here, or an upgrade's previous one)."""
        if catalog is self._catalog and self._table is not None:
            return self._table
        other = self._other_table
        if other is None or other.catalog is not catalog:
            other = self._other_table = SearchTable(catalog)
        return other

    @property
    def searchable(self) -> tuple[str, ...] | None:
        return self._searchable

    def histograms_of(self, catalog: Catalog) -> HistogramFile | None:
        """The histogram file of this catalog, when it is the one open here (an upgrade's previous catalog
        has none)."""
        return self._histograms if catalog is self._catalog else None

    def _set_aside(self, exc: CatalogDamaged) -> str:
        self._stop_warming()
        if self._catalog is not None:
            try:
                self._catalog.close()
            except ChromaticaError:
                pass  # it is damaged: closing it may fail too
        self._catalog = self._live = None
        self._table = None
        self._close_histograms()
        kept = quarantine(self.index_dir, datetime.datetime.now())
        discard_checkpoint(self.index_dir)  # its ids belonged to the damaged catalog
        discard(self.index_dir)
        message = (f"the catalog was damaged ({exc.reason}); it is kept as {kept} and the folder is being "
                   "indexed again")
        logger.error("%s", message)
        return message

    def compact_if_needed(self, tombstone_ratio: float) -> bool:
        """Rebuild the live index from the catalog once tombstones pass the ratio, or once a flat index has
        grown to the PCA layout's size; True when it did (the caller checkpoints). Searches go on with the
        old index while the new one is built."""
        live = self.live
        total = live.ntotal
        if needs_reshape(live, self.pca_from):
            logger.info("rebuilding the live index of %d photos in a compact layout", total - live.tombstone_count)
        elif not total or live.tombstone_count / total <= tombstone_ratio:
            return False
        else:
            logger.info("rebuilding the live index: %d of %d vectors are tombstoned", live.tombstone_count, total)
        with self._rebuilding() as progress:
            fresh = rebuild_from(self.catalog, progress, self.pca_from)
        with self.lock:
            self._live = fresh
            self.refresh_hidden()
        return True

    # -- roots -------------------------------------------------------------------------------------
    def set_searchable(self, roots: tuple[str, ...]) -> None:
        """Only these roots' photos are searched (a root that left the config is hidden, not deleted)."""
        self._searchable = roots
        self.refresh_hidden()

    def refresh_hidden(self) -> None:
        """Hide from searches the rows of roots not searchable (after their rows moved between roots)."""
        if self._searchable is not None and self.is_open:
            self.live.hide(self.catalog.ids_outside(self._searchable))

    def relocate(self, old: str, new: str) -> Relocated:
        """Rewrite OLD's rows to NEW (no image read); the rows NEW already had win their paths."""
        done = self.catalog.relocate(old, new)
        self.live.mark_deleted(done.superseded)
        self.refresh_hidden()
        return done

    def drop_root(self, root: str) -> int:
        """A retired root's grace period is over: its rows are tombstoned. Returns how many."""
        ids = self.catalog.drop_root(root)
        self.live.mark_deleted(ids)
        self.refresh_hidden()
        return len(ids)

    def checkpoint(self) -> None:
        """Save the live index (raises OSError: a full disk is the caller's to handle)."""
        self.live.checkpoint(self.index_dir, self.fingerprint)

    def _stop_warming(self) -> None:
        """The search table's loader reads the catalog: closing it under the loader's query fails."""
        if self._warming is not None:
            self._warming.join(timeout=120)
            self._warming = None

    def _close_histograms(self) -> None:
        if self._histograms is not None:
            self._histograms.close()
        self._histograms = None

    def close(self) -> None:
        self._stop_warming()
        self._close_histograms()
        if self._catalog is not None:
            self._catalog.close()
        self._catalog = self._live = None
