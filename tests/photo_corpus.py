"""Histograms with the colours of real photos, for the search-quality and layout tests: crops of
scikit-image's photos, hue-rotated and brightness-scaled at random, and convex mixes of them."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from chromatica_watch import histogram as H
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
            out.append(H.lab_histogram(H.srgb_to_lab(crop)))
    return np.stack(out)


def mixes(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n histograms, each a random convex mix of 2 to 4 base histograms."""
    parts = rng.integers(2, 5, n)
    out = np.empty((n, H.TOTAL_BINS), np.float32)
    for i, k in enumerate(parts):
        out[i] = rng.dirichlet(np.ones(k)) @ base[rng.choice(len(base), k, replace=False)]
    return out / out.sum(axis=1, keepdims=True)
