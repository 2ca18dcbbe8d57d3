"""Search queries: weighted colours (`#ff8800:0.7 #0044ff:0.3`) or an example image, as a histogram.

A query histogram is built exactly like an indexed one: sRGB -> Lab with `lab.srgb_to_lab`, then
the same tri-linear soft binning (`histogram.lab_histogram`), so a colour query and an image of that
colour land in the same bins. Every bad query is a `UsageError` (exit code 2) naming what was wrong.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from chromatica_watch.colour import histogram, names
from chromatica_watch.core.defaults import DEFAULT_MAX_DIMENSION, DEFAULT_MAX_PIXELS
from chromatica_watch.core.errors import ImageError, UsageError
from chromatica_watch.core.filetypes import extension
from chromatica_watch.core.paths import display_path
from chromatica_watch.imaging.features import features
from chromatica_watch.imaging.lab import srgb_to_lab
from chromatica_watch.imaging.reading import read_file

logger = logging.getLogger(__name__)

MAX_COLORS = 8
_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_SPEC_HELP = ("expected a hex colour like '#ff8800' or '#f80', or a colour name (CSS: 'teal'; the xkcd survey's: "
              "'dusty rose'), optionally ':weight' (e.g. '#ff8800:0.7', 'teal:0.3')")


@dataclass(frozen=True)
class ColorWeight:
    """One colour of a query with its normalized weight (the weights of a query sum to 1)."""

    rgb: tuple[int, int, int]
    weight: float

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)


def _parse_hex(text: str, spec: str) -> tuple[int, int, int]:
    match = _HEX.fullmatch(text)
    if match is None:
        rgb = names.name_rgb(text)  # a CSS name, else one of the xkcd survey's (colour/names.py)
        if rgb is None:
            raise UsageError(_unknown(text, spec))
        return rgb
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _unknown(text: str, spec: str) -> str:
    """One line for a colour that is no hex and no name: the names spelled most like it, if any."""
    near = [] if text.startswith("#") else names.nearest_names(text)
    if not near:
        return f"bad color {spec!r}: {_SPEC_HELP}"
    where = f" in {spec!r}" if spec.strip() != text else ""
    return (f"unknown colour {text!r}{where}: did you mean {', '.join(repr(n) for n in near)}? "
            "(a hex like '#ff8800', a CSS name or one of the xkcd survey's 949)")


def _parse_weight(text: str, spec: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        raise UsageError(f"bad weight in color {spec!r}: {text!r} is not a number") from None
    if not math.isfinite(weight):
        raise UsageError(f"bad weight in color {spec!r}: must be a finite number")
    if weight < 0:
        raise UsageError(f"bad weight in color {spec!r}: weights cannot be negative")
    return weight


def parse_color_spec(spec: str) -> tuple[tuple[int, int, int], float | None]:
    """'#ff8800:0.7' -> ((255, 136, 0), 0.7); '#f80' -> ((255, 136, 0), None)."""
    text = spec.strip()
    color, sep, weight = text.partition(":")
    rgb = _parse_hex(color, spec)
    if not sep:
        return rgb, None
    return rgb, _parse_weight(weight, spec)


def split_specs(args: Iterable[str]) -> list[str]:
    """Command-line values to single specs: each value may hold several, separated by commas or spaces; words
    that together are one colour name ('dusty rose:0.3', 'blue green') stay one spec, the longest first."""
    return [spec for arg in args for part in arg.split(",") for spec in _join_names(part.split())]


def _join_names(words: list[str]) -> list[str]:
    specs, at = [], 0
    while at < len(words):
        end = _name_end(words, at) or _unknown_end(words, at)
        specs.append(" ".join(words[at:end]))
        at = end
    return specs


def _name_end(words: list[str], at: int) -> int | None:
    """Where the longest name of several words starting at `at` ends (only its last word may hold a weight)."""
    return next((end for end in range(len(words), at + 1, -1)
                 if ":" not in " ".join(words[at:end - 1]) and names.is_name(_name_of(words[at:end]))), None)


def _unknown_end(words: list[str], at: int) -> int:
    """A colour is one word; words that are no colour stay together, so that 'dusty rse' is said to be unknown
    as typed (and its nearest names found), not as 'dusty'."""
    end = at + 1
    if _is_colour(words[at]):
        return end
    while end < len(words) and ":" not in words[end - 1] and not _is_colour(words[end]):
        end += 1
    return end


def _is_colour(word: str) -> bool:
    text = word.partition(":")[0]
    return _HEX.fullmatch(text) is not None or names.is_name(text)


def _name_of(words: list[str]) -> str:
    return " ".join(words).partition(":")[0]


def parse_colors(specs: Sequence[str]) -> list[ColorWeight]:
    """Parse and normalize a colour query.

    Weights are relative when every colour has one ('#f00:3 #00f:1' is 3/4 red). Colours without a
    weight share equally what the given weights leave of 1 ('#f00:0.5 #0f0 #00f' gives 0.25 to each
    of the last two); with no weights at all every colour weighs the same.
    """
    specs = split_specs(specs)
    if not specs:
        raise UsageError(f"no color given: {_SPEC_HELP}")
    if len(specs) > MAX_COLORS:
        raise UsageError(f"too many colors: {len(specs)} given, at most {MAX_COLORS} "
                         f"(first extra: {specs[MAX_COLORS]!r})")
    parsed = [(spec, *parse_color_spec(spec)) for spec in specs]
    given = [w for _, _, w in parsed if w is not None]
    missing = [spec for spec, _, w in parsed if w is None]
    if not missing:
        largest = max(given)
        if not largest > 0:
            raise UsageError(f"bad weights in {' '.join(specs)!r}: all weights are zero")
        # Scaled by the largest first: weights near the float maximum would sum to inf.
        scaled = [w / largest for w in given]
        total = sum(scaled)  # between 1 and MAX_COLORS
        weights = [w / total for w in scaled]
    else:
        total = sum(given)
        left = 1.0 - total
        if given and left <= 1e-9:
            summed = f"{total:g}" if math.isfinite(total) else "more than 1"
            raise UsageError(f"no weight left for {missing[0]!r}: the given weights already sum to "
                             f"{summed}; give every color a weight, or weights summing to less than 1")
        share = left / len(missing)
        weights = [share if w is None else w for _, _, w in parsed]
    return [ColorWeight(rgb, float(w)) for (_, rgb, _), w in zip(parsed, weights, strict=True)]


def color_query_histogram(colors: Sequence[ColorWeight]) -> np.ndarray:
    """float32[1152]: each colour soft-binned like a pixel of that colour, weighted; sums to 1."""
    if not colors:
        raise UsageError("no color given")
    rgb = np.array([c.rgb for c in colors], dtype=np.uint8)
    weights = np.array([c.weight for c in colors], dtype=np.float32)
    try:
        return histogram.lab_histogram(srgb_to_lab(rgb), weights)
    except ValueError:
        raise UsageError("bad weights: all weights are zero") from None


def image_query_histogram(path: str, max_dimension: int = DEFAULT_MAX_DIMENSION,
                          max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The histogram of an example image, computed as the index computes it (same `max_dimension`).

    A symbolic link is followed (the user named this file), but only a regular file is read: a FIFO or a
    device named like a photo is refused at once with what it is, never waited on.
    """
    try:
        data = read_file(path, follow_symlinks=True)
    except ImageError as exc:
        raise UsageError(f"cannot use {display_path(path)} as a query image: {exc.reason}") from None
    return image_bytes_query_histogram(data.data, display_path(path), max_dimension, max_pixels)


def image_bytes_query_histogram(data: bytes, name: str, max_dimension: int = DEFAULT_MAX_DIMENSION,
                                max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The histogram of an example image's bytes (an upload, say); `name` is how errors call it."""
    try:
        return features(data, max_dimension, max_pixels, content_hash="", suffix=extension(name)).histogram
    except ImageError as exc:
        raise UsageError(f"cannot use {name} as a query image: {exc.reason}") from None
