"""Filesystem watching (watchdog): the only module importing watchdog.

Events are hints; the reconciler's scan is the truth. Each watchdog event becomes a small `FsEvent`
on a queue that the daemon's indexer drains. After a root is watched, the kernel's list of watches says
which folders watchdog silently left out (watches.py), and a probe watch says why (path longer than PATH_MAX,
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
from chromatica_watch.daemon.watches import (
    LIMIT,
    OTHER,
    PASSING,
    PROBE_MASK,
    TOO_LONG,
    VANISHED,
    cause,
    inotify_watches_of,
    limit_detail,
    path_max_of,
    scanned_by_daemon,
    too_long,
    unwatched_folders,
)
from chromatica_watch.ingest.scan import is_candidate, is_excluded, is_ignored_name

logger = logging.getLogger(__name__)

INOTIFY_SYSCTL = "fs.inotify.max_user_watches"
_NAMED_IN_LOG = 5  # folders named in the one log line per root, then "and N more"
_SETTLE_S = 1.0  # how long a folder created during the check may take to get its watch from watchdog


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
        if isinstance(event, FileCreatedEvent) and _is_reported_link(os.fsdecode(event.src_path), src, self.excludes):
            # A link named like a photo, or to a folder: the walk reports it, with a scan's own words.
            self._put(EventKind.DIR_CHANGED, src)
        elif isinstance(event, FileCreatedEvent | FileModifiedEvent | FileClosedEvent):
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


def _is_reported_link(path: str, rel: str, excludes: Sequence[str]) -> bool:
    """A link the scan reports (never follows): named like a photo (broken or not), or to a folder."""
    if not os.path.islink(path) or is_excluded(rel, excludes) or any(
            is_ignored_name(part, is_dir=True) for part in rel.split(os.sep)):
        return False
    return is_candidate(rel, excludes) or os.path.isdir(path)


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
        wd = self._add(self.fd, path, PROBE_MASK)
        if wd == -1:
            return ctypes.get_errno()
        self._rm(self.fd, wd)
        return 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _diagnose(root: str, rel: bytes, path_max: int, probe: _Probe) -> tuple[str, str]:
    path = os.fsencode(root) if rel == b"." else os.path.join(os.fsencode(root), rel)
    if len(path) >= path_max:  # the kernel refuses a path of PATH_MAX bytes or more (with its NUL)
        return TOO_LONG, too_long(len(path), path_max)
    return cause(probe.try_watch(path), path, path_max)


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
            path_max = path_max_of(os.path.dirname(target) or ".")
            kind, reason = cause(exc.errno, path, path_max)
            if exc.errno == errno.ENOENT:
                reason = "it does not exist"
            elif kind == TOO_LONG and len(path) < path_max:  # raised for a folder below the root
                reason = f"a folder below it has a path longer than the system limit of {path_max} bytes"
            elif kind == LIMIT:
                reason = limit_detail()
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
        path_max = path_max_of(target)
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
                missing, seen = unwatched_folders(target, watched)
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
                self._fall_back(root, True, f"{n} of {seen} folders got no watch; {limit_detail()}")
            else:
                self._fall_back(root, False, causes[b"."][1])
            return []
        found: list[tuple[bytes, str]] = []
        for rel, (kind, reason) in sorted(causes.items()):
            if kind == VANISHED:
                logger.debug("folder %s under %s got no watch: %s", display_path(rel), root, reason)
            elif not scanned_by_daemon(rel, self.excludes):
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
