"""The live index's layouts: flat HNSW and the PCA-96 projection (index.FLAT, index.PCA), with a real DuckDB
catalog and real FAISS indexes: tombstoned and hidden ids never come back, searches over the projection agree
with an exact search, a flat index grows into the PCA layout, and a checkpoint of the wrong layout is rebuilt.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.errors import UsageError
from chromatica_watch.core.records import Changes, NewImage
from chromatica_watch.ingest.pipeline import Committer
from chromatica_watch.search.ask import parse_ask
from chromatica_watch.search.finder import Finder
from chromatica_watch.search.query import ColorWeight, color_query_histogram
from chromatica_watch.search.searcher import Searcher
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.index import (
    FLAT,
    INDEX_FILE,
    MANIFEST_FILE,
    PCA,
    CheckpointInvalid,
    LiveIndex,
    configure_threads,
    default_threads,
    layout_for,
    load_checkpoint,
    read_manifest,
)
from chromatica_watch.storage.indexdir import compact, needs_reshape, open_live_index, rebuild_from
from chromatica_watch.storage.store import Store
from chromatica_watch.storage.table import SearchTable
from tests.photo_corpus import exact_top10, live_then_a_fifth_deleted, mixes, photo_histograms

FP = H.fingerprint(256)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "colorwheel",
          "retina", "cat", "coins", "camera")
PCA_FROM = 256  # small, for small corpora (the PCA layout needs at least 192 histograms to fit)


# -- queries --------------------------------------------------------------------------------------------
def colour_queries(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Queries of 1 to 3 random colours with random weights (as bench_search.make_queries makes them)."""
    queries = []
    for _ in range(n):
        k = int(rng.integers(1, 4))
        colours = [ColorWeight((int(c[0]), int(c[1]), int(c[2])), float(w))
                   for c, w in zip(rng.integers(0, 256, (k, 3)), rng.dirichlet(np.ones(k)), strict=True)]
        queries.append(color_query_histogram(colours))
    return queries


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread() -> Iterator[None]:
    """FAISS on one OpenMP thread: its threads spin-wait, and on a loaded 2-core machine that costs several
    times the work itself (these indexes are small)."""
    configure_threads(1)
    yield
    configure_threads(default_threads())


@pytest.fixture(scope="module")
def base() -> np.ndarray:
    return photo_histograms(np.random.default_rng(5), PHOTOS, 14, hue_chance=0.6, brightness=(0.6, 1.3))


def add_rows(catalog: Catalog, hists: np.ndarray, prefix: str = "mix") -> np.ndarray:
    first = catalog.next_id()
    rows = [NewImage("/photos", f"{prefix}/{first + i:06d}.jpg".encode(), 1000 + i, 10**18 + i, f"h{prefix}{i}",
                     640, 480, h) for i, h in enumerate(hists)]
    return np.array(catalog.apply(Changes(added=rows)), dtype=np.int64)


def stored(catalog: Catalog, ids: np.ndarray) -> np.ndarray:
    """The histograms of these ids as the catalog gives them back (float16, renormalized)."""
    got, hists = catalog.histogram_rows(ids)
    assert got.tolist() == ids.tolist()
    return hists


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog.open(tmp_path, FP)
    try:
        yield cat
    finally:
        cat.close()


# -- tombstones and hidden ids -----------------------------------------------------------------------------
def assert_never_found(live: LiveIndex, searcher: Searcher, excluded: np.ndarray, queries: np.ndarray,
                       k: int = 20) -> None:
    """Searching by each excluded row's own histogram (its nearest neighbour, were it searchable) returns
    k rows, none of them excluded; the Searcher too, on a few."""
    banned = set(excluded.tolist())
    for q in queries:
        found, _ = live.search(q, k)
        assert len(found) == k and not banned & set(found.tolist())
    for q in queries[:6]:
        results = searcher.search(q, k=10)
        assert len(results) == 10 and not banned & {r.id for r in results}


