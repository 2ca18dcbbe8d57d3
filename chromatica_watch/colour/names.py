"""The names people use for colours, and the one place they are read: the 147 CSS colour names (webcolors:
this module is its one importer) and the 949 names of the xkcd colour survey (`data/xkcd_colours.txt`,
public domain: "mustard", "dusty rose", "sage", "burgundy").

How a typed name is read (`name_rgb`):
- case does not matter, and hyphens, underscores and runs of spaces are one space: "Dusty Rose",
  "dusty-rose" and "dusty_rose" are the xkcd survey's "dusty rose";
- a spelling that is both a CSS and an xkcd name (49 of them: teal, orange, darkblue, ...) is the CSS colour,
  as hex and CSS tools have it (xkcd's "teal" is #029386, CSS's #008080);
- a CSS name written in words ("dark slate gray") is the CSS name, unless the words are an xkcd name
  ("dark blue" is xkcd's #00035b, "darkblue" CSS's #00008b).

Pure functions over plain values; the tables are read once, on first use.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from importlib import resources

import webcolors

logger = logging.getLogger(__name__)

XKCD_FILE = "xkcd_colours.txt"
XKCD_COUNT = 949
_SEPARATORS = re.compile(r"[\s_-]+")
_HEX = re.compile(r"#[0-9a-f]{6}")

RGB = tuple[int, int, int]


def normalize(text: str) -> str:
    """A typed name as the tables spell theirs: lower case, separators one space, no space around."""
    return _SEPARATORS.sub(" ", text.strip().lower()).strip()


@functools.cache
def css_names() -> dict[str, str]:
    """The CSS colour names (CSS Color Module Level 3) -> '#rrggbb'."""
    return {name: webcolors.name_to_hex(name) for name in webcolors.names(webcolors.CSS3)}


@functools.cache
def xkcd_names() -> dict[str, str]:
    """The xkcd survey's names -> '#rrggbb', in the survey's order (data/xkcd_colours.txt)."""
    text = resources.files("chromatica_watch").joinpath("data", XKCD_FILE).read_text(encoding="utf-8")
    return parse_xkcd(text)


def parse_xkcd(text: str) -> dict[str, str]:
    """rgb.txt's lines ('name<TAB>#rrggbb'; '#' comments) as a dict; a bad line raises ValueError."""
    names: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, hex_colour = line.rstrip().partition("\t")
        hex_colour = hex_colour.strip().lower()
        if not name or not _HEX.fullmatch(hex_colour):
            raise ValueError(f"{XKCD_FILE} line {number}: expected 'name<TAB>#rrggbb', got {line!r}")
        names[normalize(name)] = hex_colour
    return names


@functools.cache
def all_names() -> dict[str, str]:
    """Every name a colour may be given by -> '#rrggbb', a CSS name winning over an xkcd one of the same
    spelling: what the web app resolves typed names with."""
    return {**xkcd_names(), **css_names()}


def name_hex(text: str) -> str | None:
    """'#rrggbb' of a colour name (see the module's rules), or None when it is none."""
    key = normalize(text)
    found = all_names().get(key)
    if found is None and " " in key:
        found = css_names().get(key.replace(" ", ""))
    return found


def name_rgb(text: str) -> RGB | None:
    """(r, g, b) of a colour name, or None when it is none."""
    found = name_hex(text)
    return None if found is None else hex_rgb(found)


def hex_rgb(hex_colour: str) -> RGB:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def is_name(text: str) -> bool:
    return name_hex(text) is not None


def nearest_names(text: str, n: int = 4) -> list[str]:
    """The known names spelled most like `text`, closest first (none when nothing is close)."""
    return difflib.get_close_matches(normalize(text), list(all_names()), n=n, cutoff=0.6)
