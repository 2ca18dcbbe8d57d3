"""An index directory opened read-only for searching, with no daemon: its catalog (read-only) and its live
index loaded from the checkpoint, caught up in memory from the catalog, nothing written."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from chromatica_watch.colour import histogram
from chromatica_watch.core.defaults import DEFAULT_MAX_DIMENSION

if TYPE_CHECKING:  # imported where used: a CLI search through the daemon never loads DuckDB or FAISS
    from chromatica_watch.storage.catalog import Catalog
    from chromatica_watch.storage.index import LiveIndex

logger = logging.getLogger(__name__)


def open_readonly(index_dir: Path, max_dimension: int = DEFAULT_MAX_DIMENSION,
                  searchable: Sequence[str] | None = None) -> tuple[Catalog, LiveIndex]:
    """Catalog (read-only) and live index of an index dir, for searching without the daemon.

    The checkpoint is loaded and verified, and catalog rows past its watermark are added in memory
    (an unusable checkpoint is rebuilt in memory, with a warning). Nothing is written to the
    directory. Only the `searchable` roots are searched (the configured ones); None: every root not
    retired by the daemon. Raises IndexDirError when the daemon holds the catalog, or it was built
    with another `max_dimension`. The caller closes the catalog.
    """
    return open_pair_readonly(Path(index_dir), histogram.fingerprint(max_dimension), searchable)


def open_pair_readonly(index_dir: Path, fingerprint: str,
                       searchable: Sequence[str] | None = None) -> tuple[Catalog, LiveIndex]:
    """`open_readonly` for an index of the given histogram settings (the daemon's previous index during an
    upgrade is of other settings than its own)."""
    from chromatica_watch.storage.catalog import Catalog
    from chromatica_watch.storage.indexdir import open_live_index

    catalog = Catalog.open(index_dir, fingerprint, read_only=True)
    try:
        live, recovery = open_live_index(index_dir, catalog, fingerprint)
        if searchable is None:
            searchable = [r for r, rec in catalog.root_records().items() if rec.retired_at is None]
        live.hide(catalog.ids_outside(searchable))
    except BaseException:
        catalog.close()
        raise
    logger.debug("opened %s read-only: %d vectors, %d caught up from the catalog", index_dir, live.ntotal,
                 recovery.caught_up)
    return catalog, live
