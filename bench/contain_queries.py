"""bench_contain's library and queries: the header details of every row of its data set, the filters keeping
100%, 10%, 1% and 0.01% of the photos (and the share each keeps by the generated details alone), and queries
of each kind from the data's own palette, as `Ask`s (parse_ask, as people type them)."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from bench_search import base_histograms, mixes
from bench_web import FILES_PER_FOLDER

from chromatica_watch.core.records import PhotoDetails
from chromatica_watch.search.ask import Ask, parse_ask

SPAN = (calendar.timegm((2012, 1, 1, 0, 0, 0)), calendar.timegm((2026, 1, 1, 0, 0, 0)))
SOURCES = ("exif", "xmp", "mtime")
MODELS = {"Canon": "EOS R5|EOS R6|EOS 5D Mark IV|EOS 90D|EOS M50", "NIKON": "Z 6|Z 7II|D750|D850|Z fc",
          "SONY": "ILCE-7M3|ILCE-7RM4|ILCE-6400|RX100|ILCE-9", "FUJIFILM": "X-T3|X-T4|X100V|X-E4|GFX 50S",
          "OLYMPUS": "E-M1|E-M5|E-M10|PEN-F|TG-6", "Panasonic": "DC-G9|DC-GH5|DMC-LX100|DC-S5|DC-FZ1000",
          "Apple": "iPhone 8|iPhone 11|iPhone 13 Pro|iPhone 15|iPad Air",
          "Google": "Pixel 4a|Pixel 6|Pixel 7|Pixel 8|Pixel 9"}
RARE_CAMERA, RARE_EVERY = "Leica M11 Monochrom", 10_000  # on 0.01% of the rows
CAMERAS = (*(f"{make} {model}" for make, models in MODELS.items() for model in models.split("|")), RARE_CAMERA)
ORIENTATIONS = ("landscape", "portrait", "square")
KINDS = ("lone colour", "two shares", "avoid only", "contain + avoid", "whole palette")


# -- the library's details ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Library:
    """Row i's details (row i: bench_web's relpath(i), catalog id i + 1)."""

    taken: np.ndarray  # int64 epoch seconds (wall clock read as UTC)
    source: np.ndarray  # index into SOURCES
    camera: np.ndarray  # index into CAMERAS (the rare one last), -1: none
    orientation: np.ndarray

    def details(self, i: int) -> PhotoDetails:
        camera = int(self.camera[i])
        return PhotoDetails(datetime.fromtimestamp(int(self.taken[i]), UTC).replace(tzinfo=None),
                            SOURCES[self.source[i]], None if camera < 0 else CAMERAS[camera],
                            ORIENTATIONS[self.orientation[i]])


def library(n: int) -> Library:
    rng = np.random.default_rng(23)
    taken = rng.integers(SPAN[0], SPAN[1], n)
    source = rng.choice(len(SOURCES), n, p=[0.85, 0.05, 0.10])
    camera = np.where(source == SOURCES.index("mtime"), -1, rng.integers(0, len(CAMERAS) - 1, n))
    rare = np.arange(n) % RARE_EVERY == RARE_EVERY // 2
    camera[rare], source[rare] = len(CAMERAS) - 1, 0
    return Library(taken, source.astype(np.int8), camera, rng.choice(3, n, p=[0.6, 0.35, 0.05]).astype(np.int8))


# -- filters ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filter:
    label: str
    folders: tuple[str, ...] = ()
    first_folders: float = 0.0  # the folders kept: the first this many (a fraction: one folder)
    after: int | None = None
    before: int | None = None
    camera: str | None = None

    def words(self, palette: bool) -> dict[str, Any]:
        """parse_ask's keywords; a whole palette with no filter gets one keeping every photo."""
        day = lambda t: None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")  # noqa: E731
        after = "2000" if palette and self.label == "100%" else day(self.after)
        return {"folders": self.folders, "taken_after": after, "taken_before": day(self.before), "camera": self.camera}

    def mask(self, lib: Library) -> np.ndarray:
        """The rows it keeps, from the generated details alone."""
        n = len(lib.taken)
        keep = np.ones(n, bool)
        if self.folders:
            keep &= np.arange(n) // FILES_PER_FOLDER < max(self.first_folders, 1)
        if self.after is not None:
            keep &= (lib.taken >= self.after) & (lib.taken < self.before)
        if self.camera is not None:
            keep &= lib.camera == len(CAMERAS) - 1
        return keep


