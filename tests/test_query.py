"""Colour and image queries: parsing, weights, and the query histogram (same soft binning as the index)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.errors import UsageError
from chromatica_watch.imaging.lab import srgb_to_lab
from chromatica_watch.search.query import (
    MAX_COLORS,
    ColorWeight,
    color_query_histogram,
    image_query_histogram,
    parse_color_spec,
    parse_colors,
)
from tests.conftest import CLI, photo, solid, write_rgb
from tests.test_image import run_bounded


@pytest.mark.parametrize(("spec", "rgb", "weight"), [
    ("#ff8800:0.7", (255, 136, 0), 0.7),
    ("#f80", (255, 136, 0), None),
    ("0044ff:0.3", (0, 68, 255), 0.3),
    ("0044FF", (0, 68, 255), None),
    ("#ABC:2", (170, 187, 204), 2.0),
    ("  #000000:0  ", (0, 0, 0), 0.0),
    ("#ffffff:1e-1", (255, 255, 255), 0.1),
])
def test_good_specs(spec: str, rgb: tuple[int, int, int], weight: float | None) -> None:
    assert parse_color_spec(spec) == (rgb, weight)


@pytest.mark.parametrize(("specs", "fragment"), [
    (["#ggg"], "'#ggg'"),
    (["#ff88"], "'#ff88'"),
    (["#ff88000"], "'#ff88000'"),
    (["ff8800:"], "'ff8800:'"),
    (["ff8800:abc"], "'ff8800:abc'"),
    (["#f80:-0.5"], "'#f80:-0.5'"),
    (["#f80:nan"], "'#f80:nan'"),
    (["#f80:inf"], "'#f80:inf'"),
    (["#f80:0.5:0.5"], "'#f80:0.5:0.5'"),
    (["redish:x"], "'redish:x'"),  # "reddish" is a name (the xkcd survey's)
    (["#f80:0", "#00f:0"], "all weights are zero"),
    (["#f80:0.7", "#00f:0.4", "#0f0"], "'#0f0'"),
    ([], "no color"),
    ([" "], "no color"),
    ([f"#{i:06x}" for i in range(MAX_COLORS + 1)], f"'#{MAX_COLORS:06x}'"),
])
def test_bad_queries_are_usage_errors_naming_the_spec(specs: list[str], fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_colors(specs)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_eight_colors_are_allowed() -> None:
    assert len(parse_colors([f"#{i:06x}" for i in range(MAX_COLORS)])) == MAX_COLORS


def weights(specs: list[str]) -> list[float]:
    return [c.weight for c in parse_colors(specs)]


def test_weights_are_normalized() -> None:
    assert weights(["#f00:0.7", "#00f:0.3"]) == pytest.approx([0.7, 0.3])
    assert weights(["#f00:3", "#00f:1"]) == pytest.approx([0.75, 0.25])
    assert weights(["#f00", "#0f0", "#00f", "#fff"]) == pytest.approx([0.25] * 4)
    assert weights(["#f00:0.5", "#0f0", "#00f"]) == pytest.approx([0.5, 0.25, 0.25])
    assert weights(["#f00:0", "#0f0"]) == pytest.approx([0.0, 1.0])
    assert sum(weights(["#f00:0.2", "#0f0:0.1", "#00f"])) == pytest.approx(1.0)


def test_huge_weights_are_normalized_without_overflow() -> None:
    assert weights(["#ff0000:1e308", "#00ff00:1e308"]) == [0.5, 0.5]
    assert weights(["#ff0000:1.7e308 #00ff00:1.7e308 #0000ff:1.7e308 #ffffff:1.7e308"]) == [0.25] * 4
    assert weights(["#f00:1.5e308", "#0f0:5e307"]) == pytest.approx([0.75, 0.25])
    assert weights(["#f00:1e308", "#0f0:0"]) == [1.0, 0.0]
    assert weights(["#f00:3e-320", "#0f0:1e-320"]) == pytest.approx([0.75, 0.25])  # subnormal: no underflow
    h = color_query_histogram(parse_colors(["#ff0000:1e308 #00ff00:1e308"]))
    assert np.allclose(h, color_query_histogram(parse_colors(["#ff0000:1 #00ff00:1"])), atol=1e-7)
    assert float(h.sum()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(("specs", "bad"), [(["#f00:1e309", "#0f0:1"], "#f00:1e309"),
                                            (["#f00:1e308", "#0f0:-inf"], "#0f0:-inf")])
def test_weights_that_are_not_finite_are_still_refused(specs: list[str], bad: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_colors(specs)
    assert f"bad weight in color {bad!r}: must be a finite number" == str(info.value)


def test_no_weight_left_message_when_given_weights_overflow() -> None:
    with pytest.raises(UsageError, match=r"no weight left for '#00f'.*sum to more than 1;"):
        parse_colors(["#f00:1e308", "#0f0:1e308", "#00f"])


def test_several_specs_in_one_argument() -> None:
    colors = parse_colors(["#ff8800:0.7 #0044ff:0.3", "#fff:0"])
    assert [c.hex for c in colors] == ["#ff8800", "#0044ff", "#ffffff"]
    assert [c.weight for c in colors] == pytest.approx([0.7, 0.3, 0.0])
    assert [c.hex for c in parse_colors(["#f00,#0f0"])] == ["#ff0000", "#00ff00"]


def expected_peak(rgb: tuple[int, int, int]) -> int:
    """The bin whose centre is nearest on every axis (the heaviest of the 8 tri-linear corners)."""
    lab = srgb_to_lab(np.array([rgb], dtype=np.uint8))[0]
    index = []
    for value, (lo, hi), n in zip(lab, (H.L_RANGE, H.A_RANGE, H.B_RANGE), (H.L_BINS, H.A_BINS, H.B_BINS),
                                  strict=True):
        width = (hi - lo) / n
        index.append(int(np.clip(np.round((value - lo) / width - 0.5), 0, n - 1)))
    return int(np.ravel_multi_index(index, (H.L_BINS, H.A_BINS, H.B_BINS)))


@pytest.mark.parametrize("rgb", [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 136, 0), (0, 128, 128),
                                 (128, 0, 128), (255, 255, 255), (0, 0, 0), (200, 180, 20)])
def test_color_histogram_peaks_at_the_bin_of_the_color(rgb: tuple[int, int, int]) -> None:
    h = color_query_histogram([ColorWeight(rgb, 1.0)])
    assert h.shape == (H.TOTAL_BINS,) and h.dtype == np.float32
    assert float(h.sum()) == pytest.approx(1.0, abs=1e-5)
    assert int(h.argmax()) == expected_peak(rgb)
    # The same soft binning as a pixel of that colour in an indexed image.
    pixel = H.lab_histogram(srgb_to_lab(np.array([[rgb]], dtype=np.uint8)))
    assert np.allclose(h, pixel, atol=1e-6)


def test_weighted_query_splits_mass_between_the_colors() -> None:
    h = color_query_histogram(parse_colors(["#ff8800:0.7", "#0044ff:0.3"]))
    orange = color_query_histogram(parse_colors(["#ff8800"]))
    blue = color_query_histogram(parse_colors(["#0044ff"]))
    assert np.allclose(h, 0.7 * orange + 0.3 * blue, atol=1e-6)
    assert float(h[expected_peak((255, 136, 0))]) > float(h[expected_peak((0, 68, 255))]) > 0


def test_image_query_equals_the_color_query_of_a_solid_image(tmp_path: Path) -> None:
    path = write_rgb(tmp_path / "orange.png", solid((255, 136, 0)))
    from_image = image_query_histogram(str(path))
    from_color = color_query_histogram(parse_colors(["#ff8800"]))
    assert np.allclose(from_image, from_color, atol=1e-5)


def test_image_query_of_a_photo_matches_the_indexed_histogram(tmp_path: Path) -> None:
    from chromatica_watch.imaging.features import features

    path = write_rgb(tmp_path / "coffee.jpg", photo("coffee"), IMWRITE_JPEG_QUALITY=90)
    h = image_query_histogram(str(path), max_dimension=128)
    assert np.array_equal(h, features(path.read_bytes(), 128).histogram)


def test_bad_query_images_are_usage_errors_naming_the_file(tmp_path: Path) -> None:
    good = write_rgb(tmp_path / "good.jpg", photo("astronaut"), IMWRITE_JPEG_QUALITY=90).read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "notes.jpg").write_text("not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    cases = {"missing.jpg": "cannot open", "truncated.jpg": "truncated", "notes.jpg": "not an image",
             "empty.png": "empty", "folder.png": "not a regular file: a folder"}
    for name, reason in cases.items():
        with pytest.raises(UsageError) as info:
            image_query_histogram(str(tmp_path / name))
        message = str(info.value)
        assert name in message and reason in message, message
        assert "\n" not in message


def test_fifo_as_query_image_is_a_prompt_usage_error(tmp_path: Path) -> None:
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    outcome = run_bounded(functools.partial(image_query_histogram, str(fifo)), fifo)
    assert isinstance(outcome, UsageError), outcome
    message = str(outcome)
    assert "x.jpg" in message and "not a regular file: a named pipe (FIFO)" in message
    assert "\n" not in message and outcome.exit_code == 2


def test_query_image_symlink_is_followed(tmp_path: Path) -> None:
    path = write_rgb(tmp_path / "orange.png", solid((255, 136, 0)))
    (tmp_path / "link.png").symlink_to(path)
    assert np.array_equal(image_query_histogram(str(tmp_path / "link.png")), image_query_histogram(str(path)))


def test_search_image_fifo_from_the_command_line_fails_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "query.png"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMATICA_WATCH_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_STATE_HOME=str(tmp_path / "state"), XDG_RUNTIME_DIR=str(tmp_path / "run"))
    try:
        proc = subprocess.run([CLI, "search", "--image", str(fifo)], capture_output=True, text=True, env=env,
                              timeout=60)
    finally:
        # If it blocked (and was killed), nothing waits on the FIFO; otherwise this is a no-op.
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "query.png" in lines[0] and "a named pipe (FIFO)" in lines[0], proc.stderr


def test_css_colour_names_work_wherever_a_hex_does() -> None:
    assert parse_color_spec("teal:0.7") == ((0, 128, 128), 0.7)
    assert parse_color_spec("DarkOrange") == ((255, 140, 0), None)
    assert [c.hex for c in parse_colors(["navy:1", "#f80:1"])] == ["#000080", "#ff8800"]
    with pytest.raises(UsageError, match="a colour name"):
        parse_color_spec("notacolour:0.5")
