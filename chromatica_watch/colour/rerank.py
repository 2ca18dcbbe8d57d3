"""Stage 2 of a search: an Earth Mover's Distance between colour histograms, and dominant colours.

Pure functions on arrays (no I/O, clock or logging).

The distance is the exact EMD (Wasserstein-1) between two L1-normalized 1152-bin histograms with
ground cost = Euclidean distance between the bins' Lab centres, i.e. how far, in CIE76 delta E,
one image's colour mass must move on average to become the other's. It is computed approximately, to
within a fraction of a percent (measured against exact EMD in bench/bench_search.py and the tests):

1. Only the difference matters. The ground cost is a metric, so EMD(a, b) = EMD((a-b)+, (a-b)-):
   mass the two histograms share stays in place at no cost (Kantorovich-Rubinstein). The two parts
   have disjoint supports and equal mass t = |a-b|_1 / 2; identical histograms are at distance 0
   exactly, and no bin is ever transported to itself.
2. Each part is pruned to its heaviest bins holding `frac` of its mass (at most `cap` bins) and
   renormalized to t: a few dozen to a few hundred bins per side.
3. Many candidates at once: problems are sorted by size and solved in padded chunks by a batched
   Sinkhorn with epsilon scaling (8 -> 0.5 delta E), stabilized by absorbing the potentials into
   the kernel at each epsilon step, with float32 matrix-vector products.
4. The value reported is the dual objective of the Sinkhorn potentials made feasible by two
   c-transforms: a true lower bound of the (pruned) EMD, with no entropic blur in it.
5. A ranking needs accuracy only near its top: all candidates get a cheap screening solve, and the
   best `refine` of them (and any candidate the refined values would let into that group) the
   accurate one.

emd(a, b) and emd(b, a) are bit-identical: the sign of the difference is normalized before anything
else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chromatica_watch.colour.histogram import A_BINS, B_BINS, L_BINS, TOTAL_BINS, bin_centers_lab

_CENTRES = bin_centers_lab().astype(np.float64)
_CENTRES.setflags(write=False)
_CENTRE_NORMS = (_CENTRES ** 2).sum(axis=1)
_CENTRE_NORMS.setflags(write=False)
# A fixed generic direction: the sign of (a - b) . _ORIENT picks which side is "positive", so that
# (a, b) and (b, a) become the very same problem.
_ORIENT = np.sqrt(np.arange(1, TOTAL_BINS + 1, dtype=np.float64))
_ORIENT.setflags(write=False)
_MAX_CHUNK = 256  # problems solved together, padded to the largest
_SMALL_VOLUME = 100_000  # padded cost-matrix entries below which a chunk need not be tight
_MAX_WASTE = 1.3  # otherwise: at most this many padded entries per real one
# Bin differences below these are rounding, not colour (one pixel of a 256 x 192 image weighs 2e-5): float32
# through sqrt and back stays below 3e-7, and the catalog's float16 keeps 11 significant bits (within 2^-11 of
# the value after renormalizing), so the same photo, one side read back from the catalog, is at 0.
_ROUNDING = 1e-6
_STORED_PRECISION = 2.0 ** -10
_MIN_MASS = 1e-7  # relative to t: lighter bins are noise, and would strain float32 kernels


@dataclass(frozen=True)
class Solver:
    """How hard to try: support pruning and the epsilon-scaling schedule (eps in delta E, iterations).

    The first epsilon must be at least 4: exp(-cost/eps) stays representable in float32 for costs up
    to the Lab diameter (~290).
    """

    frac: float
    cap: int
    steps: tuple[tuple[float, int], ...]


SCREEN = Solver(frac=0.95, cap=32, steps=((4.0, 5), (2.0, 10)))
ACCURATE = Solver(frac=0.995, cap=256, steps=((8.0, 10), (4.0, 10), (2.0, 10), (1.0, 10), (0.5, 20)))
DEFAULT_REFINE = 10  # = the default k: results past the k-th are never shown


class _Problems:
    """The signed differences of one query against many candidates (rows), oriented.

    Only the bins where the query or some candidate has mass are kept (about half of them for photos:
    the rest of the grid is colours no one of them has), so every array below is that much smaller.
    """

    def __init__(self, query: np.ndarray, cands: np.ndarray) -> None:
        query = np.asarray(query, dtype=np.float64).reshape(TOTAL_BINS)
        cands = np.asarray(cands)
        self.bins = np.nonzero((query > 0) | (cands > 0).any(axis=0))[0]  # global bin of each column
        q, c = query[self.bins][None, :], cands[:, self.bins].astype(np.float64)
        d = q - c
        d[np.abs(d) < np.maximum(_ROUNDING, _STORED_PRECISION * np.maximum(q, c))] = 0.0
        flip = d @ _ORIENT[self.bins] < 0
        d[flip] = -d[flip]
        self.diff = d
        self.mass = np.maximum(d, 0.0).sum(axis=1)  # t: the mass each side must move

    @staticmethod
    def _heaviest(d: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
        """The `cap` most positive and `cap` most negative columns of each row, unordered: one argpartition
        with two pivots serves both sides. Keys in float32: it runs 2.5x faster than on float64, and a
        near-tie at the cut only swaps which of two equally light bins is kept."""
        width = d.shape[1]
        if 2 * cap > width:
            every = np.broadcast_to(np.arange(width), d.shape)
            return every, every
        part = np.argpartition(d.astype(np.float32), (cap - 1, width - cap), axis=1)
        return part[:, width - cap:], part[:, :cap]

    @staticmethod
    def _side(signed: np.ndarray, columns: np.ndarray, t: np.ndarray, solver: Solver) -> tuple[np.ndarray, np.ndarray]:
        """Those columns heaviest first, cut to `solver.frac` of t (masses zeroed after the cut)."""
        mass = np.maximum(np.take_along_axis(signed, columns, axis=1), 0.0)
        order = np.argsort(-mass, axis=1, kind="stable")
        columns = np.take_along_axis(columns, order, axis=1)
        mass = np.take_along_axis(mass, order, axis=1)
        before = np.cumsum(mass, axis=1) - mass  # mass of the heavier bins before each one
        keep = (before < solver.frac * t[:, None]) & (mass > _MIN_MASS * t[:, None])
        return columns, np.where(keep, mass, 0.0)

    def solve(self, which: np.ndarray, solver: Solver) -> np.ndarray:
        """EMD of the problems `which` (row indices), float64; 0 for identical histograms."""
        which = np.asarray(which, dtype=np.int64)
        out = np.zeros(len(which), dtype=np.float64)
        if len(which) == 0 or len(self.bins) == 0:
            return out
        d, t = self.diff[which], self.mass[which]
        pos_heavy, neg_heavy = self._heaviest(d, min(solver.cap, d.shape[1]))
        pos_cols, pos_mass = self._side(d, pos_heavy, t, solver)
        neg_cols, neg_mass = self._side(-d, neg_heavy, t, solver)
        pos_bins, neg_bins = self.bins[pos_cols], self.bins[neg_cols]
        n_pos, n_neg = (pos_mass > 0).sum(axis=1), (neg_mass > 0).sum(axis=1)
        todo = np.nonzero((n_pos > 0) & (n_neg > 0))[0]
        todo = todo[np.argsort(n_pos[todo] * n_neg[todo], kind="stable")]
        for chunk in _chunks(n_pos[todo], n_neg[todo]):
            rows = todo[chunk]
            p, n = int(n_pos[rows].max()), int(n_neg[rows].max())
            a, b = pos_mass[rows, :p], neg_mass[rows, :n]
            out[rows] = t[rows] * _sinkhorn_dual(pos_bins[rows, :p], a / a.sum(axis=1, keepdims=True),
                                                 neg_bins[rows, :n], b / b.sum(axis=1, keepdims=True),
                                                 solver.steps)
        return out


def _chunks(n_pos: np.ndarray, n_neg: np.ndarray) -> list[slice]:
    """Consecutive groups of problems (sorted by size) to pad together: small problems are packed
    densely (per-call overhead dominates), large ones only with little padding waste."""
    chunks, start = [], 0
    while start < len(n_pos):
        end, p, n, volume = start + 1, int(n_pos[start]), int(n_neg[start]), int(n_pos[start] * n_neg[start])
        while end < len(n_pos) and end - start < _MAX_CHUNK:
            p2, n2 = max(p, int(n_pos[end])), max(n, int(n_neg[end]))
            volume2 = volume + int(n_pos[end] * n_neg[end])
            padded = (end + 1 - start) * p2 * n2
            if padded > _SMALL_VOLUME and padded > _MAX_WASTE * volume2:
                break
            end, p, n, volume = end + 1, p2, n2, volume2
        chunks.append(slice(start, end))
        start = end
    return chunks


def _costs(bins_a: np.ndarray, bins_b: np.ndarray) -> np.ndarray:
    """(B, P, N) Euclidean Lab distances between the centres of two batches of bin lists."""
    xa, xb = _CENTRES[bins_a], _CENTRES[bins_b]
    sq = _CENTRE_NORMS[bins_a][:, :, None] + _CENTRE_NORMS[bins_b][:, None, :] - 2.0 * np.matmul(
        xa, xb.transpose(0, 2, 1))
    return np.sqrt(np.maximum(sq, 0.0))


def _sinkhorn_dual(bins_a: np.ndarray, a: np.ndarray, bins_b: np.ndarray, b: np.ndarray,
                   steps: tuple[tuple[float, int], ...]) -> np.ndarray:
    """Batched OT between rows of `a` (B, P) and `b` (B, N), both summing to 1: the c-transformed
    Sinkhorn dual, a lower bound of the exact transport cost that converges to it as eps shrinks."""
    f32 = np.float32
    valid_a, valid_b = a > 0, b > 0
    both = valid_a[:, :, None] & valid_b[:, None, :]
    cost64 = np.where(both, _costs(bins_a, bins_b), np.inf)
    cost = cost64.astype(f32)
    a32, b32 = a.astype(f32), b.astype(f32)
    f: np.ndarray = np.zeros(a.shape, f32)
    g: np.ndarray = np.zeros(b.shape, f32)
    one, tiny = f32(1.0), f32(1e-38)  # tiny: padded rows and columns give 0 / tiny = 0, not NaN
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        for eps, iterations in steps:
            # Absorbed kernel: exponents are <= 0 once the previous step ended on a row update.
            kernel = np.exp((f[:, :, None] + g[:, None, :] - cost) * f32(1.0 / eps))
            v = valid_b.astype(f32)
            kv = np.matmul(kernel, v[:, :, None])[:, :, 0]
            for _ in range(iterations):
                u = a32 / (kv + tiny)
                v = b32 / (np.matmul(u[:, None, :], kernel)[:, 0, :] + tiny)
                kv = np.matmul(kernel, v[:, :, None])[:, :, 0]
            u = a32 / (kv + tiny)
            f = f + f32(eps) * np.log(np.where(valid_a, u, one))
            g = g + f32(eps) * np.log(np.where(valid_b, v, one))
            f = np.where(np.isfinite(f), f, 0).astype(f32)
            g = np.where(np.isfinite(g), g, 0).astype(f32)
        # c-transforms (in float64): (f2, g2) is feasible, so its objective is a valid lower bound.
        # cost64 is already inf in padded rows and columns, and f, g2 are finite: no masking needed.
        g2 = np.where(valid_b, (cost64 - f.astype(np.float64)[:, :, None]).min(axis=1), 0.0)
        f2 = np.where(valid_a, (cost64 - g2[:, None, :]).min(axis=2), 0.0)
    return np.maximum((f2 * a).sum(axis=1) + (g2 * b).sum(axis=1), 0.0)


def emd_many(query: np.ndarray, cands: np.ndarray, solver: Solver = ACCURATE) -> np.ndarray:
    """EMD (delta E units) from one histogram to each row of `cands` (K, 1152), all with `solver`."""
    cands = np.asarray(cands).reshape(-1, TOTAL_BINS)
    if len(cands) == 0:
        return np.zeros(0, dtype=np.float64)
    return _Problems(query, cands).solve(np.arange(len(cands)), solver)


def emd(a: np.ndarray, b: np.ndarray) -> float:
    """EMD between two histograms (delta E units): 0 for identical ones, symmetric."""
    return float(emd_many(a, np.asarray(b).reshape(1, TOTAL_BINS))[0])


def rerank(query_hist: np.ndarray, cand_ids: np.ndarray, cand_hists: np.ndarray, *, k: int | None = None,
           refine: int = DEFAULT_REFINE) -> tuple[np.ndarray, np.ndarray]:
    """(ids, EMD distances) of all candidates, ascending, ties broken by id.

    Every candidate gets a cheap screening estimate; the first max(k, refine) of the result are
    guaranteed to carry the accurate distance (refining is repeated until no estimate undercuts them).
    """
    ids = np.asarray(cand_ids, dtype=np.int64).reshape(-1)
    hists = np.asarray(cand_hists).reshape(-1, TOTAL_BINS)
    if len(ids) != len(hists):
        raise ValueError(f"{len(ids)} candidate ids but {len(hists)} histograms")
    if len(ids) == 0:
        return ids, np.zeros(0, dtype=np.float64)
    need = min(len(ids), max(refine, k or 0))
    problems = _Problems(query_hist, hists)
    everyone = np.arange(len(ids))
    if need >= len(ids):
        dist = problems.solve(everyone, ACCURATE)
    else:
        dist = problems.solve(everyone, SCREEN)
        accurate = np.zeros(len(ids), dtype=bool)
        margin = max(8, need // 4)  # screening is off by a few percent either way: refine some spare
        while True:
            ranked = np.lexsort((ids, dist))
            if accurate[ranked[:need]].all():
                break
            todo = ranked[:need + margin]
            todo = todo[~accurate[todo]]
            dist[todo] = problems.solve(todo, ACCURATE)
            accurate[todo] = True
    order = np.lexsort((ids, dist))
    return ids[order], dist[order]


# -- dominant colours ---------------------------------------------------------------------------

# skimage.color.colorconv: rgb_from_xyz = inv(xyz_from_rgb), the D65 / 2-degree white point.
_XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=np.float64,
)
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_RGB_FROM_XYZ.setflags(write=False)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float64)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) -> sRGB in [0, 1], float64 (N, 3); the inverse of imaging.lab.srgb_to_lab.

    Follows `skimage.color.lab2rgb`: a negative Z is clipped to 0, out-of-gamut results are clipped.
    """
    lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
    fy = (lab[:, 0] + 16.0) / 116.0
    fx = fy + lab[:, 1] / 500.0
    fz = np.maximum(fy - lab[:, 2] / 200.0, 0.0)
    f = np.stack([fx, fy, fz], axis=1)
    xyz = np.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787) * _WHITE_D65
    linear = xyz @ _RGB_FROM_XYZ.T
    positive = np.maximum(linear, 0.0031308)  # only to keep the unused branch of where() finite
    rgb = np.where(linear > 0.0031308, 1.055 * positive ** (1 / 2.4) - 0.055, 12.92 * linear)
    return np.clip(rgb, 0.0, 1.0)


