"""Filesystem watching (watchdog): the only module importing watchdog.

Events are hints; the reconciler's scan is the truth. Each watchdog event becomes a small `FsEvent`
on a queue that the daemon's indexer drains. When native watching is impossible (inotify watch limit)
the root falls back to periodic scans, with one clear error naming the sysctl to raise.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
from collections.abc import Sequence
from dataclasses import dataclass

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

from .scan import is_candidate, rel_key

logger = logging.getLogger(__name__)

INOTIFY_SYSCTL = "fs.inotify.max_user_watches"


@dataclass(frozen=True)
class FsEvent:
    kind: str  # "changed", "deleted", "moved", "dir_changed", "dir_deleted", "dir_moved"
    root: str
    path: bytes  # relative key; for moves the source
    dest: bytes = b""  # relative key of a move's destination


class _Handler(FileSystemEventHandler):
    def __init__(self, root: str, excludes: Sequence[str], out: queue.Queue[FsEvent]) -> None:
        self.root = root
        self.excludes = excludes
        self.out = out

    def _rel(self, path: str | bytes) -> str | None:
        p = os.fsdecode(path)
        if p != self.root and not p.startswith(self.root + os.sep):
            return None
        return os.path.relpath(p, self.root)

    def _put(self, kind: str, rel: str, dest: str = "") -> None:
        self.out.put(FsEvent(kind, self.root, rel_key(rel), rel_key(dest) if dest else b""))

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = self._rel(event.src_path)
        if src is None or src == ".":
            if isinstance(event, DirDeletedEvent | DirMovedEvent) and src == ".":
                self._put("dir_deleted", ".")  # the root itself went away
            return
        if isinstance(event, FileCreatedEvent | FileModifiedEvent | FileClosedEvent):
            if is_candidate(src, self.excludes):
                self._put("changed", src)
        elif isinstance(event, FileDeletedEvent):
            if is_candidate(src, self.excludes):
                self._put("deleted", src)
        elif isinstance(event, FileMovedEvent):
            dest = self._rel(event.dest_path)
            src_ok = is_candidate(src, self.excludes)
            dest_ok = dest is not None and is_candidate(dest, self.excludes)
            if src_ok and dest_ok and dest is not None:
                self._put("moved", src, dest)
            elif src_ok:
                self._put("deleted", src)
            elif dest_ok and dest is not None:
                self._put("changed", dest)  # e.g. a finished download renamed from .part
        elif isinstance(event, DirCreatedEvent):
            self._put("dir_changed", src)
        elif isinstance(event, DirDeletedEvent):
            self._put("dir_deleted", src)
        elif isinstance(event, DirMovedEvent):
            dest = self._rel(event.dest_path)
            if dest is None:
                self._put("dir_deleted", src)
            else:
                self._put("dir_moved", src, dest)


def inotify_watch_count() -> int | None:
    """Inotify watches this process holds, from the kernel's /proc/self/fdinfo (None if unknown)."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    total = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                total += sum(1 for line in info if line.startswith("inotify wd:"))
        except OSError:
            continue
    return total


def count_dirs(root: str) -> int:
    return 1 + sum(len([d for d in dirs if not os.path.islink(os.path.join(top, d))])
                   for top, dirs, _ in os.walk(root))


class Watcher:
    """One watchdog observer for all roots; `mode` is per root: native, polling, or scan (fallback)."""

    def __init__(self, excludes: Sequence[str], out: queue.Queue[FsEvent], use_polling: bool = False,
                 polling_interval: float = 5.0) -> None:
        self.excludes = excludes
        self.out = out
        self._observer = PollingObserver(timeout=polling_interval) if use_polling else Observer()
        self._kind = "polling" if use_polling else "native"
        self._watches: dict[str, object] = {}
        self.modes: dict[str, str] = {}
        self._started = False

    def start(self) -> None:
        self._observer.start()
        self._started = True

    def watch(self, root: str) -> str:
        """Watch a root recursively; returns the mode it ended up in."""
        if root in self._watches:
            return self.modes[root]
        before = inotify_watch_count() if self._kind == "native" else None
        try:
            self._watches[root] = self._observer.schedule(_Handler(root, self.excludes, self.out), root,
                                                          recursive=True)
            self.modes[root] = self._kind
        except OSError as exc:
            self._fall_back(root, exc.errno == errno.ENOSPC, exc.strerror or str(exc))
            return self.modes[root]
        # watchdog skips sub-folders it cannot watch without raising; the kernel's own count tells.
        if before is not None:
            after = inotify_watch_count()
            wanted = count_dirs(root)
            if after is not None and after - before < wanted:
                self.unwatch(root)
                self._fall_back(root, True, f"only {after - before} of {wanted} folders could be watched")
        return self.modes[root]

    def _fall_back(self, root: str, limit_reached: bool, detail: str) -> None:
        if limit_reached:
            logger.error(
                "cannot watch %s: the inotify watch limit is reached (%s). Raise it with "
                "`sysctl %s=524288` (persist it in /etc/sysctl.d/); until then this folder is checked "
                "by periodic scans", root, detail, INOTIFY_SYSCTL)
        else:
            logger.error("cannot watch %s (%s); falling back to periodic scans", root, detail)
        self.modes[root] = "scan"

    def unwatch(self, root: str) -> None:
        watch = self._watches.pop(root, None)
        self.modes.pop(root, None)
        if watch is not None:
            try:
                self._observer.unschedule(watch)  # type: ignore[arg-type]
            except (KeyError, OSError):
                pass

    def healthy(self) -> bool:
        return not self._started or self._observer.is_alive()

    def stop(self) -> None:
        if self._started:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._started = False
