"""The containment scan's inner loops, compiled (numba): one pass over a million rows instead of one numpy
pass per coarse cell and per kernel.

A containment bound reads ~10 coarse cells per kernel term; in numpy each cell is a pass over every row
with a temporary of its own (~0.45 ms per cell at a million rows: 20 ms for two colours with shares). Here
the rows are taken a block at a time (the block's sums stay in L1), every term and cell of a block in one
go, and the blocks split over the cores: 3-4 times faster. The heaviest-bins estimate gathers each row's
bins in place (no (16, m) copies). Both compute exactly what `contain` defines; tests compare them with
plain numpy.

The loops themselves are in `kernels`, imported at the first call (numba costs a process 0.2 s to import).
Numba's default thread pool is not safe to enter from two threads at once: calls are serialized by a lock (a
call lasts a few ms).
"""

from __future__ import annotations

import threading
from types import ModuleType

import numpy as np

_LOCK = threading.Lock()


def _kernels() -> ModuleType:
    from chromatica_watch.colour import kernels  # at the first call, not at import: see the module's docstring
    return kernels


def dominant_sectors(bins: np.ndarray, shares: np.ndarray, sector_of: np.ndarray, weight_of: np.ndarray,
                     lightness_of: np.ndarray, sectors: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each column of the heaviest-bins table (`bins` uint16, `shares` uint8, (slots, n)): the sector
    (of `sectors`; sector_of[b] == sectors: no hue) holding the most of sum(share * weight_of[bin]), the share
    of its mass in bins of some weight, the weighted mean lightness in that sector, and over all its bins."""
    with _LOCK:
        return _kernels().dominant_sectors(
            np.ascontiguousarray(bins), np.ascontiguousarray(shares), np.ascontiguousarray(sector_of, np.int64),
            np.ascontiguousarray(weight_of, np.float64), np.ascontiguousarray(lightness_of, np.float64), sectors)


def peak_counts(table: np.ndarray, rows: np.ndarray, neighbours: np.ndarray, threshold: int) -> np.ndarray:
    """int64[cells]: for each cell of the table (uint8 (cells, n)), how many of the rows at `rows` hold at
    least `threshold` there and more than in any of its `neighbours` (int64 (cells, k), -1 after the last;
    a tie goes to the lower cell): each colour a photo holds counts once, however its shades straddle cells."""
    with _LOCK:
        return _kernels().peak_counts(table, np.ascontiguousarray(rows, np.int64),
                                      np.ascontiguousarray(neighbours, np.int64), threshold)


def lut_sums(table: np.ndarray, rows: np.ndarray, cells: np.ndarray, weights: np.ndarray, lut: np.ndarray
             ) -> np.ndarray:
    """float32[m]: for each row at `rows`, the sum over j of weights[j] * lut[table[cells[j], row]] (`lut`:
    float32[256], what a cell's byte is worth)."""
    with _LOCK:
        return _kernels().lut_sums(table, np.ascontiguousarray(rows, np.int64),
                                   np.ascontiguousarray(cells, np.int64), *_floats(weights, lut))


def cell_terms(table: np.ndarray, rows: np.ndarray | None, cells: np.ndarray, steps: np.ndarray,
               scales: np.ndarray, caps: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """float32[m]: for each row (all of `table`'s columns, or those at `rows`), the sum over terms t of
    factors[t] * min(scales[t] * sum_j table[cells[t, j], row] * steps[t, j], caps[t]); `cells` lists a
    term's cells, -1 after its last."""
    picked = np.zeros(0, np.int64) if rows is None else np.ascontiguousarray(rows, np.int64)
    with _LOCK:
        return _kernels().cell_terms(table, rows is None, picked, np.ascontiguousarray(cells, np.int32),
                                     np.ascontiguousarray(steps, np.int32), *_floats(scales, caps, factors))


def top_terms(bins: np.ndarray, shares: np.ndarray, rows: np.ndarray, weights: np.ndarray, caps: np.ndarray,
              factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(estimate, upper) float32[m] for the rows at `rows` of the heaviest-bins columns (`bins` uint16 and
    `shares` uint8, (slots, n)): sum over terms t of factors[t] * min(held_t, caps[t]), held_t being what
    the heaviest bins hold under weights[t] (float32[1152]); the upper adds the rest of the photo (its bins'
    shares are rounded up: at most 1 - sum(share - 1) / 255 is elsewhere) at the term's largest weight."""
    with _LOCK:
        return _kernels().top_terms(bins, shares, np.ascontiguousarray(rows, np.int64),
                                    np.ascontiguousarray(weights, np.float32), *_floats(caps, factors))


def _floats(*arrays: np.ndarray) -> list[np.ndarray]:
    return [np.ascontiguousarray(a, np.float32) for a in arrays]