def hex_of_lab(lab: np.ndarray) -> str:
    """'#rrggbb' of one Lab colour (clipped into sRGB)."""
    return _hex(lab_to_srgb(lab)[0])


def _hex(rgb: np.ndarray) -> str:
    r, g, b = (round(float(c) * 255.0) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def grid_neighbours(shape: tuple[int, int, int]) -> tuple[tuple[int, ...], ...]:
    """For each cell of a 3-D grid (flat, C order), the cells at most one step away on every axis (itself
    included)."""
    grid = np.stack(np.unravel_index(np.arange(int(np.prod(shape))), shape), axis=1)
    steps = np.stack(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    near = grid[:, None, :] + steps[None, :, :]  # (cells, 27, 3)
    inside = ((near >= 0) & (near < np.array(shape))).all(axis=2)
    flat = np.ravel_multi_index(tuple(np.clip(near, 0, np.array(shape) - 1).transpose(2, 0, 1)), shape)
    return tuple(tuple(row[ok].tolist()) for row, ok in zip(flat, inside, strict=True))


_NEIGHBOURS = grid_neighbours((L_BINS, A_BINS, B_BINS))


def dominant_colors(hist: np.ndarray, top: int = 5, min_share: float = 0.001) -> list[tuple[str, float]]:
    """The `top` main colours of a histogram as ('#rrggbb', share), largest share first.

    Soft binning spreads one colour over the corners of its grid cell, so bins are grouped around
    peaks: in decreasing order of mass, a bin joins the heaviest peak it touches (grid neighbours,
    diagonals included: centres at most one bin step apart on every axis) or becomes a peak itself.
    A group's colour is the mass-weighted mean of its bins' Lab centres, which undoes the tri-linear
    split exactly for a single colour. Bins lighter than `min_share` are ignored, so the shares sum to
    at most 1.
    """
    hist = np.asarray(hist, dtype=np.float64).reshape(TOTAL_BINS)
    total = hist.sum()
    if not total > 0 or top <= 0:
        return []
    shares = hist / total
    bins = np.nonzero(shares >= min_share)[0]
    bins = bins[np.argsort(-shares[bins], kind="stable")]
    owner = [-1] * TOTAL_BINS  # the peak each grid cell touches first, i.e. its heaviest peak
    labels = []  # each bin's group
    peaks = 0
    for b in bins.tolist():
        group = owner[b]
        if group < 0:  # touches no peak: a new one, which claims its free neighbours
            group, peaks = peaks, peaks + 1
            for n in _NEIGHBOURS[b]:
                if owner[n] < 0:
                    owner[n] = group
        labels.append(group)
    weights = shares[bins]
    masses = np.bincount(labels, weights=weights, minlength=peaks)
    chosen = np.argsort(-masses, kind="stable")[:top]
    weighted = np.stack([np.bincount(labels, weights=weights * _CENTRES[bins, c], minlength=peaks)
                         for c in range(3)], axis=1)
    labs = weighted[chosen] / masses[chosen, None]
    return [(_hex(rgb), float(masses[i])) for i, rgb in zip(chosen.tolist(), lab_to_srgb(labs), strict=True)]
