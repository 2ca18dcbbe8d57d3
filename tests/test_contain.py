"""The pure parts of "contains" searches: held shares and their bounds, tone, how queries are read, and the
table scan's exact top k against a scan of every histogram."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from chromatica_watch.colour import contain, rerank
from chromatica_watch.colour.histogram import lab_histogram
from chromatica_watch.core.errors import UsageError
from chromatica_watch.imaging.lab import srgb_to_lab
from chromatica_watch.search.ask import Ask, Filters, parse_ask, parse_date, read_colours
from chromatica_watch.search.scan import TableSearch, scope
from chromatica_watch.storage.table import NO_DATE, TableView
from tests.photo_corpus import mixes, photo_histograms


def lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    v = srgb_to_lab(np.array([rgb], np.uint8))[0]
    return float(v[0]), float(v[1]), float(v[2])


def picture(parts: list[tuple[tuple[int, int, int], float]]) -> np.ndarray:
    """A histogram of an image made of flat colours in these shares."""
    pixels = np.concatenate([np.tile(np.array([rgb], np.uint8), (round(share * 1000), 1))
                             for rgb, share in parts])
    return lab_histogram(srgb_to_lab(pixels))


ORANGE = (245, 130, 20)


def test_held_is_the_share_of_the_photo_that_is_the_colour() -> None:
    hists = np.stack([picture([(ORANGE, 1.0)]), picture([(ORANGE, 0.25), ((110, 160, 225), 0.75)]),
                      picture([((168, 60, 9), 1.0)]), picture([((255, 215, 0), 1.0)])])
    held = contain.held(hists, lab(ORANGE))
    assert held[0] == pytest.approx(1.0, abs=1e-3)
    assert held[1] == pytest.approx(0.25, abs=0.01)
    assert held[2] < 0.05 and held[3] < 0.01  # rust and gold are not orange


def test_coarse_bounds_are_never_below_the_exact_values() -> None:
    rng = np.random.default_rng(5)
    hists = mixes(photo_histograms(rng, ["coffee", "astronaut", "chelsea", "rocket"], 6), 400, rng)
    table = np.ascontiguousarray(contain.coarse(hists).T)
    for rgb in (ORANGE, (30, 90, 200), (40, 140, 50), (250, 250, 250), (20, 20, 20)):
        colour = lab(rgb)
        assert np.all(contain.held_upper(table, colour) >= contain.held(hists, colour) - 1e-6)
        wanted = [contain.Wanted(colour, 0.2), contain.Wanted(lab((200, 30, 40)), None)]
        exact, _ = contain.containment_score(hists, wanted)
        assert np.all(contain.score_lower(table, wanted) <= exact)
        rows = np.arange(0, 400, 7)
        assert np.array_equal(contain.held_upper(table, colour, rows), contain.held_upper(table, colour)[rows])
        _, bins, shares = contain.split_palette(contain.palette(hists))
        top = (np.ascontiguousarray(bins.T), np.ascontiguousarray(shares.T), np.arange(len(hists)))
        estimate, lower = contain.score_top(*top, wanted)
        assert np.all(lower <= exact) and np.all(lower <= estimate)
        alone = [contain.Wanted(colour, None)]
        exact_alone, _ = contain.containment_score(hists, alone)
        assert np.all(contain.score_lower(table, alone) <= exact_alone)
        assert np.all(contain.score_top(*top, alone)[1] <= exact_alone)


def test_tone_tells_toned_monochrome_from_colour() -> None:
    ramp = np.linspace(0, 1, 200)[:, None]

    def toned(dark: tuple[int, int, int], light: tuple[int, int, int]) -> np.ndarray:
        rgb = (np.array(dark) * (1 - ramp) + np.array(light) * ramp).astype(np.uint8)
        return lab_histogram(srgb_to_lab(rgb))

    grey, sepia, cyanotype = toned((0, 0, 0), (255, 255, 255)), toned((40, 26, 13), (240, 225, 200)), \
        toned((10, 30, 80), (230, 240, 250))
    apple = picture([((235, 235, 235), 0.7), ((200, 20, 20), 0.3)])  # one hue on white: colour all the same
    beige = picture([((245, 245, 220), 1.0)])  # a flat tint has no tonal range
    rainbow = picture([((255, 0, 0), 0.3), ((0, 160, 0), 0.3), ((0, 0, 255), 0.4)])
    colourfulness, mono = contain.tone(np.stack([grey, sepia, cyanotype, apple, beige, rainbow]))
    assert mono.tolist() == [True, True, True, False, False, False]
    assert colourfulness[5] >= contain.COLORFUL > colourfulness[0]


def test_how_colours_are_read() -> None:
    contains, palette = read_colours(["#f58214:0.25"])
    assert palette is None and [(c.hex, c.share) for c in contains] == [("#f58214", 0.25)]
    contains, palette = read_colours(["orange"])
    assert palette is None and contains[0].share is None  # a lone colour: the most of it
    contains, palette = read_colours(["teal:0.3", "#f80:0.1"])
    assert palette is None and [c.share for c in contains] == [0.3, 0.1]
    for whole in (["#f00:1"], ["#f00:3", "#00f:1"], ["#f00", "#00f"], ["#f00:0.5", "#0f0"]):
        contains, palette = read_colours(whole)
        assert contains == () and palette is not None and palette.sum() == pytest.approx(1.0)


def test_dates_and_filters_are_checked() -> None:
    assert parse_date("2024", "x") == datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    assert parse_date("2024-06-01T18:30", "x") - parse_date("2024-06-01", "x") == 18.5 * 3600
    with pytest.raises(UsageError, match="bad date for --taken-after: 'June'"):
        parse_ask(taken_after="June")
    with pytest.raises(UsageError, match="is not before"):
        parse_ask(taken_after="2024-09", taken_before="2024-06")
    with pytest.raises(UsageError, match="nothing to search for"):
        parse_ask()
    ask = parse_ask(["#f58214:0.25"], avoid=["red"], folders=["/p/2024"], taken_after="2024-06", camera=" Pixel ",
                    orientation="portrait", tone="colorful")
    assert Ask.from_json(ask.to_json()) == ask
    assert ask.filters.camera == "Pixel" and ask.avoid[0].share == contain.SLIGHT
    with pytest.raises(UsageError):
        Filters.from_json({"orientation": "sideways"})


def view_of(hists: np.ndarray, rng: np.random.Generator) -> TableView:
    n = len(hists)
    colourfulness, mono = contain.tone(hists)
    cells, bins, shares = contain.split_palette(contain.palette(hists))
    return TableView(
        n=n, ids=np.arange(1, n + 1, dtype=np.int64), live=rng.random(n) > 0.2, root=np.zeros(n, np.int32),
        roots=("/p",), folder=(np.arange(n) % 10).astype(np.int32),
        folders=tuple((0, f"f{i}".encode()) for i in range(10)),
        palette=np.ascontiguousarray(cells.T), top_bins=np.ascontiguousarray(bins.T),
        top_shares=np.ascontiguousarray(shares.T), coloured=np.ones(n, bool),
        taken=np.where(rng.random(n) < 0.9, rng.integers(1.4e9, 1.8e9, n), NO_DATE).astype(np.int64),
        source=np.ones(n, np.int8), camera=(np.arange(n) % 3).astype(np.int32),
        cameras=("Canon R5", "Pixel 8", "X"),
        orientation=np.ones(n, np.int8), monochrome=mono, colourfulness=colourfulness, detailed=np.ones(n, bool),
        wall_key=np.zeros(n), wall_order=np.arange(n, dtype=np.int64))


@pytest.mark.parametrize("kind", ["lone", "shares", "avoid", "filtered"])
def test_the_table_scan_gives_the_exact_top_k(kind: str) -> None:
    """Against every live photo scored the same way, with a fifth of them deleted."""
    rng = np.random.default_rng({"lone": 1, "shares": 2, "avoid": 3, "filtered": 4}[kind])
    hists = mixes(photo_histograms(rng, ["coffee", "astronaut", "chelsea", "rocket", "retina"], 8), 3000, rng)
    view = view_of(hists, rng)
    search = TableSearch(view, lambda ids: (ids, hists[ids - 1]))
    agree = []
    for _ in range(10):
        picks = [hists[rng.integers(len(hists))] for _ in range(2)]
        colours = [rerank.dominant_colors(p, top=1)[0][0] for p in picks]
        specs = {"lone": [colours[0]], "shares": [f"{colours[0]}:0.3", f"{colours[1]}:0.2"],
                 "avoid": [f"{colours[0]}:0.2"], "filtered": [colours[0]]}[kind]
        ask = parse_ask(specs, avoid=[f"{colours[1]}:0.1"] if kind == "avoid" else [],
                        folders=["/p/f3", "/p/f7"] if kind == "filtered" else [],
                        camera="pixel" if kind == "filtered" else None)
        rows = scope(view, ask.filters, None, colours=True).rows
        got = [s.image_id for s in search.contains(ask, rows, 10)]
        score, _ = contain.containment_score(hists[rows], [c.wanted for c in ask.contains])
        ok = np.ones(len(rows), bool)
        for c in ask.avoid:
            ok &= contain.held(hists[rows], c.lab) <= c.share
        order = np.lexsort((view.ids[rows][ok], score[ok]))[:10]
        expected = view.ids[rows][ok][order].tolist()
        if kind == "filtered":
            assert all(view.camera[i - 1] == 1 and view.folder[i - 1] in (3, 7) for i in got)
        agree.append(len(set(got) & set(expected)) / 10)
    assert np.mean(agree) >= 0.99, agree
