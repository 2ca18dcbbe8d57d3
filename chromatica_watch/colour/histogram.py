"""The 1152-bin CIE Lab histogram: pure functions on arrays (no I/O, no logging), numpy alone.

Its input is CIE Lab pixels: sRGB -> Lab is imaging/lab.py's (OpenCV's SIMD kernels, with the decoders that
own OpenCV), so a process that only reads an index, or builds one from histograms it is sent, never loads
OpenCV through this module.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

ALGORITHM_VERSION = 2  # 2: embedded ICC profiles (Display P3, Adobe RGB...) converted to sRGB first
L_BINS, A_BINS, B_BINS = 8, 12, 12
TOTAL_BINS = L_BINS * A_BINS * B_BINS  # 1152
L_RANGE = (0.0, 100.0)
A_RANGE = (-86.0, 98.0)
B_RANGE = (-108.0, 95.0)

# The grid is padded by one bin on each side of each axis so that every pixel's eight neighbouring
# centres exist as plain offsets from one base index; the padding is folded back into the edge bins
# afterwards (a value beyond the outermost centre gives all its weight to the edge bin).
_PADDED = (L_BINS + 2, A_BINS + 2, B_BINS + 2)
_PADDED_SIZE = _PADDED[0] * _PADDED[1] * _PADDED[2]
_STRIDES = (_PADDED[1] * _PADDED[2], _PADDED[2], 1)
_AXES = ((L_RANGE, L_BINS), (A_RANGE, A_BINS), (B_RANGE, B_BINS))
# Lab -> position in padded bin units, u = (v - lo) * n / (hi - lo) + 0.5, per axis as (scale, offset); the
# centre of bin i is at u = i + 1.5, and clamping v to [lo, hi] is clamping u to [0.5, n + 0.5].
_U_FROM_LAB = tuple((np.float32(n / (hi - lo)), np.float32(0.5 - lo * n / (hi - lo))) for (lo, hi), n in _AXES)
# Consecutive pixels of a photo mostly land in the same bins, and bincount's `out[i] += w` then waits
# on its own previous store; spreading consecutive pixels over a few copies of the grid ("lanes")
# lets those additions overlap. 4 lanes make bincount ~2.4x faster; the copies are summed at the end.
_LANES = 4
_LANE_OFFSETS = np.arange(_LANES, dtype=np.intp) * _PADDED_SIZE


def _axis_positions(lab: np.ndarray) -> list[np.ndarray]:
    """Per axis, each pixel's clamped position in padded bin units (>= 0.5): three float32 arrays.

    One multiply-add per axis in float32 (each axis depends on its own coordinate alone): ~2x faster here
    than OpenCV's 3x4 transform and split, and within 1e-6 of it."""
    positions = []
    for axis, ((scale, offset), (_, n)) in enumerate(zip(_U_FROM_LAB, _AXES, strict=True)):
        u = lab[:, axis] * scale
        u += offset
        np.maximum(u, np.float32(0.5), out=u)
        np.minimum(u, np.float32(n + 0.5), out=u)
        positions.append(u)
    return positions


