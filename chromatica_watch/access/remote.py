"""The running daemon, reached over its Unix socket: the socket client (`request`, `daemon_available`,
`ask_status`) and `DaemonIndex`, the `IndexAccess` that asks the daemon.

One JSON request line, one JSON response line; the ops are those `serving.socket_server.handle` answers.
This side speaks only that protocol: it imports nothing of the daemon.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chromatica_watch.access.interface import IndexAccess
from chromatica_watch.access.match import Match
from chromatica_watch.core.errors import ChromaticaError, DaemonBusy, DaemonNotRunning, UsageError

if TYPE_CHECKING:
    import numpy as np

    from chromatica_watch.search.ask import Ask, Filters

# The daemon makes changes on its indexer thread, after the batch in hand: a rebuild or a relocate of a
# large index takes minutes, and the client waits for its report.
LONG_CHANGE_TIMEOUT = 3600.0

BUSY_MESSAGE = "the daemon is busy (every thread answering other requests): try again in a moment"
# A write to a socket the daemon has closed fails with EPIPE, never kills the process by SIGPIPE (which
# Python ignores, but a program embedding it may not).
_NO_SIGPIPE = getattr(socket, "MSG_NOSIGNAL", 0)


def request(socket_path: Path, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request; raises DaemonNotRunning when nothing answers on the socket, DaemonBusy when the
    daemon says it is too busy to take it, ChromaticaError when it does not answer in time or drops the
    connection; never a bare OSError, nor a SIGPIPE for a socket the daemon closed first."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(socket_path))
            answer = _exchange(s, payload)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(f"no daemon answers on {socket_path}") from exc
        except BlockingIOError as exc:  # EAGAIN from connect: the socket's queue of connections is full
            raise DaemonBusy(BUSY_MESSAGE) from exc
        except TimeoutError as exc:
            raise ChromaticaError(f"the daemon on {socket_path} did not answer within {timeout:g} s (busy or "
                                  "stuck: see `chromatica-watch status`)") from exc
        except OSError as exc:
            raise ChromaticaError(f"the daemon on {socket_path} dropped the connection "
                                  f"({exc.strerror or exc})") from exc
    if not answer:
        raise ChromaticaError(f"the daemon on {socket_path} closed the connection without answering")
    try:
        response = json.loads(answer)
    except ValueError as exc:
        raise ChromaticaError(f"bad response from the daemon on {socket_path}") from exc
    if not isinstance(response, dict):
        raise ChromaticaError(f"bad response from the daemon on {socket_path}")
    if response.get("busy"):
        raise DaemonBusy(BUSY_MESSAGE)
    if not response.get("ok"):
        # A bad request (exit code 2) stays a usage error across the socket.
        error = UsageError if response.get("exit_code") == UsageError.exit_code else ChromaticaError
        raise error(f"daemon: {response.get('error', 'unknown error')}")
    return response


def _exchange(s: socket.socket, payload: dict[str, Any]) -> bytes:
    """The answer line (empty if none came). A daemon that closed the connection before reading the request
    may have said why (busy) first: a failed send still reads what it said."""
    try:
        s.sendall(json.dumps(payload).encode() + b"\n", _NO_SIGPIPE)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = bytearray()
    while not answer.endswith(b"\n"):
        try:
            chunk = s.recv(1 << 16)
        except ConnectionResetError:
            if answer:
                raise
            break
        if not chunk:
            break
        answer += chunk
    return bytes(answer)


def daemon_available(socket_path: Path) -> bool:
    """Whether a daemon answers a ping within 2 s: one that holds its socket but does not answer counts
    as none."""
    try:
        request(socket_path, {"op": "ping"}, timeout=2.0)
    except (DaemonNotRunning, OSError, ChromaticaError):
        return False
    return True


def ask_status(socket_path: Path, timeout: float = 3.0) -> tuple[dict[str, Any] | None, str | None]:
    """The daemon's own status over its socket: (status, None), or (None, "no daemon") when nothing
    listens there, (None, "busy") when the daemon says it is too busy to answer, or (None, "not answering")
    when something holds the socket but does not answer."""
    try:
        return dict(request(socket_path, {"op": "status"}, timeout=timeout)["status"]), None
    except DaemonNotRunning:
        return None, "no daemon"
    except DaemonBusy:
        return None, "busy"
    except (OSError, ChromaticaError, KeyError, TypeError):
        return None, "not answering"


class DaemonIndex(IndexAccess):
    """The index the running daemon holds: it answers reads itself and makes every change on its indexer
    thread, so nothing here opens the catalog (DuckDB allows one writer, or readers, never both).
    Each call raises DaemonNotRunning when nothing listens on the socket."""

    is_daemon = True

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = Path(socket_path)

    def _ask(self, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        return request(self.socket_path, payload, timeout=timeout)

    def search(self, query: np.ndarray, k: int, group_sidecars: bool = False) -> list[Match]:
        response = self._ask({"op": "search", "histogram": query.tolist(), "k": k, "group_sidecars": group_sidecars})
        return [Match.from_json(r) for r in response["results"]]

    def find(self, ask: Ask, k: int, group_sidecars: bool = False) -> tuple[list[Match], int]:
        response = self._ask({"op": "search", "ask": ask.to_json(), "k": k, "group_sidecars": group_sidecars})
        return [Match.from_json(r) for r in response["results"]], int(response.get("pending", 0))

    def palette(self, filters: Filters, top: int) -> dict[str, Any]:
        return dict(self._ask({"op": "palette", "filters": filters.to_json(), "top": top})["palette"])

    def failures(self) -> list[dict[str, Any]]:
        return list(self._ask({"op": "failed"})["failures"])

    def retry_failed(self) -> int:
        return int(self._ask({"op": "retry_failed"})["requeued"])

    def compact(self) -> tuple[int, int]:
        done = self._ask({"op": "compact"}, timeout=LONG_CHANGE_TIMEOUT)["compacted"]
        return done["before"], done["after"]

    def roots(self) -> list[dict[str, Any]]:
        return list(self._ask({"op": "roots"})["roots"])

    def relocate(self, old: str, new: str, *, dry_run: bool, force: bool) -> dict[str, Any]:
        payload = {"op": "relocate", "old": old, "new": new, "dry_run": dry_run, "force": force}
        return dict(self._ask(payload, timeout=LONG_CHANGE_TIMEOUT)["relocated"])

    def keywords(self, action: str, folder: str | None, *, dry_run: bool) -> dict[str, Any]:
        payload = {"op": "keywords", "action": action, "folder": folder, "dry_run": dry_run}
        return dict(self._ask(payload, timeout=LONG_CHANGE_TIMEOUT)["keywords"])
