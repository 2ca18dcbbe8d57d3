"""Which folders of a watched root got an inotify watch, as the kernel lists the watches of this process's
inotify fds (/proc/self/fdinfo), and why a folder got none: stdlib only, no watchdog.

watchdog adds one inotify watch per folder (walking the tree by path, symlinks not followed, hidden and
junk folders included) and silently skips the folders it cannot watch. Comparing the kernel's list with the
folders on disk tells exactly which folders were left out; a probe watch (in watcher.py) tells the
kernel's reason as an errno, turned into words here.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from chromatica_watch.ingest.scan import is_excluded, is_ignored_name

# -- which folders got a watch ------------------------------------------------------------------------
# watchdog adds one inotify watch per folder (walking the tree by path, symlinks not followed, hidden and
# junk folders included) and silently skips the folders it cannot watch. The kernel lists the watches of
# an inotify fd in /proc/self/fdinfo/<fd>; comparing that list with the folders on disk tells exactly
# which folders were left out, and a probe watch on a scratch inotify instance tells the kernel's reason.

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
PROBE_MASK = 0x01000000 | 0x02000000 | 0x00000400  # IN_ONLYDIR | IN_DONT_FOLLOW | IN_DELETE_SELF
_LIMIT_FILES = ("/proc/sys/fs/inotify/max_user_watches", "/proc/sys/user/max_inotify_watches")


def _inotify_fds() -> set[int]:
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return set()
    found = set()
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                found.add(int(fd))
        except (OSError, ValueError):
            continue
    return found


def inotify_watch_count() -> int | None:
    """Inotify watches this process holds, from the kernel's /proc/self/fdinfo (None if unknown)."""
    if not os.path.isdir("/proc/self/fd"):
        return None
    total = 0
    for fd in _inotify_fds():
        try:
            with open(f"/proc/self/fdinfo/{fd}") as info:
                total += sum(1 for line in info if line.startswith("inotify wd:"))
        except OSError:
            continue
    return total


