"""The daemon's logging: stderr (the journal under systemd) and a rotating file. Only the daemon configures
handlers; every other module only logs to `logging.getLogger(__name__)`."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys

from chromatica_watch.core.config import Config

logger = logging.getLogger(__name__)


class LogFile(logging.handlers.RotatingFileHandler):
    """The rotating log file. A record it cannot write (a full disk) costs one line on stderr (the
    journal) per episode, never logging's own traceback, and the lines after it go to stderr only."""

    _failing = False

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if self._failing and self.stream is not None and not self.stream.closed:
            self._failing = False  # this one was written: the disk has room again

    def handleError(self, record: logging.LogRecord) -> None:
        if not self._failing:
            self._failing = True
            exc = sys.exc_info()[1]
            sys.stderr.write(f"chromatica-watch: cannot write the log file {self.baseFilename} "
                             f"({getattr(exc, 'strerror', None) or exc}); logging to stderr only until it works\n")
        if self.stream is not None:  # drop what is buffered, or every later flush fails again
            with contextlib.suppress(Exception):
                self.stream.close()
            self.stream = None


def configure_logging(cfg: Config) -> None:
    """Only the daemon configures handlers: stderr (the journal under systemd) and a rotating file."""
    root = logging.getLogger()
    root.setLevel(cfg.log_level)
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(stderr)
    try:
        cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
        rotating = LogFile(cfg.log_path, maxBytes=cfg.log_max_bytes, backupCount=cfg.log_backups, encoding="utf-8")
        rotating.setFormatter(fmt)
        root.addHandler(rotating)
    except OSError as exc:
        logger.warning("no log file (%s): logging to stderr only", exc)
