"""The Catalog: one DuckDB connection to an index dir's catalog, its parts (opening and the connection,
writes, reads, roots, read-back) put together."""

from __future__ import annotations

import logging
from pathlib import Path

from chromatica_watch.storage.catalog.details import CatalogDetails
from chromatica_watch.storage.catalog.reads import CatalogReads
from chromatica_watch.storage.catalog.roots import CatalogRoots
from chromatica_watch.storage.catalog.schema import CATALOG_FILE
from chromatica_watch.storage.catalog.verify import CatalogVerify
from chromatica_watch.storage.catalog.writes import CatalogWrites

logger = logging.getLogger(__name__)


class Catalog(CatalogWrites, CatalogReads, CatalogRoots, CatalogVerify, CatalogDetails):
    """One DuckDB connection. Writers serialize on `lock`; readers from other threads use cursors.

    After a fatal DuckDB error (a checkpoint that failed on a full disk) DuckDB refuses the database until it
    is opened again; the Catalog does that itself at its next use, so the caller only retries."""


def stored_fingerprint(index_dir: Path) -> str | None:
    """The histogram settings the catalog of `index_dir` was made with; None when there is no catalog."""
    if not (Path(index_dir) / CATALOG_FILE).exists():
        return None
    with Catalog.open(index_dir, None, read_only=True) as catalog:
        return catalog.fingerprint()
