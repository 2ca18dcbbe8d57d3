"""Reading an image file's bytes safely: a regular file only, never blocking, links followed only when asked.

One read of the bytes serves both the content hash and the decode. Anything that is not a regular file
(a FIFO, a device, a socket, a folder; a symbolic link inside a watched folder) is refused with an
ImageError whose reason names what it is, before it is opened where possible.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from chromatica_watch.core.errors import ImageError
from chromatica_watch.core.filetypes import BROKEN_SYMLINK, SYMLINK_LOOP, special_file_reason, symlink_reason


@dataclass(frozen=True)
class FileBytes:
    data: bytes
    size: int
    mtime_ns: int
    ctime_ns: int | None = None


# Never blocks on a FIFO or a device, never makes a terminal ours; O_NOFOLLOW is added when asked.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _is_symlink(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _refusal(path: str, st_mode: int) -> str | None:
    return symlink_reason(path) if stat.S_ISLNK(st_mode) else special_file_reason(st_mode)


def _unopenable_reason(path: str, exc: OSError, follow_symlinks: bool) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"unreadable: permission denied ({exc.strerror})"
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW on a link, or a loop anywhere on the path
        return symlink_reason(path) if not follow_symlinks and _is_symlink(path) else SYMLINK_LOOP
    if exc.errno in (errno.ENOENT, errno.ENOTDIR) and _is_symlink(path):
        return BROKEN_SYMLINK
    if exc.errno == errno.ENXIO:  # what open() says of a socket
        try:
            reason = _refusal(path, os.stat(path, follow_symlinks=follow_symlinks).st_mode)
        except OSError:
            reason = None
        if reason is not None:
            return reason
    return f"cannot open: {exc.strerror}"


def read_file(path: str, *, follow_symlinks: bool = True) -> FileBytes:
    """All bytes of a regular file, with the size and mtime they were read at; never blocks.

    Only a regular file is ever read: anything else raises ImageError with a reason naming what it
    is (see `special_file_reason`). It is looked at (stat) before it is opened, so a device or a
    FIFO is not even opened, and the descriptor is checked again (fstat) in case the path changed
    in between; the open itself cannot block (O_NONBLOCK, O_NOCTTY).

    With follow_symlinks=False a symbolic link is not read (O_NOFOLLOW): symlinks inside a watched
    folder are not followed, so no photo is indexed twice through a link back into the folder; add
    the target as a root to index it. Its reason is then SYMLINK_NOT_FOLLOWED, or 'symlink loop' /
    'broken symlink' for a link that loops or dangles. Only the last component of `path` is checked:
    which folders to enter is the scanner's decision. A query image (`search --image`) follows links.
    """
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError as exc:
        raise ImageError(_unopenable_reason(path, exc, follow_symlinks)) from exc
    reason = _refusal(path, st.st_mode)
    if reason is not None:
        raise ImageError(reason)
    try:
        fd = os.open(path, _OPEN_FLAGS | (0 if follow_symlinks else os.O_NOFOLLOW))
    except OSError as exc:
        raise ImageError(_unopenable_reason(path, exc, follow_symlinks)) from exc
    try:
        st = os.fstat(fd)
        reason = special_file_reason(st.st_mode)
        if reason is not None:
            raise ImageError(reason)
        # Regular files ignore O_NONBLOCK on local file systems; clear it anyway so that no network
        # or FUSE file system can turn a slow read into a short one.
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError as exc:
        raise ImageError(f"read error: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return FileBytes(data=data, size=st.st_size, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)
