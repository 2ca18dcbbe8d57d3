from __future__ import annotations

import numpy as np
import pytest
from skimage import color

from chromatica_watch.colour import histogram as H
from chromatica_watch.imaging.lab import srgb_to_lab
from tests.conftest import PHOTO_NAMES, photo


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_lab_agrees_with_skimage_per_pixel_on_real_photos(name: str) -> None:
    rgb = photo(name)
    ours = srgb_to_lab(rgb)
    ref = color.rgb2lab(rgb).reshape(-1, 3)
    assert np.abs(ours - ref).max() < 1e-3


def test_lab_agrees_with_skimage_on_a_grid_of_all_8_bit_colours() -> None:
    levels = np.unique(np.r_[np.arange(0, 256, 5), 1, 2, 10, 11, 254, 255]).astype(np.uint8)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(1, -1, 3)
    assert np.abs(srgb_to_lab(rgb) - color.rgb2lab(rgb).reshape(-1, 3)).max() < 1e-3


def test_lab_of_no_pixels_is_empty_and_their_histogram_raises() -> None:
    lab = srgb_to_lab(np.zeros((0, 3), dtype=np.uint8))
    assert lab.shape == (0, 3)
    with pytest.raises(ValueError):
        H.lab_histogram(lab)


def test_lab_agrees_with_skimage_on_16_bit_float_input() -> None:
    rgb = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    assert np.abs(srgb_to_lab(rgb) - color.rgb2lab(rgb).reshape(-1, 3)).max() < 1e-3


def test_histogram_has_1152_bins_and_sums_to_one() -> None:
    h = H.lab_histogram(srgb_to_lab(photo("coffee")))
    assert h.shape == (1152,) and h.dtype == np.float32
    assert abs(float(h.sum()) - 1.0) < 1e-5
    assert (h >= 0).all()


def test_pixel_at_a_bin_centre_falls_in_that_bin_only() -> None:
    centres = H.bin_centers_lab()
    h = H.lab_histogram(centres[[500]])
    assert h.argmax() == 500 and h[500] == pytest.approx(1.0, abs=1e-6)


def test_pixel_between_two_centres_splits_its_weight() -> None:
    centres = H.bin_centers_lab()
    mid = (centres[500] + centres[501]) / 2  # neighbours along b*
    h = H.lab_histogram(mid[None, :])
    assert h[500] == pytest.approx(0.5, abs=1e-5) and h[501] == pytest.approx(0.5, abs=1e-5)


def test_out_of_range_values_are_clamped_not_raised() -> None:
    magenta = srgb_to_lab(np.array([[[255, 0, 255]]], dtype=np.uint8))
    assert magenta[0, 1] > 98.0  # a* beyond the top of the range
    h = H.lab_histogram(np.vstack([magenta, [[150.0, -300.0, 400.0]], [[-10.0, 0.0, 0.0]]]))
    assert abs(float(h.sum()) - 1.0) < 1e-5
    assert np.isfinite(h).all()


def test_transparent_pixels_do_not_count() -> None:
    lab = srgb_to_lab(np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8))
    only_red = H.lab_histogram(lab[:1])
    masked = H.lab_histogram(lab, weights=np.array([1.0, 0.0]))
    assert np.allclose(only_red, masked)
    with pytest.raises(ValueError):
        H.lab_histogram(lab, weights=np.zeros(2))


def test_hellinger_vectors_have_unit_norm() -> None:
    h = H.lab_histogram(srgb_to_lab(photo("chelsea")))
    assert np.linalg.norm(H.hellinger(h)) == pytest.approx(1.0, abs=1e-5)


def test_soft_assignment_matches_a_per_pixel_reference() -> None:
    """The vectorized binning equals a slow, obvious per-pixel implementation."""
    rng = np.random.default_rng(1)
    lab = np.column_stack([rng.uniform(-5, 105, 300), rng.uniform(-95, 105, 300), rng.uniform(-115, 100, 300)])
    ref = np.zeros(1152)
    for px in lab:
        corners = []
        for value, (lo, hi), n in zip(px, (H.L_RANGE, H.A_RANGE, H.B_RANGE), (8, 12, 12), strict=True):
            u = (min(max(value, lo), hi) - lo) / ((hi - lo) / n) - 0.5
            i = int(np.floor(u))
            f = u - i
            corners.append(((min(max(i, 0), n - 1), 1 - f), (min(max(i + 1, 0), n - 1), f)))
        for li, lw in corners[0]:
            for ai, aw in corners[1]:
                for bi, bw in corners[2]:
                    ref[li * 144 + ai * 12 + bi] += lw * aw * bw
    ref /= ref.sum()
    assert np.abs(H.lab_histogram(lab) - ref).max() < 1e-6


def test_fingerprint_depends_on_max_dimension() -> None:
    assert H.fingerprint(256) == H.fingerprint(256)
    assert H.fingerprint(256) != H.fingerprint(128)
