"""The entry point (`chromatica-watch`, `python -m chromatica_watch`): parse, run the command, and turn
what it raised into one line on stderr and an exit code, here and nowhere else.

Exit codes: 0 ok; 1 failure (a ChromaticaError), or a `search` that found nothing (as grep does); 2 bad
usage or config (UsageError, ConfigError, and argparse's own); 3 the daemon is not running (DaemonNotRunning;
`status` also returns its verdict's code); 130 interrupted; 141 stdout closed under us (`| head`).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence

from chromatica_watch.cli.output import PROG, interrupted, say
from chromatica_watch.cli.parser import build_parser
from chromatica_watch.core.errors import ChromaticaError

__all__ = ["build_parser", "main"]

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell tool killed by the signal would report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, so that a closed pipe (`status | head -1`) is caught below
        # Everything left is freed by the exit anyway: frozen, it is skipped by the interpreter's last
        # garbage collections (~40 ms with DuckDB, FAISS and pyarrow loaded, for every command).
        gc.freeze()
        return code
    except ChromaticaError as exc:
        say(f"{PROG}: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        return interrupted()
    except BrokenPipeError:
        # The reader went away (`| head`): not an error worth a traceback. Point stdout at /dev/null so
        # that the interpreter's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
