"""status.json: what the daemon is doing, replaced atomically; and how `status` judges it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .fsutil import atomic_write

HEALTHY_STATES = ("starting", "reconciling", "indexing", "idle")
EXIT_HEALTHY, EXIT_DEGRADED, EXIT_NOT_RUNNING = 0, 1, 3


def write_status(path: Path, status: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not fsynced: a status file lost in a power cut is rewritten within seconds of the next start.
    atomic_write(path, json.dumps(status, indent=2, sort_keys=True).encode(), durable=False)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def judge(status: dict[str, Any] | None, alive: bool) -> tuple[int, str]:
    """(exit code, one-line verdict) for `chromatica-watch status`."""
    if status is None:
        return EXIT_NOT_RUNNING, "not running (no status file)"
    state = status.get("state", "?")
    if state == "stopped":
        return EXIT_NOT_RUNNING, "not running (stopped cleanly)"
    if not alive:
        return EXIT_NOT_RUNNING, f"not running (stale status: pid {status.get('pid')} is gone)"
    if state in HEALTHY_STATES:
        return EXIT_HEALTHY, f"running ({state})"
    return EXIT_DEGRADED, f"{state}: {status.get('degraded_reason') or 'see the log'}"
