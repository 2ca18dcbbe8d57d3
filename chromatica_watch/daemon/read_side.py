"""The daemon as the socket's and the web app's threads see it, and the only part of it they get: searches,
stored rows, failures, roots and status, read with caches that a write voids; anything that writes is
handed to the indexer thread as a command."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from chromatica_watch.core.errors import CatalogDamaged, ChromaticaError
from chromatica_watch.core.records import Failure, StoredImage
from chromatica_watch.daemon.commands import CommandQueue, DamageReports
from chromatica_watch.daemon.read_cache import ReadCache, RecentResults
from chromatica_watch.daemon.roots import RootKeeper
from chromatica_watch.daemon.status import StatusReporter
from chromatica_watch.daemon.upgrades import Upgrades
from chromatica_watch.ingest.roots import RootView
from chromatica_watch.search import browse
from chromatica_watch.search.ask import Ask, Filters
from chromatica_watch.search.finder import Finder, Found
from chromatica_watch.search.searcher import Result, Searcher
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.index import LiveIndex, configure_threads
from chromatica_watch.storage.store import Store
from chromatica_watch.storage.table import TableView

logger = logging.getLogger(__name__)


class Writes(Protocol):
    """What the read side's callers may ask to change: carried out on the indexer thread (requests.py)."""

    def retry_failed(self) -> int: ...

    def compact(self) -> dict[str, int]: ...

    def relocate(self, old: str, new: str, dry_run: bool, force: bool) -> dict[str, Any]: ...


class KeywordRequests(Protocol):
    """`keywords write|remove` (daemon/keywords.py): run on the asking thread, its failure records committed
    by the indexer thread."""

    def request(self, action: str, folder: str | None, dry_run: bool) -> dict[str, Any]: ...


