"""The CLI's progress bars, drawn by tqdm (this module is its one importer).

On a terminal: tqdm's bar, redrawn in place at most five times a second, with the rate, the ETA and the
files that failed. Anywhere else (a pipe, a CI log, a systemd journal) there is no terminal to redraw on,
and carriage returns would make one unreadable line: one plain line every `interval` seconds and a last one
when the work is done, with the same figures, as tqdm formats them.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from chromatica_watch.offline.build import Progress

logger = logging.getLogger(__name__)

# tqdm would otherwise start a monitor thread per process, left running after the bar is closed.
tqdm.monitor_interval = 0

PLAIN_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
LOG_INTERVAL = 5.0  # seconds between two plain lines when stderr is not a terminal


class BuildProgress:
    """Called with the build's `Progress`; use it as a context manager so that the bar is closed (and its
    line ended) however the build ends, an interruption included."""

    def __init__(self, stream: TextIO | None = None, interval: float = LOG_INTERVAL, desc: str = "build") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _terminal_columns(self.stream) > 0
        self.interval = interval
        self.desc = desc
        self._bar: tqdm | None = None
        self._last: float | None = None

    def __enter__(self) -> BuildProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __call__(self, p: Progress) -> None:
        if self.tty:
            self._draw(p)
        else:
            self._line(p)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _draw(self, p: Progress) -> None:
        if self._bar is None:
            self._bar = tqdm(total=p.total, desc=self.desc, unit="img", file=self.stream, mininterval=0.2,
                             dynamic_ncols=True, leave=True)
        self._bar.set_postfix(failed=p.failed, refresh=False)
        self._bar.update(p.done - self._bar.n)
        if p.done >= p.total:
            self.close()

    def _line(self, p: Progress) -> None:
        now = time.monotonic()
        final = p.done >= p.total
        if not final and self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        self.stream.write(plain_line(self.desc, p) + "\n")
        self.stream.flush()


def _terminal_columns(stream: TextIO) -> int:
    """The width of the terminal `stream` writes to; 0 when it is none, or one that says it has no columns
    (a pseudo terminal nobody sized: tqdm would draw nothing on it)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns if stream.isatty() else 0
    except (OSError, ValueError, io.UnsupportedOperation):
        return 0


def plain_line(desc: str, p: Progress) -> str:
    """'build:  40% 40/100 [00:03<00:04, 12.50img/s, failed=0]': tqdm's figures, without a bar."""
    return str(tqdm.format_meter(p.done, p.total, p.elapsed, prefix=desc, unit="img", postfix=f"failed={p.failed}",
                                 bar_format=PLAIN_FORMAT))