def test_tombstoned_and_hidden_ids_never_come_back_from_a_pca_index(
        tmp_path: Path, catalog: Catalog, base: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    ids = add_rows(catalog, mixes(base, 400, rng))
    live = rebuild_from(catalog, pca_from=PCA_FROM)
    assert live.layout == PCA and live.ntotal == 400 and not live.mapped
    hists = stored(catalog, ids)
    searcher = Searcher(catalog, live, k_candidates=50)
    # Before anything is excluded, every row finds itself (else the checks below would prove nothing).
    victims = rng.choice(len(ids), 60, replace=False)
    for v in victims[:30]:
        assert live.search(hists[v], 5)[0][0] == ids[v]
    for v in victims[:4]:
        assert searcher.search(hists[v], k=1)[0].id == ids[v]

    dead = ids[victims[:40]]
    catalog.apply(Changes(tombstoned=dead.tolist()))
    live.mark_deleted(dead)
    assert live.tombstone_count == 40
    assert_never_found(live, searcher, dead, hists[victims[:40]])

    hidden = ids[victims[40:]]
    live.hide(hidden)
    assert_never_found(live, searcher, np.concatenate([dead, hidden]), hists[victims])
    live.hide(np.zeros(0, np.int64))  # shown again
    assert live.search(hists[victims[50]], 5)[0][0] == ids[victims[50]]

    # Checkpointed, then 10 more tombstoned in the catalog only: loading catches them up from it.
    live.checkpoint(tmp_path, FP)
    assert read_manifest(tmp_path).layout == PCA
    more = ids[victims[40:50]]
    catalog.apply(Changes(tombstoned=more.tolist()))
    dead = np.concatenate([dead, more])
    loaded, recovery = open_live_index(tmp_path, catalog, FP, pca_from=PCA_FROM)
    assert recovery.loaded_checkpoint and loaded.layout == PCA and not loaded.mapped
    assert loaded.tombstone_count == 50
    assert_never_found(loaded, Searcher(catalog, loaded, k_candidates=50), dead, hists[victims[:50]])
    loaded.hide(ids[victims[50:]])
    assert_never_found(loaded, Searcher(catalog, loaded, k_candidates=50), ids[victims], hists[victims])
    catalog.close()

    # A reader maps the checkpoint (nothing to catch up), read-only, and excludes the same ids.
    with Catalog.open(tmp_path, FP, read_only=True) as reader:
        mapped, recovery = open_live_index(tmp_path, reader, FP, pca_from=PCA_FROM)
        assert recovery.loaded_checkpoint and mapped.mapped and mapped.layout == PCA
        assert mapped.tombstone_count == 50
        assert_never_found(mapped, Searcher(reader, mapped, k_candidates=50), dead, hists[victims[:50]])
        mapped.hide(ids[victims[50:]])
        assert_never_found(mapped, Searcher(reader, mapped, k_candidates=50), ids[victims], hists[victims])
        with pytest.raises(ValueError, match="read-only"):
            mapped.add(ids[:1] + 10_000, hists[:1])
    direct, _ = load_checkpoint(tmp_path, FP, mapped=True)  # the loader itself, no catalog
    direct.mark_deleted(dead)
    for v in victims[:10]:
        assert not set(dead.tolist()) & set(direct.search(hists[v], 20)[0].tolist())


# -- recall of the projection ------------------------------------------------------------------------------
def test_searches_over_the_pca_layout_agree_with_an_exact_search(catalog: Catalog, base: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    ids = add_rows(catalog, mixes(base, 4000, rng))
    live = rebuild_from(catalog, pca_from=1000)
    assert live.layout == PCA and live.ntotal == 4000
    k_candidates = 100
    searcher = Searcher(catalog, live, k_candidates=k_candidates)
    hists = stored(catalog, ids)  # what both rerank: the catalog's float16 histograms
    vectors = H.index_vectors(hists)
    queries = list(mixes(base, 15, rng)) + colour_queries(rng, 15)
    for phase, alive in live_then_a_fifth_deleted(catalog, live, ids, rng):
        overlap, same = [], 0
        for q in queries:
            got = [r.id for r in searcher.search(q, k=10)]
            assert len(got) == 10 and not set(got) & set(ids[~alive].tolist())
            exact = exact_top10(q, ids[alive], hists[alive], vectors[alive], k_candidates)
            overlap.append(len(set(got) & set(exact)) / 10)
            same += got == exact
        assert np.mean(overlap) >= 0.95, (phase, overlap)
        assert same >= 0.9 * len(queries), (phase, same)  # mostly the very same ranking


def test_the_candidates_of_the_pca_layout_are_those_of_an_exact_search(catalog: Catalog, base: np.ndarray) -> None:
    """Stage 1 alone: the projection's nearest k_candidates, asked for no more than that, are (nearly) the exact
    nearest by index vector: smoothed vectors live in few dimensions. They come with their stored histograms."""
    rng = np.random.default_rng(3)
    ids = add_rows(catalog, mixes(base, 3000, rng))
    live = rebuild_from(catalog, pca_from=1000)
    hists = stored(catalog, ids)
    vectors = H.index_vectors(hists)
    searcher = Searcher(catalog, live, k_candidates=100)
    found = []
    for q in list(mixes(base, 10, rng)) + colour_queries(rng, 10):
        exact = set(ids[np.argsort(np.square(vectors - H.index_vectors(q)).sum(axis=1), kind="stable")[:100]].tolist())
        got, got_hists = searcher.candidates(q, 10)
        assert len(got) == 100 and np.array_equal(got_hists, stored(catalog, got))
        found.append(len(exact & set(got.tolist())) / 100)
    assert np.mean(found) >= 0.99, found


def test_a_whole_palette_among_a_filters_rows_keeps_to_them_and_finds_their_nearest(
        catalog: Catalog, base: np.ndarray) -> None:
    """Both ways a filtered whole palette searches: the index among the filter's rows (a filter keeping a fifth
    or more), and its rows ranked by the vectors the index holds for them (fewer). Every result is the
    filter's, and the top 10 is an exact search's among its rows."""
    rng = np.random.default_rng(6)
    hists = mixes(base, 3000, rng)
    folders = {"few": add_rows(catalog, hists[:150], "few"), "many": add_rows(catalog, hists[150:1200], "many")}
    add_rows(catalog, hists[1200:], "rest")
    live = rebuild_from(catalog, pca_from=1000)
    finder = Finder(Searcher(catalog, live, k_candidates=100), SearchTable(catalog).view, ("/photos",))
    queries = list(mixes(base, 8, rng)) + colour_queries(rng, 8)
    for folder, members in folders.items():
        member_hists = stored(catalog, members)
        vectors = H.index_vectors(member_hists)
        overlap = []
        for q in queries:
            got = [r.id for r in finder.find(parse_ask(histogram=q, folders=[f"/photos/{folder}"]), 10).results]
            assert len(got) == 10 and set(got) <= set(members.tolist()), folder
            overlap.append(len(set(got) & set(exact_top10(q, members, member_hists, vectors, 100))) / 10)
        assert np.mean(overlap) >= 0.95, (folder, overlap)
    negative_bin = np.r_[-1e-4, queries[0][1:] + 1e-4]
    for bad in (negative_bin, np.zeros(H.TOTAL_BINS), np.full(H.TOTAL_BINS, np.nan), queries[0][:100]):
        with pytest.raises(UsageError, match="bad query histogram"):  # one line, as the plain search says it
            finder.find(parse_ask(histogram=bad, folders=["/photos/few"]), 10)


# -- a flat index grows into the PCA layout ----------------------------------------------------------------
def test_a_flat_index_grows_into_the_pca_layout_and_reopens_in_it(tmp_path: Path, base: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    store = Store(tmp_path, FP, pca_from=PCA_FROM)
    try:
        assert store.open() == (False, None)
        assert store.live.layout == FLAT

        def grow(n: int) -> np.ndarray:  # what the Committer does: catalog first, then the index
            new = add_rows(store.catalog, mixes(base, n, rng))
            store.live.add(new, stored(store.catalog, new))
            return new

        ids = np.concatenate([grow(100) for _ in range(3)])
        Committer.of(store).apply(Changes(tombstoned=ids[:60].tolist()))  # 300 vectors, 240 live: still below 256
        assert not needs_reshape(store.live, PCA_FROM)
        assert not store.compact_if_needed(0.5) and store.live.layout == FLAT and store.live.ntotal == 300
        ids = np.concatenate([ids, grow(40)])  # 280 live
        assert needs_reshape(store.live, PCA_FROM)
        assert store.compact_if_needed(0.5)  # rebuilt in the PCA layout, the tombstoned rows dropped
        assert store.live.layout == PCA and store.live.ntotal == 280 and store.live.tombstone_count == 0
        store.checkpoint()
        manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
        assert manifest["layout"] == PCA and manifest["vector_count"] == 280
        ids = np.concatenate([ids, grow(20)])  # added to the PCA index, past the checkpoint
        assert not store.compact_if_needed(0.5) and store.live.layout == PCA
    finally:
        store.close()

    live_ids = ids[60:]
    store = Store(tmp_path, FP, pca_from=PCA_FROM)
    try:
        rebuilt, message = store.open()
        assert not rebuilt and message is None  # the checkpoint loaded, and 20 rows caught up
        assert store.live.layout == PCA and store.live.ntotal == 300 and store.live.watermark == ids.max()
        searcher = Searcher(store.catalog, store.live, k_candidates=10)
        hists = stored(store.catalog, live_ids)
        missed = [int(i) for i, h in zip(live_ids, hists, strict=True) if searcher.candidates(h, 1)[0][0] != i]
        assert missed == []  # stage 1 (the projection's candidates, narrowed) finds every row first
        some = np.random.default_rng(9).choice(len(live_ids), 30, replace=False)
        assert [searcher.search(hists[n], k=1)[0].id for n in some] == live_ids[some].tolist()
    finally:
        store.close()


def test_compact_rebuilds_a_grown_flat_checkpoint_in_the_pca_layout(tmp_path: Path, base: np.ndarray) -> None:
    with Catalog.open(tmp_path, FP) as cat:
        ids = add_rows(cat, mixes(base, 300, np.random.default_rng(6)))
        live = rebuild_from(cat, pca_from=0)  # 0: never the PCA layout
        assert live.layout == FLAT and layout_for(10**9, 0) == FLAT
        live.checkpoint(tmp_path, FP)
    assert compact(tmp_path, FP, pca_from=1000) == (300, 300)
    assert read_manifest(tmp_path).layout == FLAT  # not big enough: left as it is
    assert compact(tmp_path, FP, pca_from=PCA_FROM) == (300, 300)
    assert read_manifest(tmp_path).layout == PCA
    loaded, _ = load_checkpoint(tmp_path, FP)
    assert loaded.layout == PCA and sorted(loaded.ids().tolist()) == ids.tolist()


# -- a checkpoint whose manifest names another layout ----------------------------------------------------
@pytest.mark.parametrize("written", [FLAT, PCA])
def test_a_checkpoint_whose_manifest_names_another_layout_is_rebuilt(
        tmp_path: Path, catalog: Catalog, base: np.ndarray, written: str) -> None:
    ids = add_rows(catalog, mixes(base, 300, np.random.default_rng(7)))
    pca_from = PCA_FROM if written == PCA else 0
    live = rebuild_from(catalog, pca_from=pca_from)
    assert live.layout == written
    live.checkpoint(tmp_path, FP)
    other = FLAT if written == PCA else PCA
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    manifest["layout"] = other  # the index file (and its checksum) unchanged: only the layout disagrees
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    for mapped in (False, True):
        with pytest.raises(CheckpointInvalid, match=f"is of the {written} layout, its manifest says {other}"):
            load_checkpoint(tmp_path, FP, mapped=mapped)
    rebuilt, recovery = open_live_index(tmp_path, catalog, FP, pca_from=pca_from)
    assert not recovery.loaded_checkpoint and recovery.rebuilt_reason is not None
    assert "layout" in recovery.rebuilt_reason
    assert rebuilt.layout == written and rebuilt.ntotal == 300
    hists = stored(catalog, ids[:20])
    assert [int(rebuilt.search(h, 1)[0][0]) for h in hists] == ids[:20].tolist()
    # And the other way: the manifest right, the index file of the other layout (with its checksum).
    other_index = rebuild_from(catalog, pca_from=PCA_FROM if other == PCA else 0)
    assert other_index.layout == other
    (tmp_path / "other").mkdir()
    other_index.checkpoint(tmp_path / "other", FP)
    (tmp_path / INDEX_FILE).write_bytes((tmp_path / "other" / INDEX_FILE).read_bytes())
    manifest = json.loads((tmp_path / "other" / MANIFEST_FILE).read_text())
    manifest["layout"] = written
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointInvalid, match=f"is of the {other} layout, its manifest says {written}"):
        load_checkpoint(tmp_path, FP)
    assert not open_live_index(tmp_path, catalog, FP, pca_from=pca_from)[1].loaded_checkpoint


def test_a_pca_threshold_below_what_the_projection_needs_does_not_break_the_rebuild(
        catalog: Catalog, base: np.ndarray) -> None:
    add_rows(catalog, mixes(base, 150, np.random.default_rng(8)))
    live = rebuild_from(catalog, pca_from=100)  # 150 live photos >= 100, but too few to fit 96 axes on: flat
    assert live.ntotal == 150 and live.layout == FLAT
    add_rows(catalog, mixes(base, 50, np.random.default_rng(9)))
    assert rebuild_from(catalog, pca_from=100).layout == PCA  # 200 >= 2 x 96