def range_globs(root: str, count: int, width: int = 4) -> tuple[str, ...]:
    """Globs (or absolute folders) on bench_web's folders d0000... for exactly the first `count` of them."""
    out, start = [], 0
    while start < count:
        block = 1
        while start % (block * 10) == 0 and start + block * 10 <= count:
            block *= 10
        fixed = width - len(str(block)) + 1
        out.append(f"{root}/d{f'{start:0{width}d}'[:fixed]}{'*' if block > 1 else ''}")
        start += block
    return tuple(out)


def make_filters(n: int, root: str) -> list[Filter]:
    folders = -(-n // FILES_PER_FOLDER)
    span = SPAN[1] - SPAN[0]
    after = SPAN[0] + int(0.3 * span)

    def share(label: str, of_folders: float, of_dates: float = 1.0) -> Filter:
        count = folders * of_folders
        if count < 1:  # less than a folder: the first one and a share of the dates
            of_dates *= count
        globs = range_globs(root, max(round(count), 1))
        dates = {} if of_dates >= 1 else {"after": after, "before": after + int(of_dates * span)}
        return Filter(label, globs, count, **dates)

    return [Filter("100%"), share("10%", 0.1), share("1%", 0.1, 0.1), share("0.01%", 0.0001),
            Filter("0.01% camera", camera=RARE_CAMERA.split()[0])]


# -- queries ------------------------------------------------------------------------------------------

def colour_words(kind: str, count: int, base: np.ndarray) -> list[dict[str, list[str]]]:
    """parse_ask's colours and colours to avoid for `count` queries of one kind, from the data's palette."""
    from chromatica_watch.colour.rerank import dominant_colors

    rng = np.random.default_rng(KINDS.index(kind) + 100)

    def dominant(least: int = 1) -> list[tuple[str, float]]:
        while True:
            found = dominant_colors(mixes(base, 1, rng)[0], top=4, min_share=0.02)
            if len(found) >= least:
                return found

    out: list[dict[str, list[str]]] = []
    while len(out) < count:
        if kind == "lone colour":
            found = dominant()
            out.append({"colors": [found[int(rng.integers(0, min(2, len(found))))][0]], "avoid": []})
        elif kind == "two shares":
            (a, _), (b, _) = dominant(2)[:2]
            sa, sb = rng.uniform(0.05, 0.45, 2)
            out.append({"colors": [f"{a}:{sa:.2f}", f"{b}:{sb:.2f}"], "avoid": []})
        elif kind == "avoid only":
            out.append({"colors": [], "avoid": [dominant()[0][0]]})
        elif kind == "contain + avoid":
            a, b = dominant()[0][0], dominant()[0][0]
            if np.linalg.norm(np.subtract(*(parse_ask([c]).contains[0].lab for c in (a, b)))) > 30:
                out.append({"colors": [a], "avoid": [b]})
        else:
            colours = dominant(2)
            weights = np.array([s for _, s in colours])
            percent = np.maximum(np.round(weights / weights.sum() * 100).astype(int), 1)
            percent[0] += 100 - percent.sum()
            out.append({"colors": [f"{h}:{p / 100:.2f}" for (h, _), p in zip(colours, percent, strict=True)],
                        "avoid": []})
    return out


def make_cells(filters: Sequence[Filter], count: int) -> dict[tuple[str, str], list[Ask]]:
    cells, base = {}, base_histograms()
    for kind in KINDS:
        words = colour_words(kind, count, base)
        for f in filters:
            cells[kind, f.label] = [parse_ask(w["colors"], avoid=w["avoid"], **f.words(kind == "whole palette"))
                                    for w in words]
    return cells
