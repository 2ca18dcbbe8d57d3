"""Talking to a running daemon over its Unix socket."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from chromatica_watch.core.errors import ChromaticaError, DaemonNotRunning, UsageError


def request(socket_path: Path, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request; raises DaemonNotRunning when nothing answers on the socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(f"no daemon answers on {socket_path}") from exc
        s.sendall(json.dumps(payload).encode() + b"\n")
        chunks = []
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
    try:
        response = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise ChromaticaError(f"bad response from the daemon on {socket_path}") from exc
    if not response.get("ok"):
        # A bad request (exit code 2) stays a usage error across the socket.
        error = UsageError if response.get("exit_code") == UsageError.exit_code else ChromaticaError
        raise error(f"daemon: {response.get('error', 'unknown error')}")
    return dict(response)


def daemon_available(socket_path: Path) -> bool:
    try:
        request(socket_path, {"op": "ping"}, timeout=2.0)
    except (DaemonNotRunning, OSError, ChromaticaError):
        return False
    return True


def ask_status(socket_path: Path, timeout: float = 3.0) -> tuple[dict[str, Any] | None, str | None]:
    """The daemon's own status over its socket: (status, None), or (None, "no daemon") when nothing
    listens there, or (None, "not answering") when something holds the socket but does not answer."""
    try:
        return dict(request(socket_path, {"op": "status"}, timeout=timeout)["status"]), None
    except DaemonNotRunning:
        return None, "no daemon"
    except (OSError, ChromaticaError, KeyError, TypeError):
        return None, "not answering"
