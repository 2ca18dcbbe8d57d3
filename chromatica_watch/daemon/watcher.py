"""Filesystem watching (watchdog): the only module importing watchdog.

Events are hints; the reconciler's scan is the truth. Each watchdog event becomes a small `FsEvent`
on a queue that the daemon's indexer drains. After a root is watched, the kernel's list of watches says
which folders watchdog silently left out, and a probe watch says why (path longer than PATH_MAX,
permission denied, inotify watch limit). Out of watches, or the root itself unwatchable: the root falls
back to periodic scans, with one clear error (naming the sysctl to raise for the limit). Otherwise the
root stays watched and only the folders left out are listed in `Watcher.unwatched`, for scans.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import queue
import time
from collections.abc import Sequence

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from chromatica_watch.core.paths import display_path, rel_key
from chromatica_watch.daemon.events import EventKind, FsEvent
from chromatica_watch.ingest.scan import is_candidate, is_excluded, is_ignored_name

logger = logging.getLogger(__name__)

INOTIFY_SYSCTL = "fs.inotify.max_user_watches"


# The events the handler acts on. Asking inotify for these only (no IN_OPEN, IN_CLOSE_NOWRITE) spares
# the watcher's thread the ~16,000 opens and closes of a start-up scan of 1,000 folders, and every
# read of a photo by the workers.
_WANTED = (FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent, FileMovedEvent, DirCreatedEvent,
           DirDeletedEvent, DirMovedEvent)


class _Handler(FileSystemEventHandler):
    def __init__(self, root: str, excludes: Sequence[str], out: queue.Queue[FsEvent],
                 watched: str | None = None) -> None:
        self.root = root  # as configured: events name it
        self.watched = watched or root  # the path watchdog watches (the root's symlinks resolved)
        self.excludes = excludes
        self.out = out

    def _rel(self, path: str | bytes) -> str | None:
        p = os.fsdecode(path)
        if p != self.watched and not p.startswith(self.watched + os.sep):
            return None
        return os.path.relpath(p, self.watched)

    def _put(self, kind: EventKind, rel: str, dest: str = "") -> None:
        self.out.put(FsEvent(kind, self.root, rel_key(rel), rel_key(dest) if dest else b""))

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = self._rel(event.src_path)
        if src is None or src == ".":
            if isinstance(event, DirDeletedEvent | DirMovedEvent) and src == ".":
                self._put(EventKind.DIR_DELETED, ".")  # the root itself went away
            return
        if isinstance(event, FileCreatedEvent | FileModifiedEvent | FileClosedEvent):
            if is_candidate(src, self.excludes):
                self._put(EventKind.CLOSED if isinstance(event, FileClosedEvent) else EventKind.CHANGED, src)
        elif isinstance(event, FileDeletedEvent):
            if is_candidate(src, self.excludes):
                self._put(EventKind.DELETED, src)
        elif isinstance(event, FileMovedEvent):
            dest = self._rel(event.dest_path)
            src_ok = is_candidate(src, self.excludes)
            dest_ok = dest is not None and is_candidate(dest, self.excludes)
            if src_ok and dest_ok and dest is not None:
                self._put(EventKind.MOVED, src, dest)
            elif src_ok:
                self._put(EventKind.DELETED, src)
            elif dest_ok and dest is not None:
                self._put(EventKind.CHANGED, dest)  # e.g. a finished download renamed from .part
        elif isinstance(event, DirCreatedEvent):
            self._put(EventKind.DIR_CHANGED, src)
        elif isinstance(event, DirDeletedEvent):
            self._put(EventKind.DIR_DELETED, src)
        elif isinstance(event, DirMovedEvent):
            dest = self._rel(event.dest_path)
            if dest is None:
                self._put(EventKind.DIR_DELETED, src)
            else:
                self._put(EventKind.DIR_MOVED, src, dest)


# -- which folders got a watch ------------------------------------------------------------------------
# watchdog adds one inotify watch per folder (walking the tree by path, symlinks not followed, hidden and
# junk folders included) and silently skips the folders it cannot watch. The kernel lists the watches of
# an inotify fd in /proc/self/fdinfo/<fd>; comparing that list with the folders on disk tells exactly
# which folders were left out, and a probe watch on a scratch inotify instance tells the kernel's reason.

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_PROBE_MASK = 0x01000000 | 0x02000000 | 0x00000400  # IN_ONLYDIR | IN_DONT_FOLLOW | IN_DELETE_SELF
_LIMIT_FILES = ("/proc/sys/fs/inotify/max_user_watches", "/proc/sys/user/max_inotify_watches")
_NAMED_IN_LOG = 5  # folders named in the one log line per root, then "and N more"
_SETTLE_S = 1.0  # how long a folder created during the check may take to get its watch from watchdog


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


class _WatchedSet:
    """The folders watched by inotify fds of this process, as the kernel lists them in /proc/self/fdinfo."""

    def __init__(self) -> None:
        self.idents: set[tuple[int, int]] = set()
        self.inos: set[int] = set()
        self.devs: set[int] = set()

    @classmethod
    def of_fd(cls, fd: int) -> _WatchedSet:
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

    def update(self, other: _WatchedSet) -> None:
        self.idents |= other.idents
        self.inos |= other.inos
        self.devs |= other.devs

    def __contains__(self, st: os.stat_result) -> bool:
        if st.st_dev in self.devs:
            return (st.st_dev, st.st_ino) in self.idents
        # stat reports another device than the superblock's (btrfs subvolumes): the inode number alone
        return st.st_ino in self.inos


def inotify_watches_of(folder: str) -> _WatchedSet | None:
    """The watches of the inotify fds of this process that watch `folder` itself (None: no fd does, or the
    kernel's lists cannot be read; OSError: `folder` cannot be stat'ed). Found by what the kernel says each
    fd watches, not by a library's attribute or by when it opens its fds: any release of watchdog, one fd
    per observer or one per root."""
    st = os.stat(folder)
    found: _WatchedSet | None = None
    for fd in sorted(_inotify_fds()):
        try:
            watched = _WatchedSet.of_fd(fd)
        except (OSError, KeyError, ValueError):
            continue  # closed meanwhile, or a line of another form
        if st in watched:
            found = found or _WatchedSet()
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


def _unwatched_folders(root: str, watched: _WatchedSet) -> tuple[list[tuple[bytes, os.stat_result]], int]:
    """The topmost folders under `root` without a watch (b"." for the root itself), and how many folders
    were looked at. Walked like watchdog does (every folder, symlinks not followed), but by directory
    file descriptors, so that folders whose path is longer than PATH_MAX are found and stat'ed too.
    Below a folder without a watch nothing is looked at: it is left to scans as a whole."""
    fd = os.open(root, _DIR_FLAGS)
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
                child_fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
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


class _Probe:
    """A scratch inotify instance: adding (and at once removing) a watch on a folder that did not get one
    tells the kernel's own reason as an errno. It counts against the same per-user watch limit."""

    def __init__(self) -> None:
        self.fd = -1
        try:
            from watchdog.observers.inotify_c import inotify_add_watch, inotify_init, inotify_rm_watch
        except Exception:  # not Linux
            return
        self._add, self._rm = inotify_add_watch, inotify_rm_watch
        fd = inotify_init()
        if fd >= 0:
            os.set_inheritable(fd, False)
            self.fd = fd

    def try_watch(self, path: bytes) -> int | None:
        """0 if a watch can be added now, the errno if not, None if there is no probe."""
        if self.fd < 0:
            return None
        wd = self._add(self.fd, path, _PROBE_MASK)
        if wd == -1:
            return ctypes.get_errno()
        self._rm(self.fd, wd)
        return 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# the kinds of cause; only "limit" drops a whole tree to scans (the limit holds for every folder alike)
