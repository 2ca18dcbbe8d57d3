"""Durable file replacement: write a temp file, fsync it, rename over the target, fsync the directory."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | memoryview, *, durable: bool = True, mode: int = 0o644) -> None:
    """Replace `path` with `data` so a reader (or a crash) sees the old file or the new one, never half.

    `durable=False` skips the fsyncs: for files like status.json that may be lost in a power cut.
    `mode` 0o600 for what only the user may read (a secret, or a file naming one).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
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
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a full disk must not also be left holding a half-written temp file
        raise
    if durable:
        fsync_dir(path.parent)


def remove_stale_temps(directory: Path) -> None:
    """Temp files left by a process killed mid-write are garbage: the rename never happened."""
    for entry in Path(directory).glob(f".*{TMP_SUFFIX}"):
        try:
            entry.unlink()
        except OSError:
            pass


def lock_directory(path: Path) -> int | None:
    """Hold an exclusive advisory lock on a directory for this process's lifetime: the open descriptor,
    or None when another process holds it. Nothing is created or written (flock on the directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


# Write errors that mean "the storage cannot take this now" (not a bug): the daemon degrades and retries.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS
