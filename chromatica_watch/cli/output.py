"""Printing helpers shared by the commands: JSON, durations and dates, lists cut at a limit, the build's
progress bar, and the stderr lines for an interruption or an error."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from chromatica_watch.offline.build import Progress

PROG = "chromatica-watch"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def json_dumps(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


def print_json(obj: object) -> None:
    print(json_dumps(obj))


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


class ProgressBar:
    """A one-line bar with rate and ETA on a terminal; a line every few seconds otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30, interval: float = 5.0) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.interval = 0.2 if self.tty else interval
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        final = p.done >= p.total
        if not final and now - self._last < self.interval:
            return
        self._last = now
        rate = p.done / p.elapsed if p.elapsed > 0 else 0.0
        eta = (p.total - p.done) / rate if rate > 0 else 0.0
        frac = p.done / p.total if p.total else 1.0
        filled = int(self.width * frac)
        bar = "#" * filled + "-" * (self.width - filled)
        line = (f"[{bar}] {p.done}/{p.total} {frac:6.1%}  {rate:6.1f} img/s  ETA {fmt_duration(eta)}"
                f"  failed {p.failed}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
