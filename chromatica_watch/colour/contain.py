"""How much of a photo *is* a colour, and whether it has colour at all: pure functions on histograms.

A whole-palette query asks "are these photos' colours, all of them, like this?" (rerank's EMD). People
mostly ask another question: "does this photo *have* orange in it, about a quarter of it?". That is the
share of the photo's colour mass near the asked colour, whatever the rest of the photo is:

    held(photo, c) = sum over bins b of  h[b] * K(|centre_b - c|)

with K a kernel on the distance (CIE76 delta E) from the bin's Lab centre to the colour: 1 up to
`NEAR`, falling linearly to 0 at `FAR`. Soft binning spreads one colour over the eight corners of its
bin cell, each at most ~13 delta E from it, so held is divided by what a photo of that colour alone holds:
a photo a quarter of which is exactly the colour holds 0.25 of it; a rust, coral or gold photo (33, 23 and
48 delta E from orange) hold next to nothing (the radii were chosen on the look-alike sets of
tests/test_contain_search.py). A second,
sharper kernel measures how much is the very shade, to order photos that all hold enough.

It is linear in the histogram, so an upper bound over coarse cells (2 x 2 x 2 bins each, the most a
cell's bins are worth) is cheap to scan for a million photos: `coarse` is what the search table keeps
per photo, `held_upper` the bound. The exact value needs the histogram (`held`).

Tone: a photo without colour (greyscale, or toned monochrome such as sepia or cyanotype) has all its
chroma on one ray from the neutral axis (its tone), and little of it. `tone` measures both.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chromatica_watch.colour import fused
from chromatica_watch.colour.histogram import A_BINS, B_BINS, L_BINS, TOTAL_BINS, bin_centers_lab, lab_histogram

NEAR, FAR = 8.0, 22.0  # held: full weight up to NEAR delta E from the bin's centre, none past FAR
SHARP_NEAR, SHARP_FAR = 0.0, 12.0  # the very shade
SHADE_WEIGHT = 0.25  # how much the very shade counts next to holding the colour at all
SLIGHT = 0.05  # "--not red": more than this share of red excludes a photo

CENTRES = bin_centers_lab().astype(np.float64)
CENTRES.setflags(write=False)
_CELL = (2, 2, 2)  # fine bins per coarse cell, per axis
COARSE_SHAPE = (L_BINS // _CELL[0], A_BINS // _CELL[1], B_BINS // _CELL[2])
COARSE_CELLS = int(np.prod(COARSE_SHAPE))  # 144


def _cell_of_bins() -> np.ndarray:
    light, a, b = np.unravel_index(np.arange(TOTAL_BINS), (L_BINS, A_BINS, B_BINS))
    return np.ravel_multi_index((light // _CELL[0], a // _CELL[1], b // _CELL[2]), COARSE_SHAPE).astype(np.intp)


CELL_OF_BIN = _cell_of_bins()
CELL_OF_BIN.setflags(write=False)


def distances(lab: Sequence[float] | np.ndarray) -> np.ndarray:
    """float64[1152]: delta E (CIE76) from a Lab colour to each bin's centre."""
    return np.sqrt(((CENTRES - np.asarray(lab, dtype=np.float64).reshape(1, 3)) ** 2).sum(axis=1))


def kernel(lab: Sequence[float] | np.ndarray, near: float = NEAR, far: float = FAR) -> np.ndarray:
    """float32[1152]: how much each bin counts as the colour (1 up to `near` delta E, 0 past `far`); read-only
    (one per colour and radii, kept: a search scores its candidates a round at a time)."""
    return _kernel(_key(lab), near, far)


@functools.lru_cache(maxsize=256)
def _kernel(lab: tuple[float, float, float], near: float, far: float) -> np.ndarray:
    out = np.clip((far - distances(lab)) / (far - near), 0.0, 1.0).astype(np.float32)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=256)
def _pure(lab: tuple[float, float, float], near: float, far: float) -> float:
    """What a photo of nothing but this colour holds of it under the kernel: the scale that makes it 1."""
    alone = lab_histogram(np.array([lab], np.float32))
    return max(float(alone @ kernel(lab, near, far)), 1e-6)


def held(hists: np.ndarray, lab: Sequence[float] | np.ndarray, near: float = NEAR, far: float = FAR) -> np.ndarray:
    """float32[n]: the share of each photo (rows of (n, 1152) histograms) that is the colour: 1 for a photo
    of that colour alone, 0.25 for a photo a quarter of which is exactly it."""
    hists = np.asarray(hists, dtype=np.float32).reshape(-1, TOTAL_BINS)
    scale = np.float32(1.0 / _pure(_key(lab), near, far))
    return np.minimum(np.asarray(hists @ kernel(lab, near, far), dtype=np.float32) * scale, np.float32(1.0))


