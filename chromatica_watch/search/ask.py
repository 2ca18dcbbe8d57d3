"""What a search asks, as plain values: `Ask` (colours to contain, a whole palette, colours to avoid) and its
`Filters` (folders, date taken, camera, orientation, tone), parsed from what people type and validated here,
for the CLI, the Python API, the socket and the web app alike. Each bad value is one `UsageError` naming it.

How colours are read (`parse_ask`):
- weights summing below 1 (`'#f58214:0.25'`): the photo should *contain* each colour in about its share,
  the rest of it is free;
- a lone colour without a weight (`'#f58214'`, `orange`): the photos holding the most of it;
- several colours without weights, weights summing to 1, or relative weights summing above 1
  (`'#f00:3 #00f:1'`): the whole palette, as before (EMD against the query's histogram).
"""

from __future__ import annotations

import calendar
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from chromatica_watch.colour.contain import SLIGHT, Wanted
from chromatica_watch.core.errors import UsageError
from chromatica_watch.imaging.lab import srgb_to_lab
from chromatica_watch.search.query import (
    ColorWeight,
    color_query_histogram,
    parse_color_spec,
    parse_colors,
    split_specs,
)

ORIENTATION_NAMES = ("landscape", "portrait", "square")
TONES = ("monochrome", "colorful")
_DATE = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2}))?)?)?)?")
_DATE_HELP = "expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]"


@dataclass(frozen=True)
class Colour:
    """A colour of a query: as typed (hex), in Lab, and the share asked for (None: as much as can be)."""

    hex: str
    lab: tuple[float, float, float]
    share: float | None

    @property
    def wanted(self) -> Wanted:
        return Wanted(self.lab, self.share)

    def to_json(self) -> dict[str, Any]:
        return {"hex": self.hex, "lab": list(self.lab), "share": self.share}

    @classmethod
    def from_json(cls, data: Any) -> Colour:
        if not isinstance(data, dict):
            raise UsageError("a colour must be an object with 'hex', 'lab' and 'share'")
        lab, share = data.get("lab"), data.get("share")
        if not (isinstance(lab, list) and len(lab) == 3 and all(_finite(v) for v in lab)):
            raise UsageError("a colour's 'lab' must be three numbers")
        if share is not None and not (_finite(share) and 0 < share <= 1):
            raise UsageError("a colour's 'share' must be a number in (0, 1] or null")
        return cls(str(data.get("hex", "")), (float(lab[0]), float(lab[1]), float(lab[2])),
                   None if share is None else float(share))


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Filters:
    """Which photos a search may return. Dates are the wall-clock time taken, as epoch seconds of that time
    read as UTC (what the camera wrote has no time zone): `taken_after` inclusive, `taken_before` exclusive."""

    folders: tuple[str, ...] = ()  # absolute folders (their photos and those below), or globs on folder paths
    taken_after: float | None = None
    taken_before: float | None = None
    camera: str | None = None  # a case-insensitive part of "Make Model"
    orientation: str | None = None  # one of ORIENTATION_NAMES
    tone: str | None = None  # one of TONES

    @property
    def reads_headers(self) -> bool:
        """Whether a photo must have had its headers read to pass (date, camera, orientation)."""
        return (self.taken_after is not None or self.taken_before is not None or self.camera is not None
                or self.orientation is not None)

    def __bool__(self) -> bool:
        return bool(self.folders) or self.reads_headers or self.tone is not None

    def to_json(self) -> dict[str, Any]:
        return {"folders": list(self.folders), "taken_after": self.taken_after, "taken_before": self.taken_before,
                "camera": self.camera, "orientation": self.orientation, "tone": self.tone}

    @classmethod
    def from_json(cls, data: Any) -> Filters:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise UsageError("'filters' must be an object")
        folders = data.get("folders") or []
        if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
            raise UsageError("'filters.folders' must be a list of strings")
        after, before = data.get("taken_after"), data.get("taken_before")
        for name, value in (("taken_after", after), ("taken_before", before)):
            if value is not None and not _finite(value):
                raise UsageError(f"'filters.{name}' must be a number (epoch seconds) or null")
        camera = data.get("camera")
        if camera is not None and not isinstance(camera, str):
            raise UsageError("'filters.camera' must be a string")
        return make_filters(folders, after, before, camera, data.get("orientation"), data.get("tone"))


def make_filters(folders: Sequence[str] = (), taken_after: float | None = None, taken_before: float | None = None,
                 camera: str | None = None, orientation: str | None = None, tone: str | None = None) -> Filters:
    """Filters, checked: a known orientation and tone, a date range that is not empty."""
    if orientation is not None and orientation not in ORIENTATION_NAMES:
        raise UsageError(f"bad orientation {orientation!r}: expected one of {', '.join(ORIENTATION_NAMES)}")
    if tone is not None and tone not in TONES:
        raise UsageError(f"bad tone {tone!r}: expected one of {', '.join(TONES)}")
    if taken_after is not None and taken_before is not None and taken_after >= taken_before:
        raise UsageError(f"--taken-after {_show(taken_after)} is not before --taken-before {_show(taken_before)}: "
                         "no photo can be taken in between")
    camera = camera.strip() if camera is not None else None
    return Filters(tuple(folders), None if taken_after is None else float(taken_after),
                   None if taken_before is None else float(taken_before), camera or None, orientation, tone)


def _show(epoch: float) -> str:
    return datetime.utcfromtimestamp(epoch).isoformat(sep=" ")