class ReadSide:
    def __init__(self, store: Store, upgrades: Upgrades, roots: RootKeeper, reporter: StatusReporter,
                 commands: CommandQueue, writes: Writes, damage: DamageReports, reads: ReadCache,
                 search_candidates: int, keywords: KeywordRequests | None = None) -> None:
        self.store = store
        self.upgrades = upgrades
        self.roots_keeper = roots
        self.reporter = reporter
        self.commands = commands
        self.reads = reads
        self.search_candidates = search_candidates
        self.recent = RecentResults()  # where the files of the latest results are, for thumbnails
        self.writes = writes
        self.keyword_requests = keywords
        self.damage = damage  # a damaged catalog found by a read: the indexer replaces it
        self._searcher: Searcher | None = None  # of the pair searched last: made again when it changes
        self._searcher_lock = threading.Lock()
        self._omp = threading.local()

    def _one_omp_thread(self) -> None:
        """OpenMP builds a thread team per calling thread: for one query that costs ~12 ms per search at 100k
        images and buys nothing. The socket's and the web app's threads search with one thread, no team."""
        if not getattr(self._omp, "set", False):
            configure_threads(1)
            self._omp.set = True

    def reconfigure(self, search_candidates: int) -> None:
        self.search_candidates = search_candidates  # the next search makes its searcher with it

    # -- reads -----------------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int, group_sidecars: bool = False) -> list[Result]:
        """A whole-palette search (a query histogram), its results as every search's (`find`)."""
        return self.find(Ask(histogram=query), k, group_sidecars).results

    def find(self, ask: Ask, k: int, group_sidecars: bool = False) -> Found:
        """Any search: colours to contain or avoid, filters, a whole palette (`Finder`). The live index's own
        lock keeps a search and the indexer's adds apart (HNSW add during a search crashes); each holds it
        for milliseconds."""
        self._one_omp_thread()
        catalog, live = self.search_pair()
        source = (catalog, catalog.generation)  # read before the search: a write meanwhile voids what it finds
        with self.noting_damage():
            table = self.store.table_of(catalog)
            finder = Finder(self._searcher_of(catalog, live), table.view, self.store.searchable)
            found = finder.find(ask, k, group_sidecars)
        self.recent.remember(source, found.results)
        return found

    def wall(self, filters: Filters, start: int, limit: int) -> browse.WallPage:
        """A page of the colour wall of the photos passing `filters`."""
        with self.noting_damage():
            catalog, view = self._view()
            page = browse.wall_page(view, filters, self.store.searchable, start, limit)
            return replace(page, tiles=_named(catalog, page.tiles))

    def wall_of(self, ids: list[int]) -> list[browse.Tile]:
        """These photos (a search's results) in the wall's order."""
        with self.noting_damage():
            catalog, view = self._view()
            return _named(catalog, browse.wall_of(view, ids))

    def palette(self, filters: Filters, top: int = browse.PALETTE_SWATCHES) -> dict[str, Any]:
        """The colours held by the most photos passing `filters` (`browse.library_palette`)."""
        with self.noting_damage():
            return browse.library_palette(self._view()[1], filters, self.store.searchable, top)

    def _view(self) -> tuple[Catalog, TableView]:
        """The catalog searched, and its table: a page's paths come from the catalog its rows came from."""
        catalog, _ = self.search_pair()
        return catalog, self.store.table_of(catalog).view()

    def _searcher_of(self, catalog: Catalog, live: LiveIndex) -> Searcher:
        with self._searcher_lock:
            s = self._searcher
            histograms = self.store.histograms_of(catalog)
            if (s is None or s.catalog is not catalog or s.live_index is not live or s.histograms is not histograms
                    or s.k_candidates != self.search_candidates):
                s = self._searcher = Searcher(catalog, live, self.search_candidates, histograms=histograms)
            return s

    def search_pair(self) -> tuple[Catalog, LiveIndex]:
        """What searches read: the index, or during an upgrade the previous one (complete, read-only)."""
        previous = self.upgrades.previous
        if previous is not None:
            return previous
        if not self.store.is_open:
            raise ChromaticaError("the daemon is starting: its index is not open yet; try again shortly")
        return self.store.pair()

    def located(self, image_id: int) -> tuple[str, bytes, bool] | None:
        """Where one catalog row's file is, for the web app's thumbnails."""
        catalog, _ = self.search_pair()
        recent = self.recent.get((catalog, catalog.generation), image_id)
        if recent is not None:
            return recent
        with self.noting_damage():
            return catalog.describe([image_id]).get(image_id)

    def stored(self, image_id: int) -> StoredImage | None:
        """One catalog row, for the web app; None when there is no such id."""
        catalog, _ = self.search_pair()
        with self.noting_damage():
            return catalog.rows([image_id]).get(image_id)

    def failures(self) -> list[Failure]:
        catalog = self.store.catalog
        with self.noting_damage():
            return self.reads.get(catalog, "failures", lambda: list(catalog.failed_files().values()))

    def roots(self) -> list[RootView]:
        return self.roots_keeper.views()

    def status(self) -> dict[str, Any]:
        return self.reporter.snapshot()

    @contextmanager
    def noting_damage(self) -> Iterator[None]:
        """A damaged catalog found by a read is handed to the indexer thread, which replaces it (the only
        thread that may); the caller hears what is happening."""
        try:
            yield
        except CatalogDamaged as exc:
            self.damage.report(exc)
            raise ChromaticaError(f"the catalog turned out damaged ({exc.reason}); the daemon is setting it "
                                  "aside and indexing the folder again: try again in a moment") from exc

    def keywords(self, action: str, folder: str | None, dry_run: bool) -> dict[str, Any]:
        """Colour keywords written to (or removed from) the sidecars of the photos in a folder, here."""
        if self.keyword_requests is None:
            raise ChromaticaError("this daemon writes no colour keywords")
        with self.noting_damage():
            return self.keyword_requests.request(action, folder, dry_run)

    # -- writes, on the indexer thread -----------------------------------------------------------
    def submit_retry_failed(self) -> Future[int]:
        return self.commands.call(self.writes.retry_failed)

    def submit_compact(self) -> Future[dict[str, int]]:
        return self.commands.call(self.writes.compact)

    def submit_relocate(self, old: str, new: str, dry_run: bool, force: bool) -> Future[dict[str, Any]]:
        """A second relocate while the first is waiting or running is refused."""
        lock = self.roots_keeper.relocating
        if not lock.acquire(blocking=False):
            raise ChromaticaError("another relocate is running; try again when it has finished")
        logger.info("relocate of %s to %s requested: it runs when the work in hand is done", old, new)

        def relocate() -> dict[str, Any]:
            try:
                return self.writes.relocate(old, new, dry_run, force)
            finally:
                lock.release()

        try:
            return self.commands.call(relocate)
        except BaseException:
            lock.release()
            raise


def _named(catalog: Catalog, tiles: list[browse.Tile]) -> list[browse.Tile]:
    return browse.named(tiles, catalog.describe(t.id for t in tiles))
