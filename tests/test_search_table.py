"""The search table's view tells a result's header details as the catalog does (a search reads them from
the view, not from the catalog), and its dates filter to the second."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.records import Changes, Move, NewImage, PhotoDetails
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


def test_a_row_moved_after_a_look_is_seen_at_the_next_and_new_rows_join_the_wall(tmp_path: Path) -> None:
    """Rows updated since the table's last look (by the catalog's clock, with a margin) are read again: a move
    shows in the next view, however old the row's other rows are."""
    rng = np.random.default_rng(2)
    hists = rng.random((3, H.TOTAL_BINS)).astype(np.float32)
    hists /= hists.sum(axis=1, keepdims=True)
    with Catalog.open(tmp_path, FP) as catalog:
        catalog.apply(Changes(added=[NewImage("/root", f"a/p{i}.jpg".encode(), 1, 1, f"h{i}", 30, 20, h, None)
                                     for i, h in enumerate(hists[:2])]))
        table = SearchTable(catalog)
        before = table.view()
        moved = int(before.ids[0])
        catalog.apply(Changes(moved=[Move(moved, "/root", b"b/p0.jpg", 1, 1)],
                              added=[NewImage("/root", b"a/p2.jpg", 1, 1, "h2", 30, 20, hists[2], None)]))
        after = table.view()
        folders = {int(i): after.folders[f][1] for i, f in zip(after.ids, after.folder, strict=True)}
        assert folders[moved] == b"b" and after.n == 3
        assert sorted(after.wall_order.tolist()) == [0, 1, 2]