def _key(lab: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    values = [float(v) for v in np.asarray(lab, dtype=np.float64).reshape(3)]
    return values[0], values[1], values[2]


@dataclass(frozen=True)
class Wanted:
    """A colour asked for, in Lab, with the share of the photo it should hold (None: as much as can be)."""

    lab: tuple[float, float, float]
    share: float | None


def containment_score(hists: np.ndarray, wanted: Sequence[Wanted]) -> tuple[np.ndarray, np.ndarray]:
    """(score, held) of each photo for colours it should contain: score in [0, 1 + SHADE_WEIGHT], lower is
    better; held (n, len(wanted)) the share of each colour each photo holds.

    A lone colour without a share ranks by how much of it a photo holds. Colours with shares (summing below
    1: the rest of the photo is free) rank by coverage, the part of the asked shares a photo holds (a photo
    holding at least its share of every colour covers 1), then by how much of that is the very shade.
    """
    hists = np.asarray(hists, dtype=np.float32).reshape(-1, TOTAL_BINS)
    if not wanted:
        raise ValueError("no colour to contain")
    shares = [held(hists, w.lab) for w in wanted]
    sharp = [held(hists, w.lab, SHARP_NEAR, SHARP_FAR) for w in wanted]
    return score_of(shares, sharp, wanted).astype(np.float64), np.stack(shares, axis=1)


def score_of(shares: Sequence[np.ndarray], sharp: Sequence[np.ndarray], wanted: Sequence[Wanted]) -> np.ndarray:
    """The score `containment_score` gives (float32), from each colour's held shares under both kernels:
    (1 - coverage) + SHADE_WEIGHT (1 - sharp coverage). In place, column by column: a million rows at once."""
    targets = _targets(wanted)
    total = float(targets.sum())
    out = np.full(len(shares[0]), 1.0 + SHADE_WEIGHT, np.float32)
    for columns, weight in ((shares, 1.0), (sharp, SHADE_WEIGHT)):
        for column, target in zip(columns, targets.tolist(), strict=True):
            part = np.minimum(column, np.float32(target))
            part *= np.float32(weight / total)
            out -= part
    return out


def _targets(wanted: Sequence[Wanted]) -> np.ndarray:
    """The share each colour should reach: its own, or for a lone colour the whole photo (the more, the
    better)."""
    return np.array([1.0 if w.share is None else w.share for w in wanted], dtype=np.float64)


# -- the coarse table -----------------------------------------------------------------------------
def coarse(hists: np.ndarray) -> np.ndarray:
    """uint8 (n, 144): each photo's share in each coarse cell, in 1/255ths rounded up (so a bound computed
    from it is never below the true value)."""
    hists = np.asarray(hists, dtype=np.float32).reshape(-1, TOTAL_BINS)
    cells = np.zeros((len(hists), COARSE_CELLS), np.float32)
    np.add.at(cells.T, CELL_OF_BIN, hists.T)  # (cells, n) += (bins, n), grouped by cell
    return np.minimum(np.ceil(cells * 255.0 - 1e-4), 255).astype(np.uint8)


def held_upper(table: np.ndarray, lab: Sequence[float] | np.ndarray, rows: np.ndarray | None = None,
               near: float = NEAR, far: float = FAR) -> np.ndarray:
    """float32: an upper bound of `held` for each photo of the coarse table (`table`: uint8 (144, n),
    cell-major, as the search table keeps it), or of the photos at `rows`."""
    return _cell_bounds(table, [_Term(_scaled(_key(lab), near, far), 1.0, 1.0)], rows)


def score_lower(table: np.ndarray, wanted: Sequence[Wanted], rows: np.ndarray | None = None) -> np.ndarray:
    """float32: a lower bound of `containment_score` for each photo of the coarse table (or those at `rows`);
    lowered by a float32 rounding's worth, so that it never exceeds the exact score of the same shares."""
    terms = _terms(wanted)
    return _score_from(_cell_bounds(table, terms, rows, _targets(wanted).sum()))


_WEIGHT_STEPS = 127


def _cell_bounds(table: np.ndarray, terms: Sequence[_Term], rows: np.ndarray | None, total: float = 1.0
                 ) -> np.ndarray:
    """Sum over terms of factor / total * min(an upper bound of histogram @ weights, cap): each cell's mass
    counted at the most any of its bins is worth, rounded up to 1/127ths of the term's largest weight. Only
    the cells within reach of the colour are read (`fused.cell_terms`)."""
    cells = -np.ones((len(terms), COARSE_CELLS), np.int32)
    steps = np.zeros((len(terms), COARSE_CELLS), np.int32)
    scales = []
    for t, term in enumerate(terms):
        top = float(term.weights.max())
        most = np.zeros(COARSE_CELLS, np.float32)
        np.maximum.at(most, CELL_OF_BIN, term.weights / np.float32(top))
        quantized = np.ceil(most * _WEIGHT_STEPS).astype(np.int32)
        reached = np.flatnonzero(quantized)
        cells[t, :len(reached)], steps[t, :len(reached)] = reached, quantized[reached]
        scales.append(top / (255 * _WEIGHT_STEPS))
    return fused.cell_terms(table, rows, cells, steps, np.array(scales), np.array([t.cap for t in terms]),
                            np.array([t.factor / total for t in terms]))


def _score_from(worth: np.ndarray) -> np.ndarray:
    """The score from the terms' summed worth (`_cell_bounds`, `fused.top_terms`), lowered by a float32
    rounding's worth."""
    out = np.float32(1.0 + SHADE_WEIGHT - 1e-5) - worth
    return out.astype(np.float32, copy=False)


@dataclass(frozen=True)
class _Term:
    """A part of the score, linear in the histogram up to a cap: score = 1 + SHADE_WEIGHT less the sum over
    terms of min(histogram @ weights, cap) * factor / (the asked shares' sum)."""

    weights: np.ndarray  # float32[1152]
    cap: float
    factor: float


def _terms(wanted: Sequence[Wanted]) -> list[_Term]:
    """A colour with a share is two terms, held and the very shade, each capped at the share. A lone colour
    is one: its caps (1) only bind for a photo of nothing else, so held + SHADE_WEIGHT sharp is linear in
    the histogram and a bound costs one pass over the cells instead of two."""
    terms = []
    for w in wanted:
        lab = _key(w.lab)
        if w.share is None:
            terms.append(_Term(_worth(lab), 1.0 + SHADE_WEIGHT, 1.0))
        else:
            terms.append(_Term(_scaled(lab, NEAR, FAR), w.share, 1.0))
            terms.append(_Term(_scaled(lab, SHARP_NEAR, SHARP_FAR), w.share, SHADE_WEIGHT))
    return terms


@functools.lru_cache(maxsize=256)
def _scaled(lab: tuple[float, float, float], near: float, far: float) -> np.ndarray:
    """float32[1152]: each bin's part of `held` (the kernel over what a photo of the colour alone holds)."""
    out = (kernel(lab, near, far) / np.float32(_pure(lab, near, far))).astype(np.float32)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=256)
