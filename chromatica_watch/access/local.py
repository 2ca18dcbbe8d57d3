"""`LocalIndex`: an index directory opened by this process, for when no daemon holds it (or it is not the
daemon's): read-only to search and list, writable to compact, relocate and clear failures.

DuckDB allows one writing process or several reading ones, never both: opening a catalog the daemon
holds raises IndexDirBusy, which is what `reach.use_index` relies on to wait for a daemon starting up.
The heavy libraries (DuckDB, FAISS, numpy) are imported in the operation that needs them: `status` and
anything that asks the daemon never load them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chromatica_watch.access.interface import IndexAccess
from chromatica_watch.access.match import Match
from chromatica_watch.core.config import Config

if TYPE_CHECKING:
    import numpy as np

    from chromatica_watch.search.ask import Ask, Filters


class LocalIndex(IndexAccess):
    """One index directory, each operation opening (and closing) its catalog for as long as it takes."""

    is_daemon = False

    def __init__(self, index_dir: Path, *, max_dimension: int, candidates: int, roots: Sequence[str] | None = None,
                 retired_grace_days: float = Config.retired_root_grace_days,
                 keywords_sidecar: str = Config.keywords_sidecar) -> None:
        """`roots`: the configured roots, the only ones searched and listed first by `roots()`; None (an
        index dir outside the config): every root the daemon has not retired is searched."""
        self.index_dir = Path(index_dir)
        self.max_dimension = max_dimension
        self.candidates = candidates
        self.configured_roots = roots
        self.retired_grace_days = retired_grace_days
        self.keywords_sidecar = keywords_sidecar

    @classmethod
    def of_config(cls, cfg: Config, index_dir: Path | None = None) -> LocalIndex:
        """The configured index (or `index_dir`, with the same settings), as the config says to search it."""
        return cls(Path(cfg.index_dir) if index_dir is None else index_dir, max_dimension=cfg.max_dimension,
                   candidates=cfg.search_candidates, roots=cfg.roots, retired_grace_days=cfg.retired_root_grace_days,
                   keywords_sidecar=cfg.keywords_sidecar)

    def _fingerprint(self) -> str:
        from chromatica_watch.colour.histogram import fingerprint

        return fingerprint(self.max_dimension)

    def search(self, query: np.ndarray, k: int, group_sidecars: bool = False) -> list[Match]:
        from chromatica_watch.search.ask import Ask

        return self.find(Ask(histogram=query), k, group_sidecars)[0]

    def find(self, ask: Ask, k: int, group_sidecars: bool = False) -> tuple[list[Match], int]:
        from chromatica_watch.search.finder import Finder
        from chromatica_watch.search.readonly import open_readonly
        from chromatica_watch.search.searcher import Searcher
        from chromatica_watch.storage.table import SearchTable

        catalog, live = open_readonly(self.index_dir, self.max_dimension, self.configured_roots)
        with catalog:
            searchable = self._searchable(catalog)
            # Loaded only for a search that scans it (seconds at a million photos): a whole palette alone
            # goes without, and its results without their details.
            finder = Finder(Searcher(catalog, live, self.candidates), SearchTable(catalog).view, searchable)
            found = finder.find(ask, k, group_sidecars)
        # Through JSON, as the daemon's answer comes: both ways give the same Match.
        return [Match.from_json(r.to_json()) for r in found.results], found.pending

    def palette(self, filters: Filters, top: int) -> dict[str, Any]:
        from chromatica_watch.search.browse import library_palette
        from chromatica_watch.storage.catalog import Catalog
        from chromatica_watch.storage.table import SearchTable

        with Catalog.open(self.index_dir, self._fingerprint(), read_only=True) as catalog:
            return library_palette(SearchTable(catalog).view(), filters, self._searchable(catalog), top)

    def _searchable(self, catalog: Any) -> tuple[str, ...]:
        """The roots searched: the configured ones, or (an index dir outside the config) every root the daemon
        has not retired."""
        if self.configured_roots is not None:
            return tuple(self.configured_roots)
        return tuple(r for r, rec in catalog.root_records().items() if rec.retired_at is None)

    def failures(self) -> list[dict[str, Any]]:
        from chromatica_watch.storage.catalog import Catalog

        with Catalog.open(self.index_dir, self._fingerprint(), read_only=True) as catalog:
            return [f.to_json() for f in catalog.failed_files().values()]

    def retry_failed(self) -> int:
        """Clears the failure records: the daemon tries those files again at its next start."""
        from chromatica_watch.storage.catalog import Catalog

        with Catalog.open(self.index_dir, self._fingerprint(), must_exist=True) as catalog:
            return catalog.clear_failures()

    def compact(self) -> tuple[int, int]:
        from chromatica_watch.storage.indexdir import compact

        return compact(self.index_dir, self._fingerprint())

    def roots(self) -> list[dict[str, Any]]:
        from chromatica_watch.ingest.roots import root_problem, root_views
        from chromatica_watch.storage.catalog import Catalog

        with Catalog.open(self.index_dir, None, read_only=True) as catalog:
            records = catalog.root_records()
        configured = tuple(self.configured_roots or ())
        problems = {r: root_problem(r) for r in configured}
        return [v.to_json() for v in root_views(records, configured, problems, self.retired_grace_days)]

    def relocate(self, old: str, new: str, *, dry_run: bool, force: bool) -> dict[str, Any]:
        from chromatica_watch.ingest.roots import relocate
        from chromatica_watch.storage.catalog import Catalog

        with Catalog.open(self.index_dir, self._fingerprint(), read_only=dry_run, must_exist=True) as catalog:
            report = relocate(catalog, old, new, dry_run=dry_run, force=force, rewrite=catalog.relocate)
        report["configured"] = None  # no daemon: whether NEW is configured is known at its next start
        return report

    def keywords(self, action: str, folder: str | None, *, dry_run: bool) -> dict[str, Any]:
        """With no daemon: the catalog opened read-only (the daemon is its only writer), so a sidecar that
        could not be written is reported here, not recorded for `failed`."""
        from chromatica_watch.imaging.sidecars import KeywordsUnavailable, available
        from chromatica_watch.offline.keywords import places, run
        from chromatica_watch.storage.catalog import Catalog

        if (why := available()) is not None:
            raise KeywordsUnavailable(why)
        with Catalog.open(self.index_dir, self._fingerprint(), read_only=True) as catalog:
            roots = (list(self.configured_roots) if self.configured_roots is not None else
                     [r for r, rec in catalog.root_records().items() if rec.retired_at is None])
            return run(catalog, places(folder, roots), action, self.keywords_sidecar, dry_run).to_json()