def parse_date(text: str, option: str) -> float:
    """'2024', '2024-06', '2024-06-01' or '2024-06-01T18:30[:15]' -> epoch seconds of its start (as UTC)."""
    match = _DATE.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"bad date for {option}: {text!r} ({_DATE_HELP})")
    parts = [int(p) if p else None for p in match.groups()]
    year, month, day, hour, minute, second = parts
    try:
        when = datetime(year or 1, month or 1, day or 1, hour or 0, minute or 0, second or 0)
    except ValueError as exc:
        raise UsageError(f"bad date for {option}: {text!r} ({exc})") from None
    return float(calendar.timegm(when.timetuple()))


def absolute_folders(folders: Sequence[str]) -> tuple[str, ...]:
    """What `--in` names, as the daemon matches it: a folder made absolute (from the caller's working
    directory, ~ expanded), or a glob (kept, ~ expanded, made absolute unless it starts with a wildcard)."""
    out = []
    for folder in folders:
        if not folder.strip():
            raise UsageError("--in needs a folder")
        text = os.path.expanduser(folder)
        if not text.startswith(("*", "?", "[")):
            text = os.path.abspath(text)
        out.append(text)
    return tuple(out)


@dataclass(frozen=True)
class Ask:
    """One search: colours to contain, or a whole palette (a histogram: colours or an example image), or
    neither (filters alone); colours to avoid; filters."""

    contains: tuple[Colour, ...] = ()
    histogram: np.ndarray | None = None
    avoid: tuple[Colour, ...] = ()
    filters: Filters = field(default_factory=Filters)

    @property
    def plain(self) -> bool:
        """A whole-palette search with nothing else: the live index answers it alone."""
        return self.histogram is not None and not self.avoid and not self.filters

    def to_json(self) -> dict[str, Any]:
        return {"contains": [c.to_json() for c in self.contains], "avoid": [c.to_json() for c in self.avoid],
                "filters": self.filters.to_json(),
                "histogram": None if self.histogram is None else np.asarray(self.histogram).tolist()}

    @classmethod
    def from_json(cls, data: Any) -> Ask:
        if not isinstance(data, dict):
            raise UsageError("'ask' must be an object")
        contains, avoid = data.get("contains") or [], data.get("avoid") or []
        if not isinstance(contains, list) or not isinstance(avoid, list):
            raise UsageError("'contains' and 'avoid' must be lists")
        hist = data.get("histogram")
        if hist is not None and not (isinstance(hist, list) and all(_finite(v) for v in hist)):
            raise UsageError("'histogram' must be a list of numbers")
        ask = cls(tuple(Colour.from_json(c) for c in contains),
                  None if hist is None else np.asarray(hist, np.float32),
                  tuple(Colour.from_json(c) for c in avoid), Filters.from_json(data.get("filters")))
        if ask.contains and ask.histogram is not None:
            raise UsageError("a search either contains colours or matches a whole palette, not both")
        return ask


def _colour(rgb: tuple[int, int, int], share: float | None) -> Colour:
    lab = srgb_to_lab(np.array([rgb], np.uint8))[0]
    return Colour("#{:02x}{:02x}{:02x}".format(*rgb), (float(lab[0]), float(lab[1]), float(lab[2])), share)


def read_colours(specs: Sequence[str]) -> tuple[tuple[Colour, ...], np.ndarray | None]:
    """(colours to contain, None) or ((), whole-palette histogram) for the `--color` values, as the module
    docstring says."""
    specs = split_specs(specs)
    if not specs:
        return (), None
    parsed = [parse_color_spec(s) for s in specs]
    weights = [w for _, w in parsed]
    if len(parsed) == 1 and weights[0] is None:
        return (_colour(parsed[0][0], None),), None
    if all(w is not None for w in weights) and 0 < sum(w for w in weights if w is not None) < 1 - 1e-9 \
            and all(w is not None and w > 0 for w in weights):
        return tuple(_colour(rgb, w) for rgb, w in parsed), None
    colours: list[ColorWeight] = parse_colors(specs)
    return (), color_query_histogram(colours)


def read_avoided(specs: Sequence[str]) -> tuple[Colour, ...]:
    """`--not red` (more than SLIGHT of red excludes a photo) or `--not red:0.2` (more than 20%)."""
    out = []
    for spec in split_specs(specs):
        rgb, share = parse_color_spec(spec)
        if share is not None and not 0 <= share < 1:
            raise UsageError(f"bad share in --not {spec!r}: the most of it a photo may hold, from 0 to below 1")
        out.append(_colour(rgb, SLIGHT if share is None else share))
    return tuple(out)


def parse_ask(colors: Sequence[str] = (), *, histogram: np.ndarray | None = None, avoid: Sequence[str] = (),
              folders: Sequence[str] = (), taken_after: str | None = None, taken_before: str | None = None,
              camera: str | None = None, orientation: str | None = None, tone: str | None = None) -> Ask:
    """An Ask from what people type (`histogram`: an example image's, instead of colours)."""
    contains, palette = read_colours(colors)
    if histogram is not None:
        if contains or palette is not None:
            raise UsageError("search by colors or by an example image, not both")
        palette = histogram
    filters = parse_filters(folders, taken_after, taken_before, camera, orientation, tone)
    ask = Ask(contains, palette, read_avoided(avoid), filters)
    if not ask.contains and ask.histogram is None and not ask.avoid and not ask.filters:
        raise UsageError("nothing to search for: give --color, --image, --not, or a filter")
    return ask


def parse_filters(folders: Sequence[str] = (), taken_after: str | None = None, taken_before: str | None = None,
                  camera: str | None = None, orientation: str | None = None, tone: str | None = None) -> Filters:
    """Filters from what people type: folders made absolute, dates read (YYYY, YYYY-MM, YYYY-MM-DD)."""
    return make_filters(absolute_folders(folders),
                        None if taken_after is None else parse_date(taken_after, "--taken-after"),
                        None if taken_before is None else parse_date(taken_before, "--taken-before"),
                        camera, orientation, tone)
