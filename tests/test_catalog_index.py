"""The catalog (real DuckDB files) and the live index (real FAISS HNSW) with its checkpoint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.errors import IndexDirError
from chromatica_watch.core.records import Changes, Failure, Move, NewImage
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.index import (
    INDEX_FILE,
    MANIFEST_FILE,
    PCA_DIMS,
    CheckpointInvalid,
    LiveIndex,
    load_checkpoint,
    new_index,
)
from chromatica_watch.storage.indexdir import open_live_index

FP = H.fingerprint(256)


def random_hists(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = rng.random((n, H.TOTAL_BINS)).astype(np.float32) ** 8  # peaky, like real images
    return h / h.sum(axis=1, keepdims=True)


def new_images(hists: np.ndarray, prefix: str = "img") -> list[NewImage]:
    return [NewImage("/root", f"{prefix}{i}.jpg".encode(), 100 + i, 10**18 + i, f"hash-{prefix}{i}", 10, 8, h)
            for i, h in enumerate(hists)]


def test_catalog_round_trip_with_odd_bytes_and_failures(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path, FP)
    hists = random_hists(3)
    rows = new_images(hists)
    rows[1] = NewImage("/root", b"odd \xff\n name.jpg", 5, 6, "h-odd", 1, 1, hists[1])
    ids = cat.apply(Changes(added=rows, failed=[Failure("/root", b"bad.jpg", 3, 4, "not an image")]))
    assert ids == [1, 2, 3]
    live = cat.live_files("/root")
    assert set(live) == {b"img0.jpg", b"odd \xff\n name.jpg", b"img2.jpg"}
    got = cat.histograms(ids)
    assert np.allclose(got[2], hists[1], rtol=2.0 ** -10, atol=1e-7)
    assert cat.failed_files()[("/root", b"bad.jpg")].reason == "not an image"
    # Failing again bumps attempts; indexing the path clears the failure.
    cat.apply(Changes(failed=[Failure("/root", b"bad.jpg", 3, 4, "still bad")]))
    assert cat.failed_files()[("/root", b"bad.jpg")].attempts == 2
    cat.apply(Changes(added=[NewImage("/root", b"bad.jpg", 9, 9, "fixed", 1, 1, hists[0])]))
    assert cat.failed_files() == {}
    cat.close()


def test_tombstones_and_moves_keep_ids_and_never_reuse_them(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path, FP)
    ids = cat.apply(Changes(added=new_images(random_hists(3))))
    cat.apply(Changes(tombstoned=[ids[2]], moved=[Move(ids[0], "/root", b"renamed.jpg", 100, 10**18)]))
    assert set(cat.live_files("/root")) == {b"renamed.jpg", b"img1.jpg"}
    assert cat.live_files("/root")[b"renamed.jpg"].image_id == ids[0]
    assert cat.deleted_ids().tolist() == [ids[2]]
    assert cat.apply(Changes(added=new_images(random_hists(1, 5), "x"))) == [4]
    cat.close()


def test_arrow_insert_is_atomic_on_error(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path, FP)
    bad = Changes(added=new_images(random_hists(2)), moved=[Move(1, "/root", b"x", 1, 1)])
    bad.added[1] = NewImage("/root", b"x", 1, 1, "h", 1, 1, np.zeros(7, np.float32))  # wrong length
    with pytest.raises(Exception):  # noqa: B017 - whatever DuckDB/Arrow raise, nothing is committed
        cat.apply(bad)
    assert cat.counts()["live"] == 0
    cat.close()


def test_other_fingerprint_is_refused(tmp_path: Path) -> None:
    Catalog.open(tmp_path, FP).close()
    with pytest.raises(IndexDirError, match="histogram settings"):
        Catalog.open(tmp_path, H.fingerprint(128))


def test_search_excludes_tombstones_at_once() -> None:
    hists = random_hists(300)
    live = LiveIndex()
    ids = np.arange(1, 301)
    live.add(ids, hists)
    found, _ = live.search(hists[41], 5)
    assert found[0] == 42
    live.mark_deleted([42])
    found, _ = live.search(hists[41], 5)
    assert 42 not in found and len(found) == 5


@pytest.mark.parametrize("layout", ["flat", "pca"])
def test_a_search_among_some_ids_never_returns_another_and_their_distances_are_the_searchs(layout: str) -> None:
    hists = random_hists(3000, seed=3)
    live = LiveIndex(new_index(hists[:1000] if layout == "pca" else None))
    ids = np.arange(1, 3001) * 7  # ids far past the positions they are stored at
    live.add(ids[:1500], hists[:1500])
    live.add(ids[1500:], hists[1500:])
    rng = np.random.default_rng(4)
    for size in (300, 1500):  # a filter keeping a tenth of the photos or more: the finder walks the graph
        allowed = np.sort(rng.choice(ids[:2000], size, replace=False))
        for query in hists[2000:2010]:
            found, distances = live.search_among(query, 20, allowed, 1000)
            assert set(found.tolist()) <= set(allowed.tolist())
            assert len(found) == min(20, size)
            exact = live.distances_to(query, allowed)
            assert np.allclose(np.sort(exact)[:len(found)], distances, atol=1e-5)  # the nearest, found
            assert np.allclose(live.distances_to(query, found), distances, atol=1e-5)
    assert np.isinf(live.distances_to(hists[0], np.array([8, -1, 10**12]))).all()  # ids it does not hold
    assert live.reconstruct(int(ids[2999])).shape == ((H.TOTAL_BINS,) if layout == "flat" else (PCA_DIMS,))


def test_checkpoint_round_trip_and_corruption_is_detected(tmp_path: Path) -> None:
    hists = random_hists(50)
    live = LiveIndex()
    live.add(np.arange(1, 51), hists)
    manifest = live.checkpoint(tmp_path, FP)
    assert manifest.watermark == 50 and manifest.vector_count == 50
    loaded, m2 = load_checkpoint(tmp_path, FP)
    assert loaded.ntotal == 50 and m2.xxh3_128 == manifest.xxh3_128 and len(manifest.xxh3_128) == 32
    assert np.allclose(loaded.reconstruct(7), H.index_vectors(hists[6]))
    with pytest.raises(CheckpointInvalid, match="histogram settings"):
        load_checkpoint(tmp_path, H.fingerprint(64))
    blob = (tmp_path / INDEX_FILE).read_bytes()
    (tmp_path / INDEX_FILE).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointInvalid, match="checksum"):
        load_checkpoint(tmp_path, FP)
    flipped = bytearray(blob)
    flipped[len(blob) // 3] ^= 0x40
    (tmp_path / INDEX_FILE).write_bytes(bytes(flipped))
    with pytest.raises(CheckpointInvalid, match="checksum"):
        load_checkpoint(tmp_path, FP)
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(CheckpointInvalid, match="not a valid manifest"):
        load_checkpoint(tmp_path, FP)


def test_a_checkpoint_written_with_a_sha256_manifest_still_loads_and_is_still_checked(tmp_path: Path) -> None:
    live = LiveIndex()
    live.add(np.arange(1, 21), random_hists(20))
    live.checkpoint(tmp_path, FP)
    blob = (tmp_path / INDEX_FILE).read_bytes()
    raw = json.loads((tmp_path / MANIFEST_FILE).read_text())
    del raw["xxh3_128"]
    raw["sha256"] = hashlib.sha256(blob).hexdigest()  # as the manifests of earlier versions were written
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(raw))

    loaded, manifest = load_checkpoint(tmp_path, FP)
    assert loaded.ntotal == 20 and manifest.checksum.startswith("sha256 ")

    (tmp_path / INDEX_FILE).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(CheckpointInvalid, match="checksum"):
        load_checkpoint(tmp_path, FP)


def test_a_reader_with_nothing_to_catch_up_maps_the_checkpoint_and_one_with_rows_past_it_loads_it(
        tmp_path: Path) -> None:
    hists = random_hists(40)
    with Catalog.open(tmp_path, FP) as cat:
        ids = cat.apply(Changes(added=new_images(hists[:30])))
        live, _ = open_live_index(tmp_path, cat, FP)
        live.checkpoint(tmp_path, FP)
        cat.apply(Changes(tombstoned=[ids[3]]))
    loaded = LiveIndex()
    loaded.add(np.array(ids), hists[:30])

    with Catalog.open(tmp_path, FP, read_only=True) as reader:
        mapped, recovery = open_live_index(tmp_path, reader, FP)
        assert mapped.mapped and recovery.loaded_checkpoint and recovery.caught_up == 0
        for h in hists[:5]:
            found, _ = mapped.search(h, 10)
            want, _ = loaded.search(h, 11)
            assert ids[3] not in found.tolist()  # its tombstone holds in a mapped index too
            assert found.tolist() == [i for i in want.tolist() if i != ids[3]][:10]
        with pytest.raises(ValueError, match="read-only"):  # an error, never FAISS aborting the process
            mapped.add(np.array([999]), hists[30:31])

    with Catalog.open(tmp_path, FP) as cat:
        more = cat.apply(Changes(added=new_images(hists[30:], "b")))
    with Catalog.open(tmp_path, FP, read_only=True) as reader:
        caught_up, recovery = open_live_index(tmp_path, reader, FP)
        assert not caught_up.mapped and recovery.caught_up == 10
        assert set(more) <= set(caught_up.ids().tolist())


def test_open_live_index_catches_up_and_rebuilds(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path, FP)
    hists = random_hists(40)
    ids = cat.apply(Changes(added=new_images(hists[:30])))
    live, rec = open_live_index(tmp_path, cat, FP)
    assert rec.rebuilt_reason is not None and "manifest" in rec.rebuilt_reason
    assert live.ntotal == 30
    live.checkpoint(tmp_path, FP)
    more = cat.apply(Changes(added=new_images(hists[30:], "b"), tombstoned=[ids[0]]))
    live2, rec2 = open_live_index(tmp_path, cat, FP)
    assert rec2.loaded_checkpoint and rec2.caught_up == 10
    assert set(live2.ids().tolist()) == set(ids) | set(more)
    found, _ = live2.search(hists[0], 5)
    assert ids[0] not in found
    (tmp_path / INDEX_FILE).write_bytes(b"garbage")
    live3, rec3 = open_live_index(tmp_path, cat, FP)
    assert not rec3.loaded_checkpoint and "checksum" in (rec3.rebuilt_reason or "")
    assert set(live3.ids().tolist()) == set(cat.live_ids().tolist())
    cat.close()


def test_catalog_gives_back_histograms_in_the_order_asked_within_float16(tmp_path: Path) -> None:
    """Search reranks on histograms read back from the catalog's sparse float16 form, in the order of the
    index's candidates: the catalog's own values to float16 rounding, summing to 1, zeros kept zero."""
    rng = np.random.default_rng(3)
    hists = rng.dirichlet(np.full(H.TOTAL_BINS, 0.05), size=50).astype(np.float32)
    hists[7] = 0
    hists[7, 1151] = 1.0  # one bin, the last: the bitmap's last bit
    with Catalog.open(tmp_path, FP) as cat:
        ids = cat.apply(Changes(added=new_images(hists)))
        asked = np.array([*ids[::-1], 10_000], dtype=np.int64)  # the last one is not in the catalog
        got, back = cat.histogram_rows(asked)
    assert got.tolist() == ids[::-1]
    assert back.shape == (50, H.TOTAL_BINS) and back.dtype == np.float32
    assert np.allclose(back, hists[::-1], rtol=2.0 ** -10, atol=1e-7)
    assert np.array_equal(back > 0, hists[::-1].astype(np.float16) > 0)  # only float16 underflow is lost
    assert np.allclose(back.sum(axis=1), 1.0, atol=1e-5)
    assert back[-8, 1151] == 1.0 and back[-8].sum() == 1.0


def test_a_failed_checkpoint_stays_dirty_so_the_next_one_retries(tmp_path: Path) -> None:
    live = LiveIndex()
    live.add(np.array([1], np.int64), np.full((1, H.TOTAL_BINS), 1 / H.TOTAL_BINS, np.float32))
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    with pytest.raises(OSError):
        live.checkpoint(not_a_dir, H.fingerprint(256))
    assert live.dirty
    live.checkpoint(tmp_path, H.fingerprint(256))
    assert not live.dirty and (tmp_path / MANIFEST_FILE).exists()


def test_a_restart_after_compaction_loads_instead_of_counting_old_tombstones(tmp_path: Path) -> None:
    """Tombstones of rows that a rebuild already dropped from the index are not the index's: a start
    after a compaction must load the checkpoint with no tombstones, not rebuild again."""
    cat = Catalog.open(tmp_path, FP)
    ids = cat.apply(Changes(added=new_images(random_hists(40))))
    open_live_index(tmp_path, cat, FP)[0].checkpoint(tmp_path, FP)
    cat.apply(Changes(tombstoned=ids[:20]))  # half of everything ever indexed is deleted
    before = open_live_index(tmp_path, cat, FP)[0]
    assert (before.ntotal, before.tombstone_count) == (40, 20)  # these tombstones are in the index
    (tmp_path / MANIFEST_FILE).rename(tmp_path / "kept-manifest.json")
    rebuilt = open_live_index(tmp_path, cat, FP)[0]  # a rebuild holds live rows only
    assert (rebuilt.ntotal, rebuilt.tombstone_count) == (20, 0)
    fresh = LiveIndex()
    fresh.add_from(cat.iter_histograms())  # what the daemon's compaction does
    fresh.checkpoint(tmp_path, FP)
    cat.apply(Changes(tombstoned=[ids[25]]))  # one more delete after the compaction
    live, recovery = open_live_index(tmp_path, cat, FP)
    assert recovery.loaded_checkpoint and recovery.rebuilt_reason is None
    assert (live.ntotal, live.tombstone_count) == (20, 1)
    assert ids[25] not in live.search(cat.histograms([ids[25]])[ids[25]], 20)[0].tolist()
    cat.close()


def test_recovery_reports_how_far_it_is_at_each_chunk_it_adds(tmp_path: Path) -> None:
    """A rebuild at a million photos takes minutes: the daemon's stall watch must hear it move, and status
    says how far it is."""
    hists = random_hists(12)
    added: list[int] = []
    LiveIndex().add_from(((np.arange(n + 1, n + 5), hists[n:n + 4]) for n in (0, 4, 8)), added.append)
    assert added == [4, 8, 12]  # after each chunk, how many so far
    cat = Catalog.open(tmp_path, FP)
    ids = cat.apply(Changes(added=new_images(hists[:6])))
    cat.apply(Changes(tombstoned=ids[:1]))
    moves: list[tuple[int, int]] = []
    rebuilt, recovery = open_live_index(tmp_path, cat, FP, progress=lambda added, total: moves.append((added, total)))
    assert not recovery.loaded_checkpoint and rebuilt.ntotal == 5 and moves == [(5, 5)]
    rebuilt.checkpoint(tmp_path, FP)
    cat.apply(Changes(added=new_images(random_hists(3, 9), "late")))
    caught, recovery = open_live_index(tmp_path, cat, FP, progress=lambda added, total: moves.append((added, total)))
    assert caught.ntotal == 8
    assert recovery.caught_up == 3 and moves == [(5, 5), (3, 3)]
    cat.close()


def test_live_under_selects_a_folder_exactly_with_odd_bytes(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path, FP)
    paths = [b"a/b/x.jpg", b"a/b/c/y.jpg", b"a/b0/z.jpg", b"a/b.jpg", b"a/bc/q.jpg", b"a/b/\xff\xfe.jpg", b"a/a.jpg",
             b"b/b/x.jpg"]
    hist = random_hists(1)[0]
    cat.apply(Changes(added=[NewImage("/root", p, 1, 1, "h", 1, 1, hist) for p in paths]))
    cat.apply(Changes(added=[NewImage("/other", b"a/b/x.jpg", 1, 1, "h", 1, 1, hist)]))
    assert sorted(cat.live_under("/root", b"a/b")) == [b"a/b/c/y.jpg", b"a/b/x.jpg", b"a/b/\xff\xfe.jpg"]
    assert set(cat.live_under("/root", b".")) == set(paths)
    cat.close()


def test_a_checkpoint_of_plain_hellinger_vectors_is_made_again_from_the_catalog(tmp_path: Path) -> None:
    """An index written by a release before smoothed vectors (its manifest names none) is not searched with
    today's queries: it is rebuilt from the catalog's histograms, no image read, and checkpointed anew."""
    hists = random_hists(30)
    with Catalog.open(tmp_path, FP) as cat:
        ids = cat.apply(Changes(added=new_images(hists)))
        old = LiveIndex()
        old.add(np.array(ids), hists)
        old.checkpoint(tmp_path, FP)
        raw = json.loads((tmp_path / MANIFEST_FILE).read_text())
        assert raw.pop("vectors") == H.VECTORS
        (tmp_path / MANIFEST_FILE).write_text(json.dumps(raw))  # as the manifests of earlier releases were
        with pytest.raises(CheckpointInvalid, match="hellinger vectors"):
            load_checkpoint(tmp_path, FP)
        live, rec = open_live_index(tmp_path, cat, FP)
        assert not rec.loaded_checkpoint and "hellinger vectors" in (rec.rebuilt_reason or "")
        assert set(live.ids().tolist()) == set(ids)
        assert np.allclose(live.reconstruct(ids[4]), H.index_vectors(hists[4])[0], atol=1e-5)
        assert live.search(hists[4], 1)[0].tolist() == [ids[4]]


def test_index_vectors_are_the_square_root_of_the_histogram_smoothed_by_a_gaussian_over_bin_centres() -> None:
    rng = np.random.default_rng(4)
    hists = rng.random((3, H.TOTAL_BINS)) ** 8
    hists /= hists.sum(axis=1, keepdims=True)
    centres = H.bin_centers_lab().astype(np.float64)
    dense = np.exp(-np.square(centres[:, None, :] - centres[None, :, :]).sum(axis=2) / (2 * H.SMOOTHING ** 2))
    dense /= dense.sum(axis=1, keepdims=True)  # each bin's mass goes somewhere: the total is kept
    assert np.allclose(H.smoothed(hists), hists @ dense, atol=1e-6)
    vectors = H.index_vectors(hists)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Two palettes a few delta E apart, in neighbouring bins: unrelated bin by bin, near once smoothed.
    a, b, far = (np.zeros(H.TOTAL_BINS) for _ in range(3))
    a[H.TOTAL_BINS // 2], b[H.TOTAL_BINS // 2 + 1], far[5] = 1.0, 1.0, 1.0
    plain = np.linalg.norm(H.hellinger(a) - H.hellinger(b))
    assert plain == pytest.approx(np.sqrt(2))
    smooth = H.index_vectors(np.stack([a, b, far]))
    assert np.linalg.norm(smooth[0] - smooth[1]) < 0.5 * plain < np.linalg.norm(smooth[0] - smooth[2])