def lab_histogram(lab: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Tri-linear soft histogram of Lab pixels (N, 3): float32[1152], L1-normalized.

    Values outside the bin ranges are clamped. `weights` (N,) lets pixels count partly or not at
    all (fully transparent ones weigh 0). Raises ValueError when no pixel carries weight.
    """
    lab = np.asarray(lab, dtype=np.float32).reshape(-1, 3)
    if len(lab) == 0:
        raise ValueError("no pixel carries weight (image fully transparent or empty)")
    base = np.zeros(len(lab), dtype=np.intp)
    upper = []
    for u, stride in zip(_axis_positions(lab), _STRIDES, strict=True):
        below = np.floor(u)
        upper.append(u - below)  # weight of the upper neighbouring centre
        base += below.astype(np.intp) * stride
    whole = len(base) - len(base) % _LANES
    base[:whole].reshape(-1, _LANES)[:] += _LANE_OFFSETS
    fl, fa, fb = upper
    gl, ga, gb = 1 - fl, 1 - fa, 1 - fb
    if weights is not None:
        w = np.asarray(weights, dtype=np.float32).reshape(-1)
        fl, gl = fl * w, gl * w
    size = _LANES * _PADDED_SIZE
    grid = np.zeros(size, dtype=np.float64)
    sl, sa, _ = _STRIDES
    # Every corner is counted at the pixel's base index and the counts shifted to the corner after:
    # bincount(base + k) is bincount(base) moved by k, and the padding keeps base + k inside its lane.
    for w_la, offset in ((gl * ga, 0), (gl * fa, sa), (fl * ga, sl), (fl * fa, sl + sa)):
        grid[offset:] += np.bincount(base, weights=w_la * gb, minlength=size)[:size - offset]
        grid[offset + 1:] += np.bincount(base, weights=w_la * fb, minlength=size)[:size - offset - 1]
    g = grid.reshape(_LANES, *_PADDED).sum(axis=0)
    g[1] += g[0]
    g[-2] += g[-1]
    g[:, 1] += g[:, 0]
    g[:, -2] += g[:, -1]
    g[:, :, 1] += g[:, :, 0]
    g[:, :, -2] += g[:, :, -1]
    hist = g[1:-1, 1:-1, 1:-1].ravel()
    total = hist.sum()
    if not total > 0:
        raise ValueError("no pixel carries weight (image fully transparent or empty)")
    return (hist / total).astype(np.float32)


def hellinger(hist: np.ndarray) -> np.ndarray:
    """sqrt of an L1-normalized histogram: unit L2 norm, so L2 and inner product rank alike."""
    return np.sqrt(np.maximum(np.asarray(hist, dtype=np.float32), 0.0))


# What the live index holds per photo: the Hellinger vector (square root) of the histogram smoothed by a
# Gaussian of SMOOTHING delta E over the bin centres. Results are ranked by EMD, which moves mass across bins;
# plain Hellinger compares bin by bin, so two palettes a few delta E apart, split over neighbouring bins, look
# unrelated, and the EMD top 10 often lay outside its 200 nearest (0.825 of it in them, at 100,000 photos).
# Smoothed, the 200 nearest hold 0.935 of it (bench_contain's whole-palette queries, no filter). The
# Gaussian is separable on the grid, so smoothing is three small products, ~2 us a photo.
VECTORS = "smoothed-hellinger-15"
SMOOTHING = 15.0


def _axis_kernel(lo: float, hi: float, n: int) -> np.ndarray:
    """(n, n): the Gaussian's weight from each bin centre (rows) to each (columns), each row summing to 1 (a
    bin's mass is spread, none lost: a smoothed histogram keeps its mass, and its square root a unit norm)."""
    width = (hi - lo) / n
    centres = lo + width * (np.arange(n, dtype=np.float64) + 0.5)
    kernel = np.exp(-np.square(centres[:, None] - centres[None, :]) / (2.0 * SMOOTHING ** 2))
    return kernel / kernel.sum(axis=1, keepdims=True)


_KERNELS = tuple(_axis_kernel(lo, hi, n).astype(np.float32) for (lo, hi), n in _AXES)


def smoothed(hists: np.ndarray) -> np.ndarray:
    """float32 (n, 1152): histograms (rows, or one) smoothed by the Gaussian over bin centres."""
    # Batched small products along each axis, no transposed copies: 1.8 ms for 1,200 histograms, where
    # tensordot's transposes took 70.
    flat = np.asarray(hists, dtype=np.float32).reshape(-1, TOTAL_BINS)
    n = len(flat)
    along_l = np.matmul(_KERNELS[0].T, flat.reshape(n, L_BINS, A_BINS * B_BINS))
    along_a = np.matmul(_KERNELS[1].T, along_l.reshape(n * L_BINS, A_BINS, B_BINS))
    return np.ascontiguousarray(np.matmul(along_a, _KERNELS[2]).reshape(n, TOTAL_BINS))


def index_vectors(hists: np.ndarray) -> np.ndarray:
    """float32 (n, 1152): what the live index holds for these histograms (VECTORS), unit norm for a
    normalized histogram: squared L2 between two is twice one minus their smoothed Bhattacharyya coefficient."""
    return np.sqrt(np.maximum(smoothed(hists), 0.0))


def bin_centers_lab() -> np.ndarray:
    """Lab coordinates of the 1152 bin centres, float32 (1152, 3), in bin order."""

    def centres(lo: float, hi: float, n: int) -> np.ndarray:
        width = (hi - lo) / n
        return lo + width * (np.arange(n, dtype=np.float64) + 0.5)

    grid = np.meshgrid(centres(*L_RANGE, L_BINS), centres(*A_RANGE, A_BINS), centres(*B_RANGE, B_BINS),
                       indexing="ij")
    return np.stack([g.ravel() for g in grid], axis=1).astype(np.float32)


def histogram_config(max_dimension: int) -> dict[str, object]:
    return {
        "algorithm_version": ALGORITHM_VERSION,
        "bins": [L_BINS, A_BINS, B_BINS],
        "ranges": [list(L_RANGE), list(A_RANGE), list(B_RANGE)],
        "max_dimension": max_dimension,
        "color": "ICC->sRGB-D65->CIELab(skimage rgb2lab)",
        "assignment": "trilinear",
    }


def fingerprint(max_dimension: int) -> str:
    """A short stable digest of everything that makes two histograms comparable."""
    blob = json.dumps(histogram_config(max_dimension), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# -- stored form: sparse float16 ------------------------------------------------------------------
# After soft binning a photo uses ~180 of the 1152 bins (median; the rest are zeros), and float16
# changes no rerank's top 10 (bench_layouts). So the catalog stores each histogram as a bitmap of its
# non-zero bins (144 bytes) followed by their values in float16, in bin order: ~500 bytes instead of
# 4,608. float16 keeps 11 significant bits; the rerank treats differences within that as none.
BITMAP_BYTES = TOTAL_BINS // 8


def pack(hists: np.ndarray) -> list[bytes]:
    """Each row of (n, 1152) histograms in its stored form."""
    h16 = np.ascontiguousarray(np.asarray(hists, dtype=np.float32).reshape(-1, TOTAL_BINS).astype(np.float16))
    present = h16 != 0
    bitmaps = np.packbits(present, axis=1, bitorder="little")
    values = h16[present]  # row by row, each row's in bin order
    ends = np.cumsum(present.sum(axis=1))
    starts = ends - present.sum(axis=1)
    return [bitmap.tobytes() + values[s:e].tobytes()
            for bitmap, s, e in zip(bitmaps, starts.tolist(), ends.tolist(), strict=True)]


def unpack(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """(n, 1152) float32 histograms, L1-normalized again, from stored forms laid end to end in `data`
    (uint8) with row i at data[offsets[i]:offsets[i + 1]] (an Arrow binary column's two buffers).
    Raises ValueError for a form that does not add up."""
    offsets = np.asarray(offsets, dtype=np.int64)
    data = np.asarray(data, dtype=np.uint8)
    n = len(offsets) - 1
    if n <= 0:
        return np.zeros((0, TOTAL_BINS), np.float32)
    starts, lengths = offsets[:-1], np.diff(offsets) - BITMAP_BYTES
    if np.any(lengths < 0) or np.any(lengths % 2):
        raise ValueError("a stored histogram is cut short")
    bitmaps = data[starts[:, None] + np.arange(BITMAP_BYTES)]
    present = np.unpackbits(bitmaps, axis=1, bitorder="little").view(bool)
    # The value bytes of every row, end to end: each row's run shifted past its bitmap.
    total = int(lengths.sum())
    shift = np.repeat(starts + BITMAP_BYTES - (np.cumsum(lengths) - lengths), lengths)
    values = data[np.arange(total) + shift].view(np.float16)
    if int(present.sum()) != len(values):
        raise ValueError("a stored histogram's bitmap does not match its values")
    out = np.zeros((n, TOTAL_BINS), np.float32)
    out.reshape(-1)[np.flatnonzero(present)] = values.astype(np.float32)  # 4x a boolean-mask assignment
    sums = out.sum(axis=1, keepdims=True)
    np.divide(out, sums, out=out, where=sums > 0)
    return out
