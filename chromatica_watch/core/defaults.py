"""Defaults shared by the daemon's config, `build`, the CLI and the Python API, written once."""

from __future__ import annotations

import os

DEFAULT_MAX_DIMENSION = 256  # longest side, in pixels, an image is shrunk to before its histogram
DEFAULT_MAX_PIXELS = 150_000_000  # the decompression-bomb guard: more pixels are refused before decoding


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def worker_count(requested: int) -> int:
    """Decoding processes: `requested`, or one per available core for 0."""
    return requested if requested > 0 else available_cores()
