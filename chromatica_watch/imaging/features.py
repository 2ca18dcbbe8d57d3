"""A photo's features for the index, from its bytes: decoded pixels, CIE Lab, the 1152-bin histogram, and
the content hash of the same bytes (what ingest workers and query images compute alike)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chromatica_watch.colour.histogram import lab_histogram
from chromatica_watch.core.defaults import DEFAULT_MAX_PIXELS
from chromatica_watch.core.errors import ImageError
from chromatica_watch.core.hashing import hash_bytes
from chromatica_watch.imaging.decoders import Decoded, decode
from chromatica_watch.imaging.lab import srgb_to_lab


@dataclass(frozen=True)
class Features:
    histogram: np.ndarray  # float32[1152], sums to 1
    content_hash: str
    width: int
    height: int


def features(data: bytes, max_dimension: int, max_pixels: int = DEFAULT_MAX_PIXELS,
             content_hash: str | None = None, *, suffix: str = "") -> Features:
    """Histogram and content hash of one image file's bytes (pass the hash if already computed);
    `suffix` is the file's extension, for camera RAW files (see `decode`)."""
    decoded = decode(data, max_dimension, max_pixels, suffix=suffix)
    return features_of(decoded, content_hash if content_hash is not None else hash_bytes(data))


def features_of(decoded: Decoded, content_hash: str) -> Features:
    """The histogram of decoded pixels, with the file's content hash."""
    lab = srgb_to_lab(decoded.rgb)
    w = None if decoded.weights is None else decoded.weights.reshape(-1)
    try:
        hist = lab_histogram(lab, w)
    except ValueError as exc:
        raise ImageError(str(exc)) from exc
    return Features(histogram=hist, content_hash=content_hash, width=decoded.width, height=decoded.height)

