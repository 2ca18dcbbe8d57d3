"""The containment scan's inner loops, compiled by numba (this module is numba's only importer; `fused` holds
the interface and imports it at its first call: importing numba costs a process 0.2 s, and most processes,
the CLI asking the daemon above all, never run a loop).

The first call compiles (about a second); the machine code is cached on disk (next to this module, or in
the user's cache when the package is not writable), so later processes load it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

BLOCK = 4096  # rows whose sums are kept at once


def _compiled(parallel: bool) -> Callable[[Callable[..., Any]], Any]:
    def decorate(function: Callable[..., Any]) -> Any:
        try:
            return numba.njit(parallel=parallel, cache=True, nogil=True)(function)
        except RuntimeError:  # no writable place to cache machine code: compile in each process
            return numba.njit(parallel=parallel, nogil=True)(function)
    return decorate


@_compiled(parallel=True)
def cell_terms(table: np.ndarray, every: bool, rows: np.ndarray, cells: np.ndarray, steps: np.ndarray,
                scales: np.ndarray, caps: np.ndarray, factors: np.ndarray) -> np.ndarray:
    n = table.shape[1] if every else rows.shape[0]
    out = np.zeros(n, np.float32)
    for block in numba.prange((n + BLOCK - 1) // BLOCK):
        lo = block * BLOCK
        hi = min(n, lo + BLOCK)
        acc = np.empty(hi - lo, np.int32)
        for term in range(cells.shape[0]):
            acc[:] = 0
            for j in range(cells.shape[1]):
                cell = cells[term, j]
                if cell < 0:
                    break
                weight = np.int32(steps[term, j])
                column = table[cell]
                if every:
                    for i in range(lo, hi):
                        acc[i - lo] += np.int32(column[i]) * weight
                else:
                    for i in range(lo, hi):
                        acc[i - lo] += np.int32(column[rows[i]]) * weight
            scale, cap, factor = scales[term], caps[term], factors[term]
            for i in range(hi - lo):
                value = np.float32(acc[i]) * scale
                out[lo + i] += (cap if value > cap else value) * factor
    return out


@_compiled(parallel=True)
def top_terms(bins: np.ndarray, shares: np.ndarray, rows: np.ndarray, weights: np.ndarray, caps: np.ndarray,
               factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = rows.shape[0]
    estimate = np.zeros(n, np.float32)
    upper = np.zeros(n, np.float32)
    slots = bins.shape[0]
    tops = np.empty(weights.shape[0], np.float32)
    for term in range(weights.shape[0]):
        tops[term] = weights[term].max()
    for i in numba.prange(n):
        row = rows[i]
        over = np.float32(0.0)
        for slot in range(slots):
            over += max(np.float32(shares[slot, row]) - np.float32(1.0), np.float32(0.0))
        rest = max(np.float32(1.0) - over / np.float32(255.0), np.float32(0.0))
        for term in range(weights.shape[0]):
            held = np.float32(0.0)
            for slot in range(slots):
                held += weights[term, bins[slot, row]] * np.float32(shares[slot, row])
            held /= np.float32(255.0)
            cap, factor = caps[term], factors[term]
            estimate[i] += min(held, cap) * factor
            upper[i] += min(held + rest * tops[term], cap) * factor
    return estimate, upper


@_compiled(parallel=False)
def lut_sums(table: np.ndarray, rows: np.ndarray, cells: np.ndarray, weights: np.ndarray, lut: np.ndarray
              ) -> np.ndarray:
    out = np.zeros(rows.shape[0], np.float32)
    for j in range(cells.shape[0]):
        column = table[cells[j]]
        weight = weights[j]
        for i in range(rows.shape[0]):
            out[i] += weight * lut[column[rows[i]]]
    return out


@_compiled(parallel=True)
def dominant_sectors(bins: np.ndarray, shares: np.ndarray, sector_of: np.ndarray, weight_of: np.ndarray,
                      lightness_of: np.ndarray, sectors: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = bins.shape[1]
    dominant = np.zeros(n, np.int64)
    chromatic = np.zeros(n, np.float64)
    light_dominant = np.zeros(n, np.float64)
    light_all = np.zeros(n, np.float64)
    for i in numba.prange(n):
        mass = np.zeros(sectors + 1, np.float64)
        total = 0.0
        lit = 0.0
        coloured = 0.0
        for slot in range(bins.shape[0]):
            b = bins[slot, i]
            share = np.float64(shares[slot, i])
            total += share
            lit += share * lightness_of[b]
            mass[sector_of[b]] += share * weight_of[b]
            if weight_of[b] > 0:
                coloured += share
        best = 0
        for s in range(1, sectors):
            if mass[s] > mass[best]:
                best = s
        num = 0.0
        den = 0.0
        for slot in range(bins.shape[0]):
            b = bins[slot, i]
            if sector_of[b] == best:
                w = np.float64(shares[slot, i]) * weight_of[b]
                num += w * lightness_of[b]
                den += w
        dominant[i] = best
        chromatic[i] = coloured / total if total > 0 else 0.0
        light_dominant[i] = num / den if den > 0 else 0.0
        light_all[i] = lit / total if total > 0 else 0.0
    return dominant, chromatic, light_dominant, light_all


@_compiled(parallel=True)
def peak_counts(table: np.ndarray, rows: np.ndarray, neighbours: np.ndarray, threshold: int) -> np.ndarray:
    cells = table.shape[0]
    blocks = (rows.shape[0] + BLOCK - 1) // BLOCK
    partial = np.zeros((blocks, cells), np.int64)
    for block in numba.prange(blocks):
        for i in range(block * BLOCK, min(rows.shape[0], (block + 1) * BLOCK)):
            row = rows[i]
            for c in range(cells):
                value = table[c, row]
                if value < threshold:
                    continue
                peak = True
                for j in range(neighbours.shape[1]):
                    other = neighbours[c, j]
                    if other < 0:
                        break
                    theirs = table[other, row]
                    if theirs > value or (theirs == value and other < c):
                        peak = False
                        break
                if peak:
                    partial[block, c] += 1
    return partial.sum(axis=0)
