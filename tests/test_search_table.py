"""The search table's view tells a result's header details as the catalog does (a search reads them from
the view, not from the catalog), and its dates filter to the second."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.records import Changes, NewImage, PhotoDetails
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.table import SearchTable

FP = H.fingerprint(256)

DETAILS = [
    PhotoDetails(datetime(2024, 7, 15, 10, 0, 0), "exif", "Canon EOS R5", "landscape"),
    PhotoDetails(datetime(2023, 12, 31, 23, 59, 59, 900_000), "mtime", None, "portrait"),  # an mtime, sub-second
    PhotoDetails(datetime(1961, 4, 12, 9, 7, 0, 500_000), "xmp", "Vostok", "square"),  # before 1970
    PhotoDetails(None, "mtime", None, None),
    None,  # not read yet
]


def test_the_views_details_are_the_catalogs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    hists = rng.random((len(DETAILS), H.TOTAL_BINS)).astype(np.float32)
    hists /= hists.sum(axis=1, keepdims=True)
    with Catalog.open(tmp_path, FP) as catalog:
        catalog.apply(Changes(added=[NewImage("/root", f"p{i}.jpg".encode(), 1, 1, f"h{i}", 30, 20, h, d)
                                     for i, (h, d) in enumerate(zip(hists, DETAILS, strict=True))]))
        ids = np.sort(catalog.live_ids())
        view = SearchTable(catalog).view()
        assert view.holds(ids) and not view.holds(np.array([ids.max() + 1]))
        assert view.details_of(ids) == catalog.details_of(ids.tolist())
        assert view.details_of(ids)[int(ids[1])]["taken"] == "2023-12-31T23:59:59"  # to the second, not rounded up
        assert view.details_of(ids)[int(ids[-1])] == {"taken": None, "taken_source": None, "camera": None,
                                                      "orientation": None}
