"""Durable file replacement: write a temp file, fsync it, rename over the target, fsync the directory."""

from __future__ import annotations

import os
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | memoryview, *, durable: bool = True) -> None:
    """Replace `path` with `data` so a reader (or a crash) sees the old file or the new one, never half.

    `durable=False` skips the fsyncs: for files like status.json that may be lost in a power cut.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def remove_stale_temps(directory: Path) -> None:
    """Temp files left by a process killed mid-write are garbage: the rename never happened."""
    for entry in Path(directory).glob(f".*{TMP_SUFFIX}"):
        try:
            entry.unlink()
        except OSError:
            pass
