"""The command line: the only place that prints. Domain errors become one line and an exit code."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import ChromaticaError, UsageError

logger = logging.getLogger(__name__)


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """A one-line bar with rate and ETA on a terminal; a line every few seconds otherwise."""

    def __init__(self, stream=sys.stderr, width: int = 30, interval: float = 5.0) -> None:  # type: ignore[no-untyped-def]
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.interval = 0.2 if self.tty else interval
        self._last = 0.0

    def __call__(self, p) -> None:  # type: ignore[no-untyped-def]
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
        line = (f"[{bar}] {p.done}/{p.total} {frac:6.1%}  {rate:6.1f} img/s  ETA {_fmt_duration(eta)}"
                f"  failed {p.failed}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _setup_cli_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def cmd_build(args: argparse.Namespace) -> int:
    from .build import BuildOptions, build

    _setup_cli_logging(args.verbose)
    if args.batch_size <= 0 or args.max_dimension < 8 or args.workers < 0:
        raise UsageError("--batch-size must be > 0, --max-dimension >= 8, --workers >= 0")
    opts = BuildOptions(dataset=Path(args.dataset), output=Path(args.output), batch_size=args.batch_size,
                        max_dimension=args.max_dimension, max_pixels=args.max_pixels, workers=args.workers,
                        excludes=tuple(args.exclude))
    report = build(opts, on_progress=None if args.quiet else ProgressBar())
    print(f"indexed {report.indexed} new images ({report.unchanged} already indexed, {report.moved} moved, "
          f"{report.tombstoned} removed) in {report.seconds:.1f} s, {report.images_per_second:.1f} img/s; "
          f"{report.total_live} in the index")
    if report.failures:
        print(f"{len(report.failures)} files could not be indexed; see {opts.output}/failed_images_report.txt")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .validate import validate

    _setup_cli_logging(args.verbose)
    checks = validate(Path(args.index_dir))
    for c in checks:
        print(f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    failed = [c for c in checks if not c.ok]
    print("index is valid" if not failed else f"{len(failed)} check(s) failed")
    return 0 if not failed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chromatica-watch",
                                     description="Keep a color-search index of a photo folder live.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="index a folder offline (resumable)")
    p.add_argument("--dataset", required=True, help="folder of images to index (recursively)")
    p.add_argument("--output", required=True, help="index directory to create or update")
    p.add_argument("--batch-size", type=int, default=100, help="images per committed batch (default 100)")
    p.add_argument("--max-dimension", type=int, default=256, help="longest side before histogramming")
    p.add_argument("--max-pixels", type=int, default=150_000_000, help="refuse images above this many pixels")
    p.add_argument("--workers", type=int, default=0, help="decoding processes (default: one per core)")
    p.add_argument("--exclude", action="append", default=[], help="glob of paths to skip (repeatable)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("validate", help="check an index directory")
    p.add_argument("index_dir")
    p.add_argument("--verbose", "-v", action="store_true")
    p.set_defaults(func=cmd_validate)
    return parser


Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ChromaticaError as exc:
        print(f"chromatica-watch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("chromatica-watch: interrupted", file=sys.stderr)
        return 130


def json_dumps(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
