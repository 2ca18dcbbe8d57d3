"""Search quality end to end: a real index (build, DuckDB, FAISS HNSW) of real image files.

A labelled set: solid, noisy and striped images of named colours, real photos from scikit-image and
near-duplicates of them. Then ANN recall on 3,000 histograms mixed from real photos, with and without
20% of them tombstoned.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.colour import rerank as R
from chromatica_watch.core.errors import IndexDirError, UsageError
from chromatica_watch.core.records import Changes, NewImage
from chromatica_watch.offline.build import BuildOptions, build
from chromatica_watch.search.query import color_query_histogram, image_query_histogram, parse_colors
from chromatica_watch.search.readonly import open_readonly
from chromatica_watch.search.searcher import Searcher
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.index import LiveIndex
from tests.conftest import photo, solid, write_rgb
from tests.photo_corpus import exact_top10, live_then_a_fifth_deleted, mixes, photo_histograms

NAMED = {
    "red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 68, 255), "yellow": (255, 230, 0),
    "teal": (0, 128, 128), "orange": (255, 136, 0), "purple": (128, 0, 128), "white": (255, 255, 255),
    "black": (0, 0, 0), "pink": (255, 105, 180),
}
GRAY = (128, 128, 128)
STRIPES = [("orange", "blue", 0.7), ("blue", "orange", 0.7), ("red", "green", 0.5), ("yellow", "purple", 0.6),
           ("teal", "white", 0.8), ("pink", "teal", 0.5), ("orange", "purple", 0.7)]
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")


def hexof(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def stripes(first: tuple[int, int, int], second: tuple[int, int, int], share: float,
            size: tuple[int, int] = (90, 100)) -> np.ndarray:
    """Vertical stripes with a period of 10 pixels, exactly `share` of them in the first colour."""
    img = solid(second, size)
    for x in range(size[1]):
        if x % 10 < round(share * 10):
            img[:, x] = first
    return img


def noisy(rgb: tuple[int, int, int], seed: int, size: tuple[int, int] = (90, 120)) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 6, (*size, 3))
    return np.clip(solid(rgb, size) + noise, 0, 255).astype(np.uint8)


def near_duplicates(img: np.ndarray) -> dict[str, np.ndarray]:
    h, w = img.shape[:2]
    brighter = np.clip(img.astype(np.float32) * 1.06, 0, 255).astype(np.uint8)
    return {"crop": img[h // 20: h - h // 20, w // 20: w - w // 20], "bright": brighter,
            "small": cv2.resize(img, (w * 3 // 5, h * 3 // 5), interpolation=cv2.INTER_AREA)}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, dict[str, float]]]]:
    """(dataset, index dir, composition of each synthetic file: colour name -> share)."""
    root = tmp_path_factory.mktemp("labelled")
    data = root / "pictures"
    compositions: dict[str, dict[str, float]] = {}
    for i, (name, rgb) in enumerate(NAMED.items()):
        write_rgb(data / "solid" / f"{name}.png", solid(rgb))
        write_rgb(data / "solid" / f"{name}_noisy.jpg", noisy(rgb, i), IMWRITE_JPEG_QUALITY=92)
        write_rgb(data / "mostly" / f"{name}_80.png", stripes(rgb, GRAY, 0.8))
        compositions[f"solid/{name}.png"] = {name: 1.0}
        compositions[f"solid/{name}_noisy.jpg"] = {name: 1.0}
        compositions[f"mostly/{name}_80.png"] = {name: 0.8, "gray": 0.2}
    for first, second, share in STRIPES:
        rel = f"stripes/{first}_{second}_{round(share * 100)}.png"
        write_rgb(data / rel, stripes(NAMED[first], NAMED[second], share))
        compositions[rel] = {first: share, second: round(1 - share, 2)}
    for name in PHOTOS:
        img = photo(name)
        # The Hubble deep field is a black photo: 88% of its pixels are within 10 delta E of black.
        labels = {"black": 0.88} if name == "hubble_deep_field" else {}
        write_rgb(data / "photos" / f"{name}.jpg", img, IMWRITE_JPEG_QUALITY=90)
        compositions[f"photos/{name}.jpg"] = labels
        for kind, dup in near_duplicates(img).items():
            rel = f"photos/{name}_{kind}.{'png' if kind == 'small' else 'jpg'}"
            write_rgb(data / rel, dup, IMWRITE_JPEG_QUALITY=85)
            compositions[rel] = labels
    out = root / "index"
    report = build(BuildOptions(dataset=data, output=out, batch_size=16, workers=2))
    assert report.failed == 0 and report.total_live == len(compositions)
    yield data, out, compositions


@pytest.fixture
def searcher(labelled: tuple[Path, Path, dict[str, dict[str, float]]]) -> Iterator[Searcher]:
    catalog, live = open_readonly(labelled[1])
    try:
        yield Searcher(catalog, live)
    finally:
        catalog.close()


def rel_paths(results: list, data: Path) -> list[str]:  # type: ignore[type-arg]
    return [os.path.relpath(r.display_path, data) for r in results]


@pytest.mark.parametrize("name", list(NAMED))
def test_color_query_returns_the_images_dominated_by_it_first(
        searcher: Searcher, labelled: tuple[Path, Path, dict[str, dict[str, float]]], name: str) -> None:
    data, _, compositions = labelled
    # "Dominated": at least 80% of the image. (By EMD a solid red is nearer to an orange query than
    # 70% orange + 30% blue is: all of red moves ~50 delta E, while 30% of the stripes move ~170.)
    dominated = {rel for rel, comp in compositions.items() if comp.get(name, 0) >= 0.8}
    results = searcher.search(color_query_histogram(parse_colors([hexof(NAMED[name])])), k=10)
    got = rel_paths(results, data)
    assert got[0] in (f"solid/{name}.png", f"solid/{name}_noisy.jpg"), got
    assert set(got[:len(dominated)]) == dominated, got
    scores = [r.score for r in results]
    assert scores == sorted(scores) and scores[0] < 3.0
    assert results[0].dominant_colors[0][1] > 0.9


@pytest.mark.parametrize(("query", "best", "after"), [
    (["#ff8800:0.7", "#0044ff:0.3"], "stripes/orange_blue_70.png", "stripes/blue_orange_70.png"),
    (["#0044ff:0.7 #ff8800:0.3"], "stripes/blue_orange_70.png", "stripes/orange_blue_70.png"),
    (["#008080:0.8", "#ffffff:0.2"], "stripes/teal_white_80.png", "solid/teal.png"),
    (["#ff0000", "#00a000"], "stripes/red_green_50.png", "solid/red.png"),
    (["#ffe600:0.6", "#800080:0.4"], "stripes/yellow_purple_60.png", "solid/yellow.png"),
])
def test_weighted_color_query_ranks_the_matching_mix_first(
        searcher: Searcher, labelled: tuple[Path, Path, dict[str, dict[str, float]]], query: list[str],
        best: str, after: str) -> None:
    got = rel_paths(searcher.search(color_query_histogram(parse_colors(query)), k=20), labelled[0])
    assert got[0] == best, got
    assert after in got and got.index(after) > 0


@pytest.mark.parametrize("name", PHOTOS)
def test_image_query_returns_itself_then_its_near_duplicates(
        searcher: Searcher, labelled: tuple[Path, Path, dict[str, dict[str, float]]], name: str) -> None:
    data = labelled[0]
    results = searcher.search(image_query_histogram(str(data / "photos" / f"{name}.jpg")), k=6)
    got = rel_paths(results, data)
    assert got[0] == f"photos/{name}.jpg" and results[0].score == 0.0 and results[0].similarity == 1.0
    assert set(got[1:4]) == {f"photos/{name}_crop.jpg", f"photos/{name}_bright.jpg",
                             f"photos/{name}_small.png"}, got


def test_results_explain_themselves_as_json(searcher: Searcher,
                                            labelled: tuple[Path, Path, dict[str, dict[str, float]]]) -> None:
    results = searcher.search(color_query_histogram(parse_colors(["#ff8800:0.7", "#0044ff:0.3"])), k=3)
    doc = json.loads(json.dumps([r.to_json() for r in results]))
    top = doc[0]
    assert top["path"] == str(labelled[0] / "stripes" / "orange_blue_70.png")
    assert top["relative_path"] == "stripes/orange_blue_70.png"
    assert 0 < top["similarity"] <= 1 and top["score"] >= 0
    assert [c["hex"] for c in top["dominant_colors"][:2]] == ["#ff8800", "#0044ff"]
    assert [c["share"] for c in top["dominant_colors"][:2]] == pytest.approx([0.7, 0.3], abs=0.02)
    with pytest.raises(UsageError):
        searcher.search(color_query_histogram(parse_colors(["#f00"])), k=0)
    with pytest.raises(UsageError):
        searcher.search(np.zeros(H.TOTAL_BINS, np.float32))


def snapshot(directory: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(directory.iterdir())}


def test_open_readonly_catches_up_in_memory_and_writes_nothing(
        labelled: tuple[Path, Path, dict[str, dict[str, float]]], tmp_path: Path) -> None:
    import shutil

    index_dir = tmp_path / "index"
    shutil.copytree(labelled[1], index_dir)
    # Rows committed after the last checkpoint (as if the daemon died before checkpointing them).
    catalog = Catalog.open(index_dir, H.fingerprint(256))
    magenta = color_query_histogram(parse_colors(["#ff00ff"]))
    [new_id] = catalog.apply(Changes(added=[NewImage("/elsewhere", b"late/magenta.png", 1, 1, "late", 1, 1,
                                                     magenta)]))
    red_id = catalog.live_files(str(labelled[0].resolve()))[b"solid/red.png"].image_id
    catalog.apply(Changes(tombstoned=[red_id]))
    catalog.close()
    before = snapshot(index_dir)

    catalog, live = open_readonly(index_dir)
    try:
        results = Searcher(catalog, live).search(magenta, k=3)
        assert results[0].id == new_id and results[0].display_path == "/elsewhere/late/magenta.png"
        red = Searcher(catalog, live).search(color_query_histogram(parse_colors(["#ff0000"])), k=5)
        assert red_id not in [r.id for r in red]
    finally:
        catalog.close()
    assert snapshot(index_dir) == before
    with pytest.raises(IndexDirError, match="histogram settings"):
        open_readonly(index_dir, max_dimension=128)


def test_rows_tombstoned_after_the_index_answered_are_dropped(
        labelled: tuple[Path, Path, dict[str, dict[str, float]]], tmp_path: Path) -> None:
    import shutil

    index_dir = tmp_path / "index"
    shutil.copytree(labelled[1], index_dir)
    catalog = Catalog.open(index_dir, H.fingerprint(256))
    try:
        from chromatica_watch.storage.indexdir import open_live_index

        live, _ = open_live_index(index_dir, catalog, H.fingerprint(256))
        searcher = Searcher(catalog, live)
        query = color_query_histogram(parse_colors(["#ff0000"]))
        first = searcher.search(query, k=3)
        catalog.apply(Changes(tombstoned=[first[0].id]))  # the catalog knows, the index not yet
        again = searcher.search(query, k=3)
        assert first[0].id not in [r.id for r in again]
        assert [r.id for r in again][:2] == [r.id for r in first][1:3]
    finally:
        catalog.close()


# -- ANN recall ---------------------------------------------------------------------------------

def test_ann_recall_after_rerank_with_and_without_tombstones(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    base = photo_histograms(rng, (*PHOTOS, "immunohistochemistry", "colorwheel", "retina", "cat", "coins", "camera"),
                            12)
    hists = mixes(base, 3000, rng)
    catalog = Catalog.open(tmp_path, H.fingerprint(256))
    try:
        ids = np.array(catalog.apply(Changes(added=[
            NewImage("/synthetic", f"mix{i:05d}.jpg".encode(), 1, 1, f"h{i}", 1, 1, h) for i, h in enumerate(hists)
        ])), dtype=np.int64)
        live = LiveIndex()
        live.add(ids, hists)
        searcher = Searcher(catalog, live, k_candidates=200)
        vectors = H.index_vectors(hists)
        queries = list(mixes(base, 30, rng)) + [
            color_query_histogram(parse_colors([f"#{c:06x}" for c in rng.integers(0, 1 << 24, 2)]))
            for _ in range(10)]
        for phase, alive in live_then_a_fifth_deleted(catalog, live, ids, rng):
            same, overlap = 0, []
            for n, q in enumerate(queries):
                ann = [r.id for r in searcher.search(q, k=10)]
                assert not set(ann) & set(ids[~alive].tolist())
                exact = exact_top10(q, ids[alive], hists[alive], vectors[alive], 200)
                same += set(ann) == set(exact)
                if n % 4 == 0:  # and against EMD by brute force over every live histogram
                    brute, _ = R.rerank(q, ids[alive], hists[alive], k=10)
                    overlap.append(len(set(ann) & set(brute[:10].tolist())) / 10)
            assert same / len(queries) >= 0.95, (phase, same, len(queries))
            assert np.mean(overlap) >= 0.9, (phase, overlap)
    finally:
        catalog.close()
