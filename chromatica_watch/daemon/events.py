"""Filesystem events and the rules that turn them into catalog changes: pure functions of values.

The watcher turns watchdog's events into `FsEvent`s. The daemon gathers what the rules need to know
(catalog rows, stats, which roots exist: `Needs`, `Facts`) and `plan_events` decides, with no I/O, no
clock and no logging: the catalog `Changes` to commit at once (deletes, moves) and, in event order,
what the batcher and the scanner must do (files to settle, paths to forget, folders to walk, roots
gone offline).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from chromatica_watch.core.paths import DiskFile, Key, is_under
from chromatica_watch.core.records import Changes, LiveFile, Move


class EventKind(StrEnum):
    CHANGED = "changed"  # a file was created or written
    CLOSED = "closed"  # a writer closed the file (inotify IN_CLOSE_WRITE): ready at once
    DELETED = "deleted"
    MOVED = "moved"  # a file renamed inside the root (path -> dest)
    DIR_CHANGED = "dir_changed"  # a folder appeared: walk it
    DIR_DELETED = "dir_deleted"  # a folder (or, with path ".", the root itself) went away
    DIR_MOVED = "dir_moved"  # a folder renamed inside the root (path -> dest)


@dataclass(frozen=True)
class FsEvent:
    kind: EventKind
    root: str
    path: bytes  # relative key; for moves the source
    dest: bytes = b""  # relative key of a move's destination


# -- what the batcher and the scanner must do, in event order ----------------------------------------
@dataclass(frozen=True)
class Settle:
    """Something happened to this file: (re)start its settle clock."""

    key: Key


@dataclass(frozen=True)
class Ready:
    """Its writer closed the file: ready now, without the settle time (the read itself re-checks its stat,
    and a file written again after its close is noted again by the events that follow)."""

    key: Key


@dataclass(frozen=True)
class Forget:
    """The file is gone or moved away: nothing to index there."""

    key: Key


@dataclass(frozen=True)
class ForgetFolder:
    root: str
    folder: bytes


@dataclass(frozen=True)
class Walk:
    """A folder appeared (created or moved in): walk it and settle what the catalog lacks."""

    root: str
    folder: bytes


@dataclass(frozen=True)
class Offline:
    """The root itself is gone (an unmounted drive): offline, nothing tombstoned."""

    root: str


@dataclass(frozen=True)
class Recheck:
    """The disk moved on since the event (a rename storm): compare this folder with the catalog once its
    root is quiet, instead of deleting on the event's word."""

    root: str
    folder: bytes


Action = Settle | Ready | Forget | ForgetFolder | Walk | Offline | Recheck


@dataclass
class EventPlan:
    changes: Changes = field(default_factory=Changes)
    actions: list[Action] = field(default_factory=list)


# -- what the rules need to know ------------------------------------------------------------------------
@dataclass(frozen=True)
class Needs:
    """What to look up before the rules can run: catalog rows by key and by folder, roots to check."""

    keys: frozenset[Key]
    folders: frozenset[Key]  # (root, folder) whose live rows and failure records are needed
    roots: frozenset[str]  # roots whose presence decides whether a folder event is a delete
    dirs: frozenset[Key] = frozenset()  # folders whose presence now decides what an event means


@dataclass
class Facts:
    rows: Mapping[Key, LiveFile] = field(default_factory=dict)  # live rows of Needs.keys
    folders: Mapping[Key, Mapping[bytes, LiveFile]] = field(default_factory=dict)  # live rows under a folder
    failed: Mapping[Key, Iterable[bytes]] = field(default_factory=dict)  # failure records under a folder
    stats: Mapping[Key, DiskFile | None] = field(default_factory=dict)  # what is on disk now
    present_roots: frozenset[str] = frozenset()
    present_dirs: frozenset[Key] = frozenset()  # of Needs.dirs, the folders there now
    unsettled_roots: frozenset[str] = frozenset()  # roots with folders waiting for a recheck (a storm)


