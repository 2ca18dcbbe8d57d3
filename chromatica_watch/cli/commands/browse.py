"""Commands that look at the library by colour rather than search it: palette."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from chromatica_watch.cli.options import SharedOptions, add_filters, load_config
from chromatica_watch.cli.output import colour_wanted, print_json, say, swatch

if TYPE_CHECKING:
    from chromatica_watch.cli.options import Subparsers

BAR_WIDTH = 30


def add_palette(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("palette", help="the colours most of your photos hold",
                       description="The library's palette: the colours held (at least 5%% of a photo) by the most "
                                   "photos, most first, with how many hold each. Search for one with "
                                   "`search --color HEX`.",
                       parents=[shared.json, shared.index_dir, shared.config])
    add_filters(p)
    p.add_argument("--top", type=int, default=24, help="how many colours (default 24, at most 144)")
    p.set_defaults(func=cmd_palette)


def cmd_palette(args: argparse.Namespace) -> int:
    from chromatica_watch.access.api import palette
    from chromatica_watch.core.errors import UsageError
    from chromatica_watch.search.ask import parse_filters

    if not 1 <= args.top <= 144:
        raise UsageError(f"--top must be from 1 to 144, got {args.top}")
    filters = parse_filters(args.folders, args.taken_after, args.taken_before, args.camera, args.orientation)
    found = palette(filters, args.top, load_config(args), args.index_dir)
    if args.json:
        print_json(found)
        return 0
    if found["pending"]:
        say(f"note: {found['pending']} photo(s) not read yet are not counted; they are read in the background "
            "(see status)")
    if not found["swatches"]:
        say("no photos to take colours from" + (" with these filters" if args.folders or args.taken_after
                                                or args.taken_before or args.camera or args.orientation else ""))
        return 1
    for line in format_palette(found, colour_wanted()):
        print(line)
    return 0


def format_palette(found: dict[str, Any], colour: bool) -> list[str]:
    """A line per swatch: a bar as long as its share of the most held one (in its colour on a terminal), its
    hex, how many photos hold it and their share of those looked at."""
    swatches = found["swatches"]
    most = max(s["photos"] for s in swatches)
    lines = [f"the colours held by the most of {found['photos']} photo(s):"]
    for s in swatches:
        width = max(1, round(BAR_WIDTH * s["photos"] / most))
        bar = swatch(s["hex"], width) if colour else "#" * width
        lines.append(f"  {bar}{' ' * (BAR_WIDTH - width)}  {s['hex']}  {s['photos']:>9,} photos  {s['share']:6.1%}")
    return lines