TOO_LONG, DENIED, VANISHED, LIMIT, PASSING, OTHER = "too_long", "denied", "vanished", "limit", "passing", "other"


def _too_long(n: int, path_max: int) -> str:
    return f"its path is {n} bytes, longer than the system limit of {path_max} bytes"


def _cause(err: int | None, path: bytes, path_max: int) -> tuple[str, str]:
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
        return TOO_LONG, _too_long(len(path), path_max)
    if err in (errno.EACCES, errno.EPERM):
        return DENIED, "permission denied"
    if err in (errno.ENOENT, errno.ENOTDIR):
        return VANISHED, "it vanished meanwhile"
    if err == errno.ENOSPC:
        return LIMIT, "the inotify watch limit is reached"
    if err == 0:
        return PASSING, "it got no watch, though one can be added now (a passing failure)"
    return OTHER, os.strerror(err or 0).lower()


def _diagnose(root: str, rel: bytes, path_max: int, probe: _Probe) -> tuple[str, str]:
    path = os.fsencode(root) if rel == b"." else os.path.join(os.fsencode(root), rel)
    if len(path) >= path_max:  # the kernel refuses a path of PATH_MAX bytes or more (with its NUL)
        return TOO_LONG, _too_long(len(path), path_max)
    return _cause(probe.try_watch(path), path, path_max)