def needs(events: Iterable[FsEvent]) -> Needs:
    keys: set[Key] = set()
    folders: set[Key] = set()
    roots: set[str] = set()
    dirs: set[Key] = set()
    for ev in events:
        if ev.kind in (EventKind.DELETED, EventKind.MOVED):
            keys.add((ev.root, ev.path))
        if ev.kind is EventKind.MOVED:
            keys.add((ev.root, ev.dest))
        if ev.kind in (EventKind.DIR_DELETED, EventKind.DIR_MOVED):
            folders.add((ev.root, ev.path))
            roots.add(ev.root)
        if ev.kind in (EventKind.DIR_DELETED, EventKind.DIR_CHANGED):
            dirs.add((ev.root, ev.path))
        elif ev.kind is EventKind.DIR_MOVED:
            dirs.add((ev.root, ev.dest))
    return Needs(frozenset(keys), frozenset(folders), frozenset(roots), frozenset(dirs))


def stats_needed(events: Iterable[FsEvent], folders: Mapping[Key, Mapping[bytes, LiveFile]]) -> set[Key]:
    """The files whose stat the rules need: each move's destination, and where each file of a moved
    folder would now be (known once the folder's rows are)."""
    wanted: set[Key] = set()
    for ev in events:
        if ev.kind is EventKind.MOVED:
            wanted.add((ev.root, ev.dest))
        elif ev.kind is EventKind.DIR_MOVED:
            rows = folders.get((ev.root, ev.path), {})
            wanted.update((ev.root, _moved_path(p, ev.path, ev.dest)) for p in rows)
    return wanted


def plan_events(events: Iterable[FsEvent], facts: Facts) -> EventPlan:
    """The rules: what a batch of events means for the catalog and the batcher."""
    plan = EventPlan()
    events = list(events)
    # Roots being reorganised (things moved in this batch, or a storm waiting for its recheck): there a
    # "deleted" may be half of a move whose other half comes later, so nothing is deleted on its word.
    moving = facts.unsettled_roots | {ev.root for ev in events if ev.kind in _MOVES}
    for ev in events:
        key = (ev.root, ev.path)
        if ev.kind is EventKind.CHANGED:
            plan.actions.append(Settle(key))
        elif ev.kind is EventKind.CLOSED:
            plan.actions.append(Ready(key))
        elif ev.kind is EventKind.DELETED and ev.root in moving:
            plan.actions += [Forget(key), Recheck(ev.root, _parent(ev.path))]
        elif ev.kind is EventKind.DELETED:
            plan.actions.append(Forget(key))
            if (row := facts.rows.get(key)) is not None:
                plan.changes.tombstoned.append(row.image_id)
            plan.changes.cleared_failures.append(key)
        elif ev.kind is EventKind.MOVED:
            _file_moved(ev, facts, plan)
        elif ev.kind is EventKind.DIR_DELETED:
            if key in facts.present_dirs or (ev.root in moving and ev.path not in (b"", b".")):
                plan.actions += [ForgetFolder(ev.root, ev.path), Recheck(ev.root, _parent(ev.path))]
            else:
                _folder_gone(ev, facts, plan)
        elif ev.kind is EventKind.DIR_MOVED:
            _folder_gone(ev, facts, plan)
        elif ev.kind is EventKind.DIR_CHANGED:
            plan.actions.append(Walk(ev.root, ev.path) if key in facts.present_dirs
                                else Recheck(ev.root, _parent(ev.path)))
    moved_ids = {m.image_id for m in plan.changes.moved}
    plan.changes.tombstoned = sorted(set(plan.changes.tombstoned) - moved_ids)
    return plan


_MOVES = frozenset({EventKind.MOVED, EventKind.DIR_MOVED, EventKind.DIR_CHANGED})


