"""The one way to reach an index: the running daemon if it answers for it, else the index directory
opened here (`use_index`). Every CLI command about an index and the Python API's `search` go through it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from chromatica_watch.access.interface import IndexAccess
from chromatica_watch.access.local import LocalIndex
from chromatica_watch.access.remote import DaemonIndex, daemon_available
from chromatica_watch.core.config import Config
from chromatica_watch.core.errors import DaemonNotRunning, IndexDirBusy

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Between the daemon opening its catalog and opening its socket, neither way answers: retry that long.
DAEMON_STARTING_GRACE = 5.0


def index_dir_for(cfg: Config, index_dir: str | Path | None) -> Path:
    """The index dir a command is about: the one it names (resolved), else the configured one."""
    return Path(index_dir).resolve() if index_dir else Path(cfg.index_dir)


def use_index(cfg: Config, use: Callable[[IndexAccess], T], index_dir: str | Path | None = None, *,
              ask_first: bool = False, clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> T:
    """`use` the index: through the running daemon if it answers and holds this index, else on the index
    dir opened here. An `index_dir` other than the configured one is always opened here.

    How "it answers" is found out, as each caller needs:
    - by default, a ping (2 s): a daemon that holds its socket but does not answer counts as none, and the
      index dir is opened here (where DuckDB refuses a catalog the daemon still holds: IndexDirBusy);
    - `ask_first` (searches: no extra round trip, and a daemon busy indexing is worth its 30 s): `use` goes
      to the daemon at once, and only nothing listening on the socket falls back to the index dir. A daemon
      still starting (catalog taken, socket not open yet) is waited for, DAEMON_STARTING_GRACE at most.
    """
    wanted = index_dir_for(cfg, index_dir)
    local = LocalIndex.of_config(cfg, wanted)
    if wanted != Path(cfg.index_dir):
        return use(local)
    daemon = DaemonIndex(cfg.socket_path)
    if not ask_first:
        return use(daemon if daemon_available(cfg.socket_path) else local)
    return _daemon_else_local(daemon, local, use, clock, sleep)


def _daemon_else_local(daemon: DaemonIndex, local: LocalIndex, use: Callable[[IndexAccess], T],
                       clock: Callable[[], float], sleep: Callable[[float], None]) -> T:
    deadline = clock() + DAEMON_STARTING_GRACE
    while True:
        try:
            return use(daemon)
        except DaemonNotRunning:
            pass
        try:
            return use(local)
        except IndexDirBusy:
            if clock() >= deadline:
                raise
            logger.debug("catalog busy and no socket yet (daemon starting?); retrying")
            sleep(0.1)
