"""The details pass: rows written before their catalog had the columns searches filter on (or copied in
without them by a merge) gain them in the background, a chunk per idle turn of the indexer loop. Colour
fields first, from the stored histograms (no file read); then the header details (date taken, camera,
orientation), read from each file's headers with the same reader ingest uses, never decoding it again.

Resumable by nature: what is left is whatever rows still have NULL columns, so a restart goes on where it
stopped. `status` shows how many photos are left (`details_pending`); searches work meanwhile, and a filter
says how many photos it could not judge yet.
"""

from __future__ import annotations

import logging

from chromatica_watch.core.errors import ImageError
from chromatica_watch.core.filetypes import extension
from chromatica_watch.core.paths import absolute_path
from chromatica_watch.core.records import PhotoDetails
from chromatica_watch.daemon.status import StatusReporter
from chromatica_watch.imaging.details import photo_details
from chromatica_watch.imaging.reading import read_file
from chromatica_watch.storage.catalog.details import Undetailed
from chromatica_watch.storage.store import Store

logger = logging.getLogger(__name__)

COLOUR_CHUNK = 4096  # rows a turn: a histogram read and a little arithmetic each
HEADER_CHUNK = 64  # files a turn: one read each (a turn stays well under a second)


class DetailsPass:
    def __init__(self, store: Store, reporter: StatusReporter) -> None:
        self.store = store
        self.reporter = reporter
        self.done = False  # nothing was left at the last look (new rows come with their details)
        self._announced = False

    def step(self) -> None:
        """One chunk, if any is left."""
        if self.done:
            return
        catalog = self.store.catalog
        uncoloured = catalog.uncoloured(COLOUR_CHUNK)
        if len(uncoloured):
            catalog.set_colours(uncoloured)
            return
        rows = catalog.undetailed(HEADER_CHUNK)
        if not rows:
            self.done = True
            self.reporter.update(details_pending=0)
            if self._announced:
                logger.info("details pass done: every photo's date taken, camera and orientation are read")
            return
        if not self._announced:
            self._announced = True
            logger.info("details pass: reading the headers of %d photo(s) indexed before dates and cameras were "
                        "kept (no photo is decoded again)", catalog.count_undetailed())
        catalog.set_details([r.image_id for r in rows], [read_details(r) for r in rows])
        self.reporter.update(details_pending=catalog.count_undetailed())


def read_details(row: Undetailed) -> PhotoDetails:
    """A row's details from its file's headers; from what the catalog knows if the file cannot be read now."""
    try:
        data = read_file(absolute_path((row.root, row.path)), follow_symlinks=False).data
    except (ImageError, OSError):
        data = b""
    return photo_details(data, extension(row.path), row.mtime_ns, row.width, row.height)