def same_stat(row: LiveFile | None, f: DiskFile) -> bool:
    """Whether the catalog's row still describes the file on disk (its inode change time too, when both
    know it: see ingest.diff)."""
    return (row is not None and (row.size, row.mtime_ns) == (f.size, f.mtime_ns)
            and (row.ctime_ns is None or f.ctime_ns is None or row.ctime_ns == f.ctime_ns))


def common_folder(a: bytes, b: bytes) -> bytes:
    """The deepest folder holding both paths (root-relative, "/"-separated; b"" is the root)."""
    parts_a, parts_b = a.split(b"/")[:-1], b.split(b"/")[:-1]
    common = []
    for x, y in zip(parts_a, parts_b, strict=False):
        if x != y:
            break
        common.append(x)
    return b"/".join(common)


def _parent(path: bytes) -> bytes:
    return path.rpartition(b"/")[0]


def _moved_path(path: bytes, folder: bytes, dest: bytes) -> bytes:
    return dest + path[len(folder):]


def _file_moved(ev: FsEvent, facts: Facts, plan: EventPlan) -> None:
    src, dest = (ev.root, ev.path), (ev.root, ev.dest)
    plan.actions.append(Forget(src))
    plan.changes.cleared_failures.append(src)
    old, st = facts.rows.get(src), facts.stats.get(dest)
    if old is not None and st is None:  # moved on again since: its row stays until the folder is compared
        plan.actions.append(Recheck(ev.root, common_folder(ev.path, ev.dest)))
        return
    if old is None or st is None:  # not indexed before: an ordinary new file
        if st is not None and not same_stat(facts.rows.get(dest), st):
            plan.actions.append(Settle(dest))
        return
    if (replaced := facts.rows.get(dest)) is not None:
        plan.changes.tombstoned.append(replaced.image_id)  # the moved file took its place
    _follow(plan, old, ev.root, ev.dest, st)


def _follow(plan: EventPlan, row: LiveFile, root: str, path: bytes, st: DiskFile) -> None:
    """The row follows its file to `path`. A file changed too (written, then moved before the write was
    handled) keeps the row's own size and times, so that it is read again, now and by any later scan: with
    the new ones its old hash would pass for the new content for good."""
    if same_stat(row, st):
        plan.changes.moved.append(Move(row.image_id, root, path, st.size, st.mtime_ns, st.ctime_ns))
        return
    plan.changes.moved.append(Move(row.image_id, root, path, row.size, row.mtime_ns, row.ctime_ns))
    plan.actions.append(Settle((root, path)))


def _folder_gone(ev: FsEvent, facts: Facts, plan: EventPlan) -> None:
    """A folder deleted or moved: its rows are tombstoned, or moved where their files now are."""
    if ev.root not in facts.present_roots:
        plan.actions.append(Offline(ev.root))  # an unmounted drive is offline, not deleted
        return
    plan.actions.append(ForgetFolder(ev.root, ev.path))
    plan.changes.cleared_failures += [(ev.root, p) for p in facts.failed.get((ev.root, ev.path), ())]
    moved_on = False  # some file is not where the move put it: the disk changed again since
    for path, row in facts.folders.get((ev.root, ev.path), {}).items():
        if ev.kind is not EventKind.DIR_MOVED:
            plan.changes.tombstoned.append(row.image_id)
            continue
        new_path = _moved_path(path, ev.path, ev.dest)
        st = facts.stats.get((ev.root, new_path))
        if st is None:
            moved_on = True  # nothing deleted on the event's word: the recheck finds where it went
        else:
            _follow(plan, row, ev.root, new_path, st)
    if ev.kind is EventKind.DIR_MOVED:
        if moved_on or (ev.root, ev.dest) not in facts.present_dirs:
            plan.actions.append(Recheck(ev.root, common_folder(ev.path, ev.dest)))
        else:
            plan.actions.append(Walk(ev.root, ev.dest))


def failed_under(failed: Iterable[Key], root: str, folder: bytes) -> list[bytes]:
    return [p for r, p in failed if r == root and is_under(p, folder)]
