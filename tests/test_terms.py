"""A photo's main colours as basic colour terms (colour/terms.py), judged on plain values as a person would:
solid colours, a sepia toning, mixtures in known shares."""

from __future__ import annotations

import numpy as np
import pytest

from chromatica_watch.colour.histogram import lab_histogram
from chromatica_watch.colour.terms import AT_MOST, MIN_SHARE, TERMS, main_terms, term_of, term_shares
from chromatica_watch.imaging.lab import srgb_to_lab


def histogram_of(*parts: tuple[str, float]) -> np.ndarray:
    """The histogram of a photo made of these sRGB colours ('#rrggbb') in these shares."""
    rgb = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h, _ in parts], np.uint8).reshape(1, -1, 3)
    lab = srgb_to_lab(rgb).reshape(-1, 3)
    return lab_histogram(lab, np.array([w for _, w in parts], np.float32))


@pytest.mark.parametrize(("hex_", "term"), [
    ("#ff8000", "orange"), ("#ff8c00", "orange"), ("#e67e22", "orange"), ("#cc5500", "orange"),  # burnt orange too
    ("#8b4513", "brown"), ("#654321", "brown"), ("#d2b48c", "brown"),  # saddle brown, dark brown, tan
    ("#808080", "grey"), ("#a9a9a9", "grey"), ("#505050", "grey"),
    ("#000000", "black"), ("#101010", "black"), ("#ffffff", "white"), ("#fffff0", "white"),  # ivory is white
    ("#ff0000", "red"), ("#8b0000", "red"), ("#ffff00", "yellow"), ("#ffd700", "yellow"),
    ("#008000", "green"), ("#32cd32", "green"), ("#008080", "teal"), ("#40e0d0", "teal"), ("#00ffff", "teal"),
    ("#0000ff", "blue"), ("#000080", "blue"), ("#87ceeb", "blue"), ("#800080", "purple"), ("#8a2be2", "purple"),
    ("#ff69b4", "pink"), ("#ffc0cb", "pink"),
])
def test_a_photo_of_one_colour_is_named_as_a_person_would(hex_: str, term: str) -> None:
    found = main_terms(histogram_of((hex_, 1.0)))
    assert found[0][0] == term, found
    assert found[0][1] >= 0.6


def test_an_orange_photo_is_orange_not_brown() -> None:
    shares = dict(zip(TERMS, term_shares(histogram_of(("#f58214", 0.5), ("#ff8c00", 0.5))), strict=True))
    assert shares["orange"] > 0.9
    assert shares["brown"] < 0.05


def test_a_grey_photo_is_grey_with_no_colour_named() -> None:
    # a grey ramp of many lightnesses: soft binning spreads each pixel onto its bin cell's corners
    ramp = [(f"#{v:02x}{v:02x}{v:02x}", 1.0) for v in range(70, 200, 8)]
    found = main_terms(histogram_of(*ramp))
    assert [t for t, _ in found] == ["grey"]
    assert found[0][1] > 0.95


def test_a_sepia_photo_is_brown() -> None:
    # a toned monochrome: one warm hue from dark to light, as a sepia print
    dark, light = np.array([60, 35, 15]), np.array([235, 215, 180])
    steps = [(dark + (light - dark) * t / 10).astype(int) for t in range(11)]
    ramp = [("#{:02x}{:02x}{:02x}".format(*step), 1.0) for step in steps]
    found = main_terms(histogram_of(*ramp))
    assert found[0][0] == "brown", found


def test_main_terms_are_the_largest_shares_above_the_threshold_most_first() -> None:
    hist = histogram_of(("#ff8000", 0.5), ("#0000ff", 0.3), ("#ffffff", 0.12), ("#008000", 0.08))
    found = main_terms(hist)
    assert [t for t, _ in found] == ["orange", "blue"]  # white (12%) and green (8%) are under MIN_SHARE
    assert found[0][1] == pytest.approx(0.5, abs=0.06)
    assert found[1][1] == pytest.approx(0.3, abs=0.06)
    assert all(s >= MIN_SHARE for _, s in found)


def test_at_most_three_terms() -> None:
    hist = histogram_of(("#ff0000", 0.2), ("#0000ff", 0.2), ("#ffff00", 0.2), ("#008000", 0.2), ("#800080", 0.2))
    assert len(main_terms(hist)) == AT_MOST
    assert len(main_terms(hist, at_most=5)) == 5


def test_shares_sum_to_one_and_an_empty_histogram_has_no_terms() -> None:
    assert term_shares(histogram_of(("#123456", 1.0))).sum() == pytest.approx(1.0)
    assert main_terms(np.zeros(1152, np.float32)) == []


def test_blue_and_violet_share_a_lab_hue_but_not_a_term() -> None:
    # (0, 0, 255) and (147, 112, 219) both lie at ~306 degrees of CIE Lab hue
    assert term_of((32.3, 79.2, -107.9)) == "blue"
    assert term_of((55.0, 36.8, -50.1)) == "purple"