def _worth(lab: tuple[float, float, float]) -> np.ndarray:
    """float32[1152]: what each bin adds to held + SHADE_WEIGHT sharp."""
    out = (_scaled(lab, NEAR, FAR) + np.float32(SHADE_WEIGHT) * _scaled(lab, SHARP_NEAR, SHARP_FAR)).astype(np.float32)
    out.setflags(write=False)
    return out


_ROOTS = np.sqrt(np.arange(256, dtype=np.float32) / 255.0)


def coarse_affinity(table: np.ndarray, hist: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """float32: the Bhattacharyya coefficient of each row's coarse cells (at `rows` of the coarse table) with
    a histogram's (1 for the same cells; 1 - it is the squared Hellinger distance halved): a cheap proxy of
    the distance between whole palettes. Only the cells the histogram holds are read."""
    query = np.sqrt(coarse(hist)[0].astype(np.float32) / 255.0)
    cells = np.flatnonzero(query)
    return fused.lut_sums(table, rows, cells, query[cells], _ROOTS)


# -- the heaviest bins ----------------------------------------------------------------------------
# Coarse cells are ~30 delta E wide: when thousands of photos could hold every colour asked, their bounds
# tie. Each photo's heaviest fine bins (their share rounded up) bound and estimate held far more tightly,
# for the rows whose coarse bounds tie: what those bins hold exactly, plus at most the rest of the photo.
TOP_BINS = 16
PALETTE_BYTES = COARSE_CELLS + 3 * TOP_BINS  # the stored form: coarse cells, top bins (uint16), their shares


def palette(hists: np.ndarray) -> np.ndarray:
    """uint8 (n, PALETTE_BYTES): the coarse cells, then the TOP_BINS heaviest bins (little-endian uint16)
    and their shares in 1/255ths rounded up."""
    hists = np.asarray(hists, dtype=np.float32).reshape(-1, TOTAL_BINS)
    top = np.argpartition(-hists, TOP_BINS - 1, axis=1)[:, :TOP_BINS].astype("<u2")
    shares = np.take_along_axis(hists, top.astype(np.intp), axis=1)
    quantized = np.minimum(np.ceil(shares * 255.0 - 1e-4), 255).astype(np.uint8)
    return np.concatenate([coarse(hists), top.view(np.uint8).reshape(len(hists), -1), quantized], axis=1)


def split_palette(stored: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coarse (n, 144) uint8, top bins (n, TOP_BINS) uint16, their shares (n, TOP_BINS) uint8)."""
    stored = np.ascontiguousarray(stored, dtype=np.uint8).reshape(-1, PALETTE_BYTES)
    bins = stored[:, COARSE_CELLS:COARSE_CELLS + 2 * TOP_BINS].copy().view("<u2").astype(np.uint16)
    return stored[:, :COARSE_CELLS], bins, stored[:, COARSE_CELLS + 2 * TOP_BINS:]


def score_top(bins: np.ndarray, shares: np.ndarray, rows: np.ndarray, wanted: Sequence[Wanted]
              ) -> tuple[np.ndarray, np.ndarray]:
    """(estimate, lower bound) of `containment_score` for the rows at `rows` of the heaviest bins (`bins`,
    `shares`: (TOP_BINS, n)): what those bins hold, and that plus all the rest of the photo at the most a bin
    is worth."""
    terms = _terms(wanted)
    total = float(_targets(wanted).sum())
    estimate, upper = fused.top_terms(bins, shares, rows, np.stack([t.weights for t in terms]),
                                      np.array([t.cap for t in terms]), np.array([t.factor / total for t in terms]))
    return _score_from(estimate), _score_from(upper)


# -- tone -----------------------------------------------------------------------------------------
# A toned monochrome photo (sepia, cyanotype, selenium) maps each lightness to one chroma: within a slice of
# lightness its colours barely spread (soft binning alone gives ~7 delta E; toned photos 7-11, colour photos
# 13 and up), and its tone stays muted (a slice's mean chroma at most ~40; a red apple on white has the first
# property too, at a chroma of 80). Measured on scikit-image's photos, greyscale, sepia and cyan-toned.
MONOCHROME_SPREAD = 12.0  # delta E: RMS spread of chroma within slices of equal lightness
MONOCHROME_CHROMA = 42.0  # delta E: the largest mean chroma of a slice holding 2% of the photo
NEUTRAL = 5.0  # delta E: a photo no slice of which leans further from grey is greyscale
TONAL_RANGE = 8.0  # RMS lightness spread a toned photo has (a plain beige wall, one flat tint, has not)
COLORFUL = 30.0  # RMS chroma (delta E) from which a photo counts as vivid
_SLICE_MASS = 0.02


def tone(hists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(colourfulness, monochrome) of each photo: its RMS chroma (delta E from the neutral axis), and
    whether it has no colour of its own (greyscale, or toned monochrome such as sepia or cyanotype)."""
    hists = np.asarray(hists, dtype=np.float64).reshape(-1, TOTAL_BINS)
    mass = hists.sum(axis=1, keepdims=True)
    weights = hists / np.where(mass > 0, mass, 1.0)
    ab = CENTRES[:, 1:]
    ab2 = (ab ** 2).sum(axis=1)
    colourfulness = np.sqrt(weights @ ab2)
    spread2 = np.zeros(len(weights))
    largest = np.zeros(len(weights))
    per_slice = A_BINS * B_BINS
    for level in range(L_BINS):
        cols = slice(level * per_slice, (level + 1) * per_slice)
        w = weights[:, cols]
        m = w.sum(axis=1)
        first = w @ ab[cols]
        safe = np.where(m > 0, m, 1.0)
        spread2 += np.maximum(w @ ab2[cols] - (first ** 2).sum(axis=1) / safe, 0.0)
        chroma = np.linalg.norm(first, axis=1) / safe
        largest = np.maximum(largest, np.where(m >= _SLICE_MASS, chroma, 0.0))
    lightness = CENTRES[:, 0]
    tonal = np.sqrt(np.maximum(weights @ lightness ** 2 - (weights @ lightness) ** 2, 0.0))
    toned = (np.sqrt(spread2) <= MONOCHROME_SPREAD) & (largest <= MONOCHROME_CHROMA) & (tonal >= TONAL_RANGE)
    monochrome = (np.sqrt(spread2) <= MONOCHROME_SPREAD) & (largest <= NEUTRAL) | toned
    return colourfulness.astype(np.float32), monochrome
