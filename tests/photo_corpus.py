"""Histograms with the colours of real photos, for the search-quality and layout tests: crops of
scikit-image's photos, hue-rotated and brightness-scaled at random, and convex mixes of them; and the
exact search both kinds of test measure a searcher against, live and with a fifth of the rows deleted."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from chromatica_watch.colour import histogram as H
from chromatica_watch.colour import rerank as R
from chromatica_watch.core.records import Changes
from chromatica_watch.imaging.lab import srgb_to_lab
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.index import LiveIndex
from tests.conftest import photo


def photo_histograms(rng: np.random.Generator, names: Sequence[str], per_photo: int, *, hue_chance: float = 1.0,
                     brightness: tuple[float, float] = (0.7, 1.2)) -> np.ndarray:
    """`per_photo` crops of each photo; each hue-rotated with probability `hue_chance`, its value scaled
    by a factor drawn in `brightness`."""
    out = []
    for name in names:
        img = cv2.resize(photo(name), (160, 160), interpolation=cv2.INTER_AREA)
        for _ in range(per_photo):
            y, x = rng.integers(0, 80, 2)
            crop = img[y:y + rng.integers(40, 81), x:x + rng.integers(40, 81)]
            hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV).astype(np.int32)
            if hue_chance >= 1 or rng.random() < hue_chance:
                hsv[..., 0] = (hsv[..., 0] + rng.integers(0, 180)) % 180
            hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(*brightness), 0, 255)
            crop = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
            out.append(H.lab_histogram(srgb_to_lab(crop)))
    return np.stack(out)


def mixes(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n histograms, each a random convex mix of 2 to 4 base histograms."""
    parts = rng.integers(2, 5, n)
    out = np.empty((n, H.TOTAL_BINS), np.float32)
    for i, k in enumerate(parts):
        out[i] = rng.dirichlet(np.ones(k)) @ base[rng.choice(len(base), k, replace=False)]
    return out / out.sum(axis=1, keepdims=True)


def exact_top10(query: np.ndarray, ids: np.ndarray, hists: np.ndarray, vectors: np.ndarray,
                k_candidates: int) -> list[int]:
    """Brute force: L2 between the index vectors of every row given, the nearest k_candidates, the same
    rerank."""
    d = np.square(vectors - H.index_vectors(query)).sum(axis=1)
    top = np.argsort(d, kind="stable")[:k_candidates]
    got, _ = R.rerank(query, ids[top], hists[top], k=10)
    return got[:10].tolist()


def live_then_a_fifth_deleted(catalog: Catalog, live: LiveIndex, ids: np.ndarray,
                              rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    """("all live", mask), then ("20% tombstoned", mask) once a random fifth of the rows is deleted from
    the catalog and the index; the mask says which rows are alive."""
    alive = np.ones(len(ids), dtype=bool)
    yield "all live", alive
    dead = rng.choice(len(ids), len(ids) // 5, replace=False)
    catalog.apply(Changes(tombstoned=ids[dead].tolist()))
    live.mark_deleted(ids[dead])
    alive[dead] = False
    yield "20% tombstoned", alive

