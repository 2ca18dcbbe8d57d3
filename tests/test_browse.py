"""The colour wall's order and the library's palette (issue 25): the pure functions with plain values, the
search table keeping the order as rows come, and `palette` through the CLI (daemon and index dir), the
socket, the Python API."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from chromatica_watch.colour import arrange, contain
from chromatica_watch.colour import histogram as H
from chromatica_watch.colour.histogram import lab_histogram
from chromatica_watch.core.records import Changes, NewImage
from chromatica_watch.imaging.lab import srgb_to_lab
from chromatica_watch.offline.build import BuildOptions, build
from chromatica_watch.search.ask import Filters
from chromatica_watch.search.browse import wall_of, wall_page
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.table import SearchTable
from tests.conftest import CLI, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv

RED, ORANGE, YELLOW, GREEN, TEAL, BLUE, PURPLE = ((200, 30, 30), (245, 130, 20), (240, 220, 40), (40, 160, 50),
                                                   (0, 128, 128), (30, 60, 200), (120, 40, 160))
GREYS = ((240, 240, 240), (128, 128, 128), (20, 20, 20))
FP = H.fingerprint(256)


def hist_of(rgb: tuple[int, int, int], size: tuple[int, int] = (24, 24)) -> np.ndarray:
    lab = srgb_to_lab(solid(rgb, size).reshape(-1, 3).astype(np.float32) / 255.0)
    return lab_histogram(lab)


def keys_of(hists: list[np.ndarray]) -> np.ndarray:
    stacked = np.stack(hists)
    _, bins, shares = contain.split_palette(contain.palette(stacked))
    _, mono = contain.tone(stacked)
    return arrange.wall_keys(np.ascontiguousarray(bins.T), np.ascontiguousarray(shares.T), mono)


def test_the_wall_goes_round_the_hue_wheel_then_the_greys_white_to_black() -> None:
    colours = [BLUE, GREYS[2], YELLOW, RED, GREYS[0], TEAL, ORANGE, PURPLE, GREEN, GREYS[1]]
    order = np.argsort(keys_of([hist_of(c) for c in colours]), kind="stable")
    shown = [colours[i] for i in order]
    assert shown == [RED, ORANGE, YELLOW, GREEN, TEAL, BLUE, PURPLE, *GREYS]


def test_within_a_hue_light_comes_before_dark_and_a_small_vivid_colour_decides_the_hue() -> None:
    light, dark = (250, 170, 170), (120, 10, 10)
    keys = keys_of([hist_of(dark), hist_of(light)])
    assert int(keys[0]) == int(keys[1]) and keys[1] < keys[0]
    # Mostly beige, a tenth vivid blue: seen blue (share times chroma), not the beige's orange.
    img = solid((225, 210, 185), (40, 40))
    img[:4] = BLUE
    lab = srgb_to_lab(img.reshape(-1, 3).astype(np.float32) / 255.0)
    mixed, blue = keys_of([lab_histogram(lab), hist_of(BLUE)])
    assert int(mixed) == int(blue)


def test_toned_monochrome_stands_with_the_greys() -> None:
    ramp = np.linspace(0, 1, 200)[:, None]
    sepia = (np.array((40, 26, 13)) * (1 - ramp) + np.array((240, 225, 200)) * ramp).astype(np.uint8)
    brown = hist_of((139, 90, 43))
    keys = keys_of([lab_histogram(srgb_to_lab(sepia.astype(np.float32) / 255.0)), brown])
    assert keys[0] >= arrange.GREY_KEYS > keys[1]


def test_rows_merged_in_keep_the_order_a_full_sort_gives() -> None:
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 30, 2000).astype(np.float64)  # many ties: older rows stay first
    order = arrange.full_order(keys[:1500])
    merged = arrange.insert_ordered(order, keys, np.arange(1500, 2000))
    assert np.array_equal(merged, arrange.full_order(keys))


def test_swatches_count_the_photos_holding_each_colour_and_show_what_they_hold() -> None:
    hists = [hist_of(TEAL)] * 6 + [hist_of(ORANGE)] * 3 + [hist_of(GREYS[1])]
    stored = contain.palette(np.stack(hists))
    cells, bins, shares = contain.split_palette(stored)
    cells, bins, shares = (np.ascontiguousarray(a.T) for a in (cells, bins, shares))
    keep = np.ones(len(hists), bool)
    keep[-1] = False
    counts = arrange.cell_counts(cells, np.flatnonzero(keep))
    shown = arrange.swatches(counts, arrange.bin_weights(bins, shares, np.flatnonzero(keep)), int(keep.sum()), 5)
    assert [s["photos"] for s in shown][:2] == [6, 3]
    teal_lab = srgb_to_lab(np.array([TEAL], np.float32) / 255.0)[0]
    assert np.linalg.norm(np.array(shown[0]["lab"]) - teal_lab) < 3  # what they hold, not the cell's centre
    assert all(s["photos"] <= 6 for s in shown) and shown[0]["share"] == pytest.approx(6 / 9, abs=1e-3)


def _add(catalog: Catalog, named: dict[str, tuple[int, int, int]]) -> None:
    catalog.apply(Changes(added=[NewImage("/root", f"{name}.png".encode(), 1, 1, name, 24, 24, hist_of(rgb), None)
                                 for name, rgb in named.items()]))


def _names(catalog: Catalog, ids: list[int]) -> list[str]:
    where = catalog.describe(ids)
    return [where[i][1].decode().removesuffix(".png") for i in ids]


def test_the_table_keeps_the_wall_ordered_as_rows_come_and_go(tmp_path: Path) -> None:
    with Catalog.open(tmp_path, FP) as catalog:
        _add(catalog, {"blue": BLUE, "grey": GREYS[1], "red": RED, "green": GREEN})
        table = SearchTable(catalog)
        first = table.view()
        assert _names(catalog, [t.id for t in wall_page(first, Filters(), None, 0, 10).tiles]) == \
            ["red", "green", "blue", "grey"]
        _add(catalog, {"yellow": YELLOW, "white": GREYS[0], "purple": PURPLE, "orange": ORANGE})
        catalog.apply(Changes(tombstoned=[int(first.ids[0])]))  # blue goes
        view = table.view()
        assert np.array_equal(view.wall_order, arrange.full_order(view.wall_key))  # merged, as a sort would
        page = wall_page(view, Filters(), None, 0, 3)
        assert _names(catalog, [t.id for t in page.tiles]) == ["red", "orange", "yellow"]
        assert (page.total, page.next) == (7, 3)
        rest = wall_page(view, Filters(), None, 3, 10)
        assert _names(catalog, [t.id for t in rest.tiles]) == ["green", "purple", "white", "grey"]
        assert rest.next is None and first.n == 4  # the first view is a snapshot: it never grew
        shuffled = [int(i) for i in view.ids[::-1]]
        assert _names(catalog, [t.id for t in wall_of(view, [*shuffled, 10**9])]) == \
            ["red", "orange", "yellow", "green", "blue", "purple", "white", "grey"]
        tile = wall_page(view, Filters(), None, 0, 1).tiles[0]
        assert tile.colors and np.linalg.norm(srgb_to_lab(np.array([_rgb(tile.colors[0][0])], np.float32) / 255.0)
                                              - srgb_to_lab(np.array([RED], np.float32) / 255.0)) < 6


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return int(hex_color[1:3], 16), int(hex_color[3:5], 16), int(hex_color[5:7], 16)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    pictures = tmp_path / "Pictures"
    for n in range(6):
        write_rgb(pictures / "sea" / f"teal{n}.png", solid((TEAL[0], TEAL[1] + n, TEAL[2] + n)))
    for n in range(3):
        write_rgb(pictures / "fire" / f"orange{n}.png", solid((ORANGE[0], ORANGE[1] + n, ORANGE[2])))
    write_rgb(pictures / "fire" / "red.png", solid(RED))
    write_rgb(pictures / "grey.png", solid(GREYS[1]))
    return pictures


def _near(swatch: dict[str, object], rgb: tuple[int, int, int]) -> bool:
    return bool(np.linalg.norm(np.array(swatch["lab"]) - srgb_to_lab(np.array([rgb], np.float32) / 255.0)[0]) < 10)


def test_palette_through_the_cli_with_and_without_the_daemon(daemon_env: DaemonEnv, library: Path,
                                                              tmp_path: Path) -> None:
    built = tmp_path / "built"
    build(BuildOptions(dataset=library, output=built, workers=1))
    local = json.loads(daemon_env.cli("palette", "--index-dir", str(built), "--json").stdout)
    assert local["photos"] == 11 and local["pending"] == 0
    assert _near(local["swatches"][0], TEAL) and local["swatches"][0]["photos"] == 6
    assert any(_near(s, ORANGE) and s["photos"] == 3 for s in local["swatches"])
    assert library == daemon_env.pictures
    daemon_env.start()
    wait_until(lambda: daemon_env.idle_with(11), timeout=60)
    fire = daemon_env.cli("palette", "--in", str(daemon_env.pictures / "fire"), "--json")
    assert fire.returncode == 0, fire.stderr
    swatches = json.loads(fire.stdout)["swatches"]
    assert _near(swatches[0], ORANGE) and swatches[0]["photos"] == 3 and not any(_near(s, TEAL) for s in swatches)
    text = daemon_env.cli("palette", "--top", "3")
    assert text.returncode == 0 and "\x1b[" not in text.stdout  # not a terminal: no colour codes
    lines = text.stdout.splitlines()
    assert len(lines) == 4 and "11 photo(s)" in lines[0] and "6 photos" in lines[1]
    empty = daemon_env.cli("palette", "--in", str(daemon_env.pictures / "fire"), "--taken-before", "1990")
    assert empty.returncode == 1 and empty.stdout == "" and len(empty.stderr.splitlines()) == 1
    bad = daemon_env.cli("palette", "--top", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_palette_through_the_socket_and_the_python_api(daemon_env: DaemonEnv, library: Path) -> None:
    assert library == daemon_env.pictures
    daemon_env.start()
    wait_until(lambda: daemon_env.idle_with(11), timeout=60)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(daemon_env.runtime_dir / "chromatica-watch.sock"))
        s.sendall(json.dumps({"op": "palette", "filters": {"folders": [str(daemon_env.pictures / "sea")]},
                              "top": 2}).encode() + b"\n")
        answer = json.loads(s.makefile().readline())
    assert answer["ok"] and len(answer["palette"]["swatches"]) <= 2
    assert _near(answer["palette"]["swatches"][0], TEAL) and answer["palette"]["photos"] == 6
    code = ("import json, sys; from chromatica_watch import palette, parse_filters; "
            "from chromatica_watch.core.config import load; "
            "print(json.dumps(palette(parse_filters(['fire']), 4, load(sys.argv[1]))))")
    run = subprocess.run([str(Path(CLI).parent / "python"), "-c", code, str(daemon_env.config)],
                         capture_output=True, text=True, timeout=120, cwd=daemon_env.pictures)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["photos"] == 4 and _near(got["swatches"][0], ORANGE)