def inotify_watch_limit() -> int | None:
    """The per-user inotify watch limit that applies here: the lower of the system-wide sysctl and this
    user namespace's own (a container may have a lower one)."""
    limits = []
    for path in _LIMIT_FILES:
        try:
            with open(path) as f:
                limits.append(int(f.read().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return min(limits) if limits else None


class WatchedSet:
    """The folders watched by inotify fds of this process, as the kernel lists them in /proc/self/fdinfo."""

    def __init__(self) -> None:
        self.idents: set[tuple[int, int]] = set()
        self.inos: set[int] = set()
        self.devs: set[int] = set()

    @classmethod
    def of_fd(cls, fd: int) -> WatchedSet:
        watched = cls()
        with open(f"/proc/self/fdinfo/{fd}") as info:
            for line in info:
                if not line.startswith("inotify wd:"):
                    continue
                fields = dict(f.split(":", 1) for f in line.split()[1:] if ":" in f)
                ino, sdev = int(fields["ino"], 16), int(fields["sdev"], 16)
                dev = os.makedev(sdev >> 20, sdev & 0xFFFFF)  # the kernel's dev_t, not stat's encoding
                watched.idents.add((dev, ino))
                watched.inos.add(ino)
                watched.devs.add(dev)
        return watched

    def update(self, other: WatchedSet) -> None:
        self.idents |= other.idents
        self.inos |= other.inos
        self.devs |= other.devs

    def __contains__(self, st: os.stat_result) -> bool:
        if st.st_dev in self.devs:
            return (st.st_dev, st.st_ino) in self.idents
        # stat reports another device than the superblock's (btrfs subvolumes): the inode number alone
        return st.st_ino in self.inos


def inotify_watches_of(folder: str) -> WatchedSet | None:
    """The watches of the inotify fds of this process that watch `folder` itself (None: no fd does, or the
    kernel's lists cannot be read; OSError: `folder` cannot be stat'ed). Found by what the kernel says each
    fd watches, not by a library's attribute or by when it opens its fds: any release of watchdog, one fd
    per observer or one per root."""
    st = os.stat(folder)
    found: WatchedSet | None = None
    for fd in sorted(_inotify_fds()):
        try:
            watched = WatchedSet.of_fd(fd)
        except (OSError, KeyError, ValueError):
            continue  # closed meanwhile, or a line of another form
        if st in watched:
            found = found or WatchedSet()
            found.update(watched)
    return found


def _subdirs(fd: int) -> list[tuple[str, os.stat_result]]:
    """The folders in an open folder (symlinks not followed), stat'ed relative to its fd."""
    found = []
    with os.scandir(fd) as it:
        for entry in it:
            try:
                if entry.is_dir(follow_symlinks=False):
                    found.append((entry.name, entry.stat(follow_symlinks=False)))
            except OSError:
                continue  # vanished meanwhile
    return found


def unwatched_folders(root: str, watched: WatchedSet) -> tuple[list[tuple[bytes, os.stat_result]], int]:
    """The topmost folders under `root` without a watch (b"." for the root itself), and how many folders
    were looked at. Walked like watchdog does (every folder, symlinks not followed), but by directory
    file descriptors, so that folders whose path is longer than PATH_MAX are found and stat'ed too.
    Below a folder without a watch nothing is looked at: it is left to scans as a whole."""
    fd = os.open(root, DIR_FLAGS)
    try:
        st = os.fstat(fd)
        if st not in watched:
            return [(b".", st)], 1
        pending = _subdirs(fd)
    except BaseException:
        os.close(fd)
        raise
    missing: list[tuple[bytes, os.stat_result]] = []
    seen = 1
    stack: list[tuple[int, bytes, list[tuple[str, os.stat_result]]]] = [(fd, b"", pending)]
    try:
        while stack:
            fd, rel, pending = stack[-1]
            if not pending:
                stack.pop()
                os.close(fd)
                continue
            name, st = pending.pop()
            seen += 1
            child = rel + b"/" + os.fsencode(name) if rel else os.fsencode(name)
            if st not in watched:
                missing.append((child, st))
                continue
            try:
                child_fd = os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                continue  # vanished or replaced meanwhile: watchdog hears of it
            try:
                below = _subdirs(child_fd)
            except OSError:
                os.close(child_fd)
                continue
            stack.append((child_fd, child, below))
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return sorted(missing, key=lambda m: m[0]), seen


# the kinds of cause; only "limit" drops a whole tree to scans (the limit holds for every folder alike)
TOO_LONG, DENIED, VANISHED, LIMIT, PASSING, OTHER = "too_long", "denied", "vanished", "limit", "passing", "other"


def too_long(n: int, path_max: int) -> str:
    return f"its path is {n} bytes, longer than the system limit of {path_max} bytes"


def cause(err: int | None, path: bytes, path_max: int) -> tuple[str, str]:
    """(kind, reason) for a folder that has no watch, from the probe's errno (None: no probe, so guess
    from what can be checked)."""
    if err is None:
        try:
            os.lstat(path)
        except FileNotFoundError:
            err = errno.ENOENT
        except OSError as exc:
            err = exc.errno
        else:
            held, limit = inotify_watch_count(), inotify_watch_limit()
            if not os.access(path, os.R_OK):
                err = errno.EACCES
            elif held is not None and limit is not None and held >= limit:
                err = errno.ENOSPC
            else:
                return OTHER, "the cause is unknown"
    if err == errno.ENAMETOOLONG:
        return TOO_LONG, too_long(len(path), path_max)
    if err in (errno.EACCES, errno.EPERM):
        return DENIED, "permission denied"
    if err in (errno.ENOENT, errno.ENOTDIR):
        return VANISHED, "it vanished meanwhile"
    if err == errno.ENOSPC:
        return LIMIT, "the inotify watch limit is reached"
    if err == 0:
        return PASSING, "it got no watch, though one can be added now (a passing failure)"
    return OTHER, os.strerror(err or 0).lower()


def scanned_by_daemon(rel: bytes, excludes: Sequence[str]) -> bool:
    """Whether the daemon's scan would look into this folder at all (hidden, junk, excluded: not)."""
    parts = os.fsdecode(rel).split("/")
    return not any(is_ignored_name(p, is_dir=True) or is_excluded("/".join(parts[:i + 1]), excludes)
                   for i, p in enumerate(parts))


def limit_detail() -> str:
    held, limit = inotify_watch_count(), inotify_watch_limit()
    return (f"this process holds {held if held is not None else 'an unknown number of'} inotify watches, "
            f"{limit if limit is not None else 'an unknown number'} are allowed per user")


def path_max_of(root: str) -> int:
    try:
        return os.pathconf(root, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 4096


