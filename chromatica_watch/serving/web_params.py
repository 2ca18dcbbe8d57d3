"""What the web app's routes take from a request, apart from the HTTP library: the query words of a
search (the CLI's: `color`, `not`, `in`, `taken_after`, `taken_before`, `camera`, `orientation`, `tone`,
`k`, `group_sidecars`) and the image id a path names.

A route's id is a whole number below 2**63 (the catalog's BIGINT): anything else is a clear 400 (not a
whole number: negative, a fraction, a word, bytes that are no digits) or 404 (a number no image can have),
and never reaches a query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from chromatica_watch.core.errors import UsageError
from chromatica_watch.search.ask import Ask, Filters, parse_ask, parse_filters
from chromatica_watch.search.searcher import DEFAULT_K
from chromatica_watch.serving.web_access import shown

FILTERS = ("not", "in", "taken_after", "taken_before", "camera", "orientation", "tone")
MAX_IMAGE_ID = 2**63 - 1


class Params(Protocol):
    """A request's query parameters (Starlette's QueryParams)."""

    def get(self, key: str) -> str | None: ...

    def getlist(self, key: str) -> list[str]: ...


def has_filters(params: Params) -> bool:
    return any(params.get(n) for n in FILTERS)


def ask_of(params: Params, colors: Sequence[str], histogram: np.ndarray | None = None) -> Ask:
    return parse_ask(colors, histogram=histogram, avoid=params.getlist("not"), folders=params.getlist("in"),
                     taken_after=params.get("taken_after") or None, taken_before=params.get("taken_before") or None,
                     camera=params.get("camera") or None, orientation=params.get("orientation") or None,
                     tone=params.get("tone") or None)


def filters_of(params: Params) -> Filters:
    """The filters alone (the colour wall, the palette): `in`, `taken_after`, `taken_before`, `camera`,
    `orientation`, `tone`."""
    return parse_filters(params.getlist("in"), params.get("taken_after") or None, params.get("taken_before") or None,
                         params.get("camera") or None, params.get("orientation") or None, params.get("tone") or None)


def whole_number(params: Params, name: str, default: int, lowest: int, highest: int) -> int:
    """A whole-number parameter within [lowest, highest]; a clear 400 otherwise."""
    text = params.get(name)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or not lowest <= int(text) <= highest:
        raise UsageError(f"{name} must be a whole number from {lowest} to {highest}, got {shown(text)}")
    return int(text)


def ids_of(params: Params, most: int) -> list[int] | None:
    """`ids=4,8,15` (a search's results, to lay out by colour); None without the parameter."""
    text = params.get("ids")
    if text is None:
        return None
    words = [w for w in text.split(",") if w]
    if len(words) > most:
        raise UsageError(f"at most {most} ids at once, got {len(words)}")
    ids = [parse_image_id(w) for w in words]
    return [i for i in ids if i is not None]


def grouped(params: Params) -> bool:
    return (params.get("group_sidecars") or "0") not in ("0", "false")


def k_of(params: Params) -> int:
    text = params.get("k")
    if text is None:
        return DEFAULT_K
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"k must be a whole number, got {shown(text)}") from None


def parse_image_id(text: str) -> int | None:
    """The id a path names: None for a whole number no image can have (past 64 bits); UsageError (a 400)
    for anything but a whole number."""
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"bad image id {shown(text)}: an image id is a whole number, like 42")
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_IMAGE_ID)) or int(digits) > MAX_IMAGE_ID:
        return None
    return int(digits)


def thumbnail_urls(image_id: int) -> dict[str, str]:
    return {"thumbnail": f"/thumbnails/{image_id}?size=normal", "large": f"/thumbnails/{image_id}?size=x-large"}
