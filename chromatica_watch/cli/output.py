"""Printing helpers shared by the commands: JSON, durations and dates, lists cut at a limit, and the stderr
lines for an interruption or an error (the progress bars are in `progress.py`)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence

PROG = "chromatica-watch"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
EXIT_NO_MATCH = 1  # a search that found nothing, as grep reports it


def json_dumps(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


def print_json(obj: object) -> None:
    print(json_dumps(obj))


def write_paths(paths: Iterable[str], end: bytes) -> None:
    """File paths as the bytes of their names on disk (a name that is not UTF-8 kept as it is, through
    surrogateescape), each followed by `end`: b"\\n" for one a line, b"\\0" for `xargs -0`."""
    sys.stdout.flush()
    sys.stdout.buffer.write(b"".join(os.fsencode(p) + end for p in paths))


def colour_wanted() -> bool:
    """Whether stdout takes colour: a terminal, and no NO_COLOR (no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def swatch(hex_color: str, width: int = 2) -> str:
    """`width` spaces on the colour '#rrggbb' (a 24-bit ANSI background), then the colour reset."""
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"\x1b[48;2;{r};{g};{b}m{' ' * width}\x1b[0m"


def say(line: str) -> None:
    """One line for the user on stderr (stdout stays the command's result)."""
    print(line, file=sys.stderr)


def interrupted(why: str = "") -> int:
    """Say the command was interrupted (and what is kept, if anything); its exit code."""
    say(f"{PROG}: interrupted{why}")
    return EXIT_INTERRUPTED


def fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def fmt_date(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def print_some(label: str, items: Sequence[str], limit: int) -> None:
    """The first `limit` items, one per line under their label, and how many more there are."""
    for item in items[:limit]:
        print(f"  {label:9} {item}")
    if len(items) > limit:
        print(f"  {label:9} ... and {len(items) - limit} more (--json lists all)")

