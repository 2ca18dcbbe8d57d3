"""The search command, and the table its results print as."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from chromatica_watch.cli.options import SharedOptions, add_filters, load_config
from chromatica_watch.cli.output import EXIT_NO_MATCH, colour_wanted, print_json, say, swatch, write_paths
from chromatica_watch.core.errors import UsageError

if TYPE_CHECKING:
    from chromatica_watch.access.match import Match
    from chromatica_watch.cli.options import Subparsers
    from chromatica_watch.core.config import Config

# Three "#rrggbb 100%" cells two spaces apart.
COLORS_WIDTH = 3 * len("#rrggbb 100%") + 2 * 2


def add_search(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("search", help="find photos by color or by an example image",
                       description="Find photos by weighted colors or by an example image. Asks the running "
                                   "daemon; with none running, opens the index read-only. Exits 0 when "
                                   "something matched, 1 when nothing did (as grep does: 'no matches' on "
                                   "stderr; --json still prints []), 2 for a bad query.",
                       parents=[shared.index_dir, shared.config])
    p.add_argument("--color", "-c", action="append", default=[], metavar="COLOR[:WEIGHT]",
                   help="a color like '#ff8800', '#f80', or a name: CSS ('teal') or the xkcd survey's 949 ('dusty "
                        "rose', 'mustard'; CSS first where both spell one), optionally weighted ('#ff8800:0.7'); "
                        "repeatable, up to 8. Weights summing below 1 ('#ff8800:0.25'), or one color alone: photos "
                        "that contain that much of it, the rest of the photo anything; otherwise the whole palette is "
                        "matched")
    p.add_argument("--not", dest="avoid", action="append", default=[], metavar="COLOR[:SHARE]",
                   help="leave out photos holding more than a little (5%%) of this color, or more than SHARE "
                        "('red:0.2'); repeatable")
    tone = p.add_mutually_exclusive_group()
    tone.add_argument("--black-and-white", dest="tone", action="store_const", const="monochrome",
                      help="only photos without color: greyscale, and toned ones such as sepia or cyanotype")
    tone.add_argument("--colorful", dest="tone", action="store_const", const="colorful",
                      help="only vivid photos")
    add_filters(p)
    p.add_argument("--image", "-i", metavar="PATH", help="find photos colored like this one")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--group-sidecars", action="store_true",
                   help="show a camera's RAW and the JPEG or HEIF beside it (same name) as one result")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the output as JSON")
    out.add_argument("--paths", action="store_true",
                     help="only the paths, one a line, best first, as their bytes are on disk (with "
                          "--group-sidecars, a result's other files follow it). Like find -print, nothing is "
                          "escaped: a name holding a newline spans two lines (said on stderr); use --print0 for "
                          "any name")
    out.add_argument("--print0", action="store_true",
                     help="only the paths, each ended by a NUL byte, for xargs -0: right for every file name")
    p.set_defaults(func=cmd_search)


def _check_query_args(args: argparse.Namespace) -> None:
    if args.color and args.image:
        raise UsageError("search by --color or by --image, not both")
    if not (args.color or args.image or _asks_more(args)):
        raise UsageError("nothing to search for: give --color '#ff8800[:weight]' (repeatable), --image PATH, "
                         "--not COLOR, or a filter (--in, --taken-after, --camera, --black-and-white...)")
    if args.k < 1:
        raise UsageError(f"-k must be at least 1, got {args.k}")


def _asks_more(args: argparse.Namespace) -> bool:
    """Whether the search asks more than a whole palette: colours to avoid, or a filter."""
    return bool(args.avoid or args.folders or args.taken_after or args.taken_before or args.camera
                or args.orientation or args.tone)


def cmd_search(args: argparse.Namespace) -> int:
    from chromatica_watch.access.api import search  # numpy and the query's colour maths: only for a search

    cfg = load_config(args)
    _check_query_args(args)
    pending = 0
    contains = bool(args.color) and not args.image and _contains(args.color)
    if contains or _asks_more(args):
        matches, pending = _find(args, cfg)
    else:
        matches = search(args.color or None, args.image, k=args.k, config=cfg, index_dir=args.index_dir,
                         group_sidecars=args.group_sidecars)
    if pending:
        say(f"note: {pending} photo(s) not read yet could not be judged by these filters; they are read in the "
            "background (see status)")
    if args.json:
        print_json([m.to_json() for m in matches])
    elif args.paths or args.print0:
        _print_paths(matches, b"\0" if args.print0 else b"\n")
    elif matches:
        for line in format_matches(matches, colour_wanted(), held=contains):
            print(line)
    if not matches:  # as grep: nothing found is exit 1, whatever the output's form
        say("no matches" if contains or _asks_more(args) else "no matches: the index is empty")
        return EXIT_NO_MATCH
    return 0


def _print_paths(matches: Sequence[Match], end: bytes) -> None:
    """Each result's path (then its sidecars', when grouped) as the bytes of its name on disk."""
    paths = [p for m in matches for p in (m.fs_path, *m.fs_sidecars)]
    write_paths(paths, end)
    if end == b"\n" and (split := sum("\n" in p for p in paths)):
        say(f"note: {split} of these paths hold a newline and span several lines: use --print0 for them")
    if offline := sum(m.offline for m in matches):
        say(f"note: {offline} of these are on a folder that is not reachable now (offline)")


def _contains(colors: list[str]) -> bool:
    from chromatica_watch.search.ask import read_colours

    return bool(read_colours(colors)[0])


def _find(args: argparse.Namespace, cfg: Config) -> tuple[list[Match], int]:
    from chromatica_watch.access.api import find
    from chromatica_watch.search.ask import parse_ask
    from chromatica_watch.search.query import image_query_histogram

    histogram = None if not args.image else image_query_histogram(args.image, cfg.max_dimension, cfg.max_pixels)
    ask = parse_ask(args.color, histogram=histogram, avoid=args.avoid, folders=args.folders,
                    taken_after=args.taken_after, taken_before=args.taken_before, camera=args.camera,
                    orientation=args.orientation, tone=args.tone)
    return find(ask, args.k, cfg, args.index_dir, group_sidecars=args.group_sidecars)


def format_matches(matches: Sequence[Match], swatches: bool = False, held: bool = False) -> list[str]:
    """A table: rank, colour distance (EMD in CIE delta E: 0 = the same colours) or, for colours a photo should
    contain (`held`), the share it holds of the first of them, dominant colours, path."""
    lines = [f"{'#':>3}  {'held' if held else 'ΔE':>5}  {'colors':<{COLORS_WIDTH}}  path"]
    for rank, m in enumerate(matches, 1):
        shown = m.dominant_colors[:3]
        colors = "  ".join(f"{h} {share:3.0%}" for h, share in shown)
        if swatches:  # the swatch is 2 visible columns, added after padding so widths stay right
            colors = "  ".join(f"{swatch(h)} {h} {share:3.0%}" for h, share in shown) + \
                " " * (COLORS_WIDTH - len(colors) - 3 * len(shown))
        where = f"{m.path}  (offline: {m.root} is not reachable)" if m.offline else m.path
        if m.sidecars:
            where += f"  (+ {', '.join(os.path.basename(p) for p in m.sidecars)})"
        if m.shares:
            where += "  (" + ", ".join(f"{h} {s:.0%}" for h, s in m.shares) + ")"
        if m.taken:
            where += f"  taken {m.taken[:10]}" + (" (file date)" if m.taken_source == "mtime" else "")
        figure = f"{m.shares[0][1]:5.0%}" if held and m.shares else f"{m.score:5.1f}"
        lines.append(f"{rank:>3}  {figure}  {colors:<{COLORS_WIDTH}}  {where}")
    return lines
