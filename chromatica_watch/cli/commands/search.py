"""The search command, and the table its results print as."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from chromatica_watch.cli.options import SharedOptions, load_config
from chromatica_watch.cli.output import print_json, say
from chromatica_watch.core.errors import UsageError

if TYPE_CHECKING:
    from chromatica_watch.access.match import Match
    from chromatica_watch.cli.options import Subparsers

# Three "#rrggbb 100%" cells two spaces apart.
COLORS_WIDTH = 3 * len("#rrggbb 100%") + 2 * 2


def add_search(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("search", help="find photos by color or by an example image",
                       description="Find photos by weighted colors or by an example image. Asks the running "
                                   "daemon; with none running, opens the index read-only.",
                       parents=[shared.json, shared.index_dir, shared.config])
    p.add_argument("--color", "-c", action="append", default=[], metavar="COLOR[:WEIGHT]",
                   help="a color like '#ff8800', '#f80' or 'teal', optionally weighted ('#ff8800:0.7'); repeatable, "
                        "up to 8")
    p.add_argument("--image", "-i", metavar="PATH", help="find photos colored like this one")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--group-sidecars", action="store_true",
                   help="show a camera's RAW and the JPEG or HEIF beside it (same name) as one result")
    p.set_defaults(func=cmd_search)


def _check_query_args(args: argparse.Namespace) -> None:
    if args.color and args.image:
        raise UsageError("search by --color or by --image, not both")
    if not args.color and not args.image:
        raise UsageError("nothing to search for: give --color '#ff8800[:weight]' (repeatable) or --image PATH")
    if args.k < 1:
        raise UsageError(f"-k must be at least 1, got {args.k}")


def cmd_search(args: argparse.Namespace) -> int:
    from chromatica_watch.access.api import search  # numpy and the query's colour maths: only for a search

    cfg = load_config(args)
    _check_query_args(args)
    matches = search(args.color or None, args.image, k=args.k, config=cfg, index_dir=args.index_dir,
                     group_sidecars=args.group_sidecars)
    if args.json:
        print_json([m.to_json() for m in matches])
        return 0
    if not matches:
        say("no matches: the index is empty")
        return 0
    swatches = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    for line in format_matches(matches, swatches):
        print(line)
    return 0


def _swatch(hex_color: str) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"\x1b[48;2;{r};{g};{b}m  \x1b[0m"


def format_matches(matches: Sequence[Match], swatches: bool = False) -> list[str]:
    """A table: rank, colour distance (EMD in CIE delta E: 0 = the same colours), dominant colours, path."""
    lines = [f"{'#':>3}  {'ΔE':>5}  {'colors':<{COLORS_WIDTH}}  path"]
    for rank, m in enumerate(matches, 1):
        shown = m.dominant_colors[:3]
        colors = "  ".join(f"{h} {share:3.0%}" for h, share in shown)
        if swatches:  # the swatch is 2 visible columns, added after padding so widths stay right
            colors = "  ".join(f"{_swatch(h)} {h} {share:3.0%}" for h, share in shown) + \
                " " * (COLORS_WIDTH - len(colors) - 3 * len(shown))
        where = f"{m.path}  (offline: {m.root} is not reachable)" if m.offline else m.path
        if m.sidecars:
            where += f"  (+ {', '.join(os.path.basename(p) for p in m.sidecars)})"
        lines.append(f"{rank:>3}  {m.score:5.1f}  {colors:<{COLORS_WIDTH}}  {where}")
    return lines