def _scanned_by_daemon(rel: bytes, excludes: Sequence[str]) -> bool:
    """Whether the daemon's scan would look into this folder at all (hidden, junk, excluded: not)."""
    parts = os.fsdecode(rel).split("/")
    return not any(is_ignored_name(p, is_dir=True) or is_excluded("/".join(parts[:i + 1]), excludes)
                   for i, p in enumerate(parts))


def _limit_detail() -> str:
    held, limit = inotify_watch_count(), inotify_watch_limit()
    return (f"this process holds {held if held is not None else 'an unknown number of'} inotify watches, "
            f"{limit if limit is not None else 'an unknown number'} are allowed per user")


def _path_max(root: str) -> int:
    try:
        return os.pathconf(root, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 4096


class Watcher:
    """One watchdog observer for all roots; `mode` is per root: native, polling, or scan (fallback).

    `unwatched[root]` lists the folders of a natively watched root that could not get a watch, as
    (path relative to the root, POSIX bytes; reason): each of them, with everything below it, is
    known to changes only through scans. Roots whose every folder is watched have no entry.
    """

    def __init__(self, excludes: Sequence[str], out: queue.Queue[FsEvent], use_polling: bool = False,
                 polling_interval: float = 5.0) -> None:
        self.excludes = excludes
        self.out = out
        self._observer = PollingObserver(timeout=polling_interval) if use_polling else Observer()
        self._kind = "polling" if use_polling else "native"
        self._watches: dict[str, object] = {}
        self._targets: dict[str, str] = {}  # root -> the path watchdog watches
        self.modes: dict[str, str] = {}
        self.unwatched: dict[str, list[tuple[bytes, str]]] = {}
        # natively watched roots whose watches this process cannot see (no inotify fd of ours lists the
        # root): folders left without a watch there are found only by the periodic rescan
        self.unchecked: set[str] = set()
        self._started = False
        self._stopped = False

    def start(self) -> None:
        self._observer.start()
        self._started = True
        for root in list(self._watches):
            self.recheck(root)  # watched before the start: their watches exist only now

    def watch(self, root: str) -> str:
        """Watch a root recursively; returns the mode it ended up in."""
        if root in self._watches:
            return self.modes[root]
        # watchdog watches a symlink itself, not what it points to (IN_DONT_FOLLOW): a root that is a
        # link (~/Pictures -> /mnt/nas/photos) is watched at its target, or its own folder goes unwatched
        target = os.path.realpath(root)
        try:
            self._watches[root] = self._observer.schedule(_Handler(root, self.excludes, self.out, target),
                                                          target, recursive=True, event_filter=list(_WANTED))
            self.modes[root] = self._kind
            self._targets[root] = target
        except OSError as exc:
            path = os.fsencode(target)
            path_max = _path_max(os.path.dirname(target) or ".")
            kind, reason = _cause(exc.errno, path, path_max)
            if exc.errno == errno.ENOENT:
                reason = "it does not exist"
            elif kind == TOO_LONG and len(path) < path_max:  # raised for a folder below the root
                reason = f"a folder below it has a path longer than the system limit of {path_max} bytes"
            elif kind == LIMIT:
                reason = _limit_detail()
            elif kind == OTHER:
                reason = exc.strerror or str(exc)
            self._fall_back(root, kind == LIMIT, reason)
            return self.modes[root]
        if self._started:
            self.recheck(root)
        return self.modes[root]

    def recheck(self, root: str) -> list[tuple[bytes, str]]:
        """Find again which folders of a natively watched root have no watch (`unwatched[root]`); logs
        only when that changed. A root whose own folder, or whose folders for want of inotify watches,
        cannot be watched falls back to mode "scan". Call it after a rescan to catch folders made since."""
        if self.modes.get(root) != "native" or not self._started:
            return self.unwatched.get(root, [])  # before the start no watch exists yet: nothing to judge
        target = self._targets.get(root, root)
        path_max = _path_max(target)
        deadline = time.monotonic() + _SETTLE_S
        while True:
            try:
                watched = inotify_watches_of(target)
            except OSError as exc:  # the root is gone: watchdog reports it
                logger.debug("cannot check which folders of %s are watched: %s", root, exc)
                return self.unwatched.get(root, [])
            if watched is None:
                if time.monotonic() < deadline and root not in self.unchecked:
                    time.sleep(0.05)  # the library may add its watches on a thread of its own
                    continue
                self._cannot_check(root)
                return self.unwatched.get(root, [])
            try:
                missing, seen = _unwatched_folders(target, watched)
            except (OSError, KeyError, ValueError) as exc:  # root gone (watchdog reports it), fdinfo unreadable
                logger.debug("cannot check which folders of %s are watched: %s", root, exc)
                return self.unwatched.get(root, [])
            probe = _Probe()
            try:
                causes = {rel: _diagnose(target, rel, path_max, probe) for rel, _ in missing}
            finally:
                probe.close()
            # a folder made or moved in during the check can be watched, and watchdog's thread is about to:
            # look again once it did (what is below it was not looked at yet)
            if all(kind != PASSING for kind, _ in causes.values()) or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if root in self.unchecked:
            self.unchecked.discard(root)
            logger.info("the inotify watches of %s can be checked again", root)
        kinds = {kind for kind, _ in causes.values()}
        if LIMIT in kinds or b"." in causes:
            self.unwatch(root)
            if LIMIT in kinds:
                n = sum(1 for kind, _ in causes.values() if kind == LIMIT)
                self._fall_back(root, True, f"{n} of {seen} folders got no watch; {_limit_detail()}")
            else:
                self._fall_back(root, False, causes[b"."][1])
            return []
        found: list[tuple[bytes, str]] = []
        for rel, (kind, reason) in sorted(causes.items()):
            if kind == VANISHED:
                logger.debug("folder %s under %s got no watch: %s", display_path(rel), root, reason)
            elif not _scanned_by_daemon(rel, self.excludes):
                logger.debug("folder %s under %s got no watch (%s); it is not scanned either", display_path(rel),
                             root, reason)
            else:
                found.append((rel, reason))
        if found != self.unwatched.get(root, []):
            self._log_unwatched(root, found)
        if found:
            self.unwatched[root] = found
        else:
            self.unwatched.pop(root, None)
        return found

    def _cannot_check(self, root: str) -> None:
        if root not in self.unchecked:
            self.unchecked.add(root)
            logger.error("cannot tell which folders under %s got an inotify watch (no inotify descriptor of "
                         "this process lists it); folders left without one are found only by the periodic "
                         "rescan", root)

    @staticmethod
    def _log_unwatched(root: str, found: list[tuple[bytes, str]]) -> None:
        if not found:
            logger.info("every folder under %s is watched now", root)
            return
        named = ", ".join(f"{display_path(rel)} ({reason})" for rel, reason in found[:_NAMED_IN_LOG])
        more = f" and {len(found) - _NAMED_IN_LOG} more" if len(found) > _NAMED_IN_LOG else ""
        logger.error("cannot watch %d folder%s under %s: %s%s. %s and everything below %s checked by "
                     "periodic scans; the rest is watched", len(found), "" if len(found) == 1 else "s", root,
                     named, more, *(("It", "it is") if len(found) == 1 else ("They", "them are")))

    def _fall_back(self, root: str, limit_reached: bool, detail: str) -> None:
        if limit_reached:
            logger.error(
                "cannot watch %s: the inotify watch limit is reached (%s). Raise it with "
                "`sysctl %s=524288` (persist it in /etc/sysctl.d/); until then this folder is checked "
                "by periodic scans", root, detail, INOTIFY_SYSCTL)
        else:
            logger.error("cannot watch %s (%s); falling back to periodic scans", root, detail)
        self.modes[root] = "scan"
        self.unwatched.pop(root, None)

    def unwatch(self, root: str) -> None:
        watch = self._watches.pop(root, None)
        self._targets.pop(root, None)
        self.unchecked.discard(root)
        self.modes.pop(root, None)
        self.unwatched.pop(root, None)
        if watch is not None:
            try:
                self._observer.unschedule(watch)  # type: ignore[arg-type]
            except (KeyError, OSError):
                pass

    def healthy(self) -> bool:
        return not self._started or self._observer.is_alive()

    def stop(self) -> None:
        """Stop watching; also for a watcher never started (watchdog's inotify thread runs from the start)."""
        if self._stopped:
            return
        self._stopped = True
        self._observer.stop()
        if self._started:
            self._observer.join(timeout=10)
            self._started = False
