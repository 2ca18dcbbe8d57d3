"""The compiled loops of the containment scan compute what their plain numpy definitions say."""

from __future__ import annotations

import numpy as np
import pytest

from chromatica_watch.colour import fused


def plain_cell_terms(table: np.ndarray, rows: np.ndarray, cells: np.ndarray, steps: np.ndarray,
                     scales: np.ndarray, caps: np.ndarray, factors: np.ndarray) -> np.ndarray:
    out = np.zeros(len(rows))
    for t in range(len(cells)):
        reached = cells[t][cells[t] >= 0]
        sums = (table[reached][:, rows].astype(np.int64) * steps[t, :len(reached), None]).sum(axis=0)
        out += np.minimum(sums * float(scales[t]), float(caps[t])) * float(factors[t])
    return out


@pytest.mark.parametrize("n", [1, 4095, 4096, 10_001])
def test_cell_terms_equal_their_plain_sum_for_all_rows_and_picked_ones(n: int) -> None:
    rng = np.random.default_rng(n)
    table = rng.integers(0, 256, (144, n)).astype(np.uint8)
    cells = -np.ones((3, 144), np.int32)
    steps = np.zeros((3, 144), np.int32)
    for t, count in enumerate((1, 9, 144)):  # one cell, a few, every cell
        cells[t, :count] = rng.choice(144, count, replace=False)
        steps[t, :count] = rng.integers(1, 128, count)
    scales = np.array([1 / (255 * 127), 2e-5, 3e-6], np.float32)
    caps, factors = np.array([1.0, 0.3, 1.25], np.float32), np.array([1.0, 0.25, 0.5], np.float32)
    every = fused.cell_terms(table, None, cells, steps, scales, caps, factors)
    assert every.dtype == np.float32 and every.shape == (n,)
    np.testing.assert_allclose(every, plain_cell_terms(table, np.arange(n), cells, steps, scales, caps, factors),
                               rtol=1e-5, atol=1e-6)
    rows = rng.choice(n, max(1, n // 3), replace=False)
    picked = fused.cell_terms(table, rows, cells, steps, scales, caps, factors)
    np.testing.assert_allclose(picked, every[rows], rtol=1e-6)
    assert fused.cell_terms(table, np.zeros(0, np.int64), cells, steps, scales, caps, factors).shape == (0,)


def test_top_terms_equal_their_plain_sum() -> None:
    rng = np.random.default_rng(7)
    n, slots = 5000, 16
    bins = rng.integers(0, 1152, (slots, n)).astype(np.uint16)
    shares = rng.integers(0, 40, (slots, n)).astype(np.uint8)
    weights = rng.random((2, 1152)).astype(np.float32)
    weights[1, rng.random(1152) < 0.9] = 0  # a narrow kernel: most bins worth nothing
    caps, factors = np.array([1.25, 0.2], np.float32), np.array([1.0, 0.25], np.float32)
    rows = rng.choice(n, 700, replace=False)
    estimate, upper = fused.top_terms(bins, shares, rows, weights, caps, factors)
    rest = np.maximum(1 - np.clip(shares[:, rows].astype(np.float64) - 1, 0, None).sum(axis=0) / 255, 0)
    want_estimate, want_upper = np.zeros(len(rows)), np.zeros(len(rows))
    for t in range(2):
        held = (weights[t][bins[:, rows]] * shares[:, rows]).sum(axis=0) / 255
        want_estimate += np.minimum(held, caps[t]) * factors[t]
        want_upper += np.minimum(held + rest * weights[t].max(), caps[t]) * factors[t]
    np.testing.assert_allclose(estimate, want_estimate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(upper, want_upper, rtol=1e-5, atol=1e-6)
    assert np.all(upper >= estimate)


def test_lut_sums_equal_their_plain_sum() -> None:
    rng = np.random.default_rng(11)
    table = rng.integers(0, 256, (144, 3000)).astype(np.uint8)
    rows = np.sort(rng.choice(3000, 900, replace=False))
    cells = rng.choice(144, 30, replace=False)
    weights, lut = rng.random(30).astype(np.float32), rng.random(256).astype(np.float32)
    got = fused.lut_sums(table, rows, cells, weights, lut)
    np.testing.assert_allclose(got, (weights[:, None] * lut[table[cells][:, rows]]).sum(axis=0), rtol=1e-5)
    assert fused.lut_sums(table, np.zeros(0, np.int64), cells, weights, lut).shape == (0,)
