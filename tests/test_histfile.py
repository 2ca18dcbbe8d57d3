"""The histogram file: a copy of the catalog's histograms that searches read by id; every record that reads
back whole is true, a cut or damaged one is read from the catalog instead, and a file of another catalog
is never read."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.records import Changes, NewImage
from chromatica_watch.ingest.pipeline import Committer, Vanished
from chromatica_watch.ingest.pool import Indexed, Task
from chromatica_watch.search.searcher import Searcher
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.histfile import HISTOGRAM_FILE, HistogramFile
from chromatica_watch.storage.index import PCA
from chromatica_watch.storage.store import Store
from tests.photo_corpus import mixes, photo_histograms

FP = H.fingerprint(256)
F16 = {"rtol": 2.0 ** -10, "atol": 1e-7}


def sparse(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = np.where(rng.random((n, H.TOTAL_BINS)) < 0.15, rng.random((n, H.TOTAL_BINS)), 0).astype(np.float32)
    return h / h.sum(axis=1, keepdims=True)


def opened(path: Path, identity: str, hists: np.ndarray, live: np.ndarray) -> HistogramFile:
    """A file read back and filled from `hists` (row i is id i + 1) for the `live` ids."""
    f = HistogramFile(path, identity)
    f.start(lambda: live, lambda ids: (ids, hists[ids - 1]))
    assert f.ready.wait(30)
    return f


def test_rows_read_back_by_id_in_the_order_asked_and_the_missing_left_out(tmp_path: Path) -> None:
    hists = sparse(300)
    f = opened(tmp_path / HISTOGRAM_FILE, "a" * 32, hists, np.arange(1, 201))
    try:
        f.append(np.arange(201, 301), hists[200:])
        asked = np.array([300, 7, 5000, 150, 201], np.int64)
        ids, got = f.read(asked)
        assert ids.tolist() == [300, 7, 150, 201]
        assert np.allclose(got, hists[ids - 1], **F16)
        assert f.count == 300
    finally:
        f.close()
    assert f.read(np.array([1, 2], np.int64))[0].tolist() == []  # closed (the daemon stopping): the catalog answers
    # Read back by a new opener: the same rows, nothing to add.
    again = opened(tmp_path / HISTOGRAM_FILE, "a" * 32, hists, np.arange(1, 301))
    try:
        ids, got = again.read(np.arange(1, 301))
        assert ids.tolist() == list(range(1, 301)) and np.allclose(got, hists, **F16)
    finally:
        again.close()


def test_a_record_cut_by_a_crash_is_dropped_and_filled_again_from_the_catalog(tmp_path: Path) -> None:
    path = tmp_path / HISTOGRAM_FILE
    hists = sparse(50, seed=1)
    opened(path, "a" * 32, hists, np.arange(1, 51)).close()
    whole = path.stat().st_size
    os.truncate(path, whole - 100)  # the last record loses its end, as a crash mid-append leaves it
    reread = HistogramFile(path, "a" * 32)
    fetched: list[int] = []

    def fetch(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fetched.extend(ids.tolist())
        return ids, hists[ids - 1]

    reread.start(lambda: np.arange(1, 51), fetch)
    try:
        assert reread.ready.wait(30)
        assert fetched == [50]  # only the cut record is read from the catalog
        ids, got = reread.read(np.arange(1, 51))
        assert ids.tolist() == list(range(1, 51)) and np.allclose(got, hists, **F16)
    finally:
        reread.close()
    assert path.stat().st_size == whole


def test_a_record_damaged_after_it_was_read_back_is_left_to_the_catalog(tmp_path: Path) -> None:
    path = tmp_path / HISTOGRAM_FILE
    hists = sparse(20, seed=2)
    f = opened(path, "a" * 32, hists, np.arange(1, 21))
    try:
        with path.open("r+b") as raw:  # a byte of the last record's values flipped on disk
            raw.seek(-3, os.SEEK_END)
            byte = raw.read(1)
            raw.seek(-3, os.SEEK_END)
            raw.write(bytes([byte[0] ^ 0xFF]))
        ids, got = f.read(np.arange(1, 21))
        assert ids.tolist() == list(range(1, 20))  # id 20 fails its checksum: not read from here
        assert np.allclose(got, hists[:19], **F16)
    finally:
        f.close()


def test_a_file_of_another_catalog_is_never_read(tmp_path: Path) -> None:
    path = tmp_path / HISTOGRAM_FILE
    opened(path, "a" * 32, sparse(30, seed=3), np.arange(1, 31)).close()
    other = sparse(10, seed=4)
    f = opened(path, "b" * 32, other, np.arange(1, 11))
    try:
        ids, got = f.read(np.arange(1, 31))
        assert ids.tolist() == list(range(1, 11)) and np.allclose(got, other, **F16)
    finally:
        f.close()


def test_the_daemons_store_keeps_the_file_and_searches_find_the_same_through_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    base = photo_histograms(rng, ("astronaut", "coffee", "chelsea", "rocket", "retina"), 10)
    hists = mixes(base, 600, rng)
    store = Store(tmp_path, FP, pca_from=256)
    try:
        store.open()
        catalog = store.catalog
        files = store.histograms_of(catalog)
        assert files is not None and files.ready.wait(30)
        # Rows committed through the store's committer go to the file as they are indexed.
        results = [Indexed(Task("/root", f"{i}.jpg".encode()), 1, 1, f"h{i}", 1, 1, h) for i, h in enumerate(hists)]
        outcome = Committer.of(store).commit(results, {}, Vanished())
        assert outcome.added == 600 and files.count == 600
        store.compact_if_needed(0.1)  # 600 live >= 256: rebuilt in the PCA layout
        assert store.live.layout == PCA
        queries = list(mixes(base, 12, rng))
        with_file = Searcher(catalog, store.live, k_candidates=100, histograms=store.histograms_of(catalog))
        catalog_only = Searcher(catalog, store.live, k_candidates=100)
        for q in queries:
            assert [(r.id, round(r.score, 6)) for r in with_file.search(q, 10)] == \
                   [(r.id, round(r.score, 6)) for r in catalog_only.search(q, 10)]
        assert store.histograms_of(Catalog.__new__(Catalog)) is None  # another catalog: none
    finally:
        store.close()


@pytest.mark.parametrize("rows", [0, 5])
def test_a_store_reopened_reads_its_file_back(tmp_path: Path, rows: int) -> None:
    hists = sparse(max(rows, 1), seed=7)
    store = Store(tmp_path, FP)
    store.open()
    try:
        if rows:
            ids = store.catalog.apply(Changes(added=[NewImage("/r", f"{i}".encode(), 1, 1, f"h{i}", 1, 1, h)
                                                     for i, h in enumerate(hists)]))
            store.live.add(np.array(ids), hists)
    finally:
        store.close()
    store = Store(tmp_path, FP)
    store.open()
    try:
        files = store.histograms_of(store.catalog)
        assert files is not None and files.ready.wait(30)
        assert files.count == rows  # filled from the catalog by the first store or this one
    finally:
        store.close()


def test_records_past_the_catalogs_highest_id_are_dropped_never_read(tmp_path: Path) -> None:
    """A catalog restored from an older copy keeps its identity, and gives its next rows ids the file already
    holds for other photos: the records past its highest id at the start are dropped, so rows committed
    while the file is read back come from the catalog, not from those records."""
    path = tmp_path / HISTOGRAM_FILE
    before = sparse(50, seed=8)
    opened(path, "a" * 32, before, np.arange(1, 51)).close()
    now = np.concatenate([before[:30], sparse(5, seed=9)])  # ids 31-35: other photos in the restored catalog
    fetched: list[int] = []

    def fetch(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fetched.extend(ids.tolist())
        return ids, now[ids - 1]

    reread = HistogramFile(path, "a" * 32, max_id=30)  # the catalog's highest id when the store opened
    reread.start(lambda: np.arange(1, 36), fetch)
    try:
        assert reread.ready.wait(30)
        assert fetched == [31, 32, 33, 34, 35]
        ids, got = reread.read(np.arange(1, 51))
        assert ids.tolist() == list(range(1, 36)) and np.allclose(got, now, **F16)
    finally:
        reread.close()
