"""What the daemon keeps of catalog reads between writes: ReadCache (counts, roots, failures) and
RecentResults (where the latest results' files are, for their thumbnails). Both must never serve
anything read before a write."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.records import Changes, Failure, NewImage
from chromatica_watch.daemon.read_cache import ReadCache, RecentResults
from chromatica_watch.search.searcher import Result
from chromatica_watch.storage.catalog import Catalog

FP = H.fingerprint(256)


def _image(name: str) -> NewImage:
    hist = np.zeros(H.TOTAL_BINS, np.float32)
    hist[7] = 1.0
    return NewImage("/photos", name.encode(), 10, 1, "h-" + name, 1, 1, hist)


def test_a_read_is_reused_until_the_catalog_is_written_and_never_after(tmp_path: Path) -> None:
    reads = ReadCache()
    with Catalog.open(tmp_path, FP) as catalog:
        calls = []

        def counted() -> dict[str, int]:
            calls.append(1)
            return catalog.counts()

        assert reads.get(catalog, "counts", counted)["live"] == 0
        assert reads.get(catalog, "counts", counted)["live"] == 0 and len(calls) == 1  # no write: not read again
        before = catalog.generation
        catalog.apply(Changes(added=[_image("a.jpg")]))
        assert catalog.generation > before
        assert reads.get(catalog, "counts", counted)["live"] == 1 and len(calls) == 2
        catalog.apply(Changes(failed=[Failure("/photos", b"bad.jpg", 3, 1, "not an image")]))
        assert reads.get(catalog, "counts", counted)["failed"] == 1 and len(calls) == 3
        catalog.clear_failures()
        assert reads.get(catalog, "counts", counted)["failed"] == 0 and len(calls) == 4
    with Catalog.open(tmp_path, FP) as reopened:  # another catalog object: never its predecessor's values
        assert reads.get(reopened, "counts", reopened.counts)["live"] == 1


def _result(image_id: int, path: bytes) -> Result:
    return Result(id=image_id, root="/photos", path=path, display_path="/photos/" + path.decode(), score=1.0,
                  similarity=0.9, dominant_colors=())


def test_recent_results_hold_only_for_the_generation_they_were_read_under() -> None:
    catalog = object()
    recent = RecentResults(capacity=2)
    recent.remember((catalog, 5), [_result(1, b"a.jpg"), _result(2, b"b.jpg")])
    assert recent.get((catalog, 5), 1) == ("/photos", b"a.jpg", True)
    assert recent.get((catalog, 6), 1) is None  # written since: back to the catalog
    assert recent.get((object(), 5), 1) is None  # another catalog (replaced after damage, an upgrade)
    recent.remember((catalog, 5), [_result(3, b"c.jpg")])
    assert recent.get((catalog, 5), 1) is None and recent.get((catalog, 5), 3) is not None  # capacity 2
    recent.remember((catalog, 6), [_result(4, b"d.jpg")])
    assert recent.get((catalog, 6), 2) is None and recent.get((catalog, 6), 4) is not None
