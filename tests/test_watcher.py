"""The watcher on real folders with a real watchdog observer: a folder deeper than PATH_MAX cannot get an
inotify watch; it alone is left to scans, named with its real cause, and the rest of the root stays watched."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chromatica_watch.daemon.watcher import FsEvent, Watcher
from chromatica_watch.daemon.watches import inotify_watches_of
from tests.conftest import solid, wait_until, write_rgb

LEVELS = 20  # 20 folders of 250-byte names: about 5000 bytes, deeper than PATH_MAX (4096 on Linux)


def _name(level: int) -> str:
    return f"{level:02d}" + "d" * 248


def make_deep(parent: Path, levels: int = LEVELS) -> list[bytes]:
    """A chain of folders below `parent`, made component by component with directory fds (a path that
    long cannot be passed to mkdir). Returns the chain's relative paths, one per level."""
    rels: list[bytes] = []
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(levels):
            os.mkdir(_name(level), dir_fd=fd)
            child = os.open(_name(level), os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            rels.append(os.fsencode("/".join(_name(i) for i in range(level + 1))))
    finally:
        os.close(fd)
    return rels


def remove_tree(dir_fd: int, name: str) -> None:
    """rmtree by directory fds: works below PATH_MAX, where shutil.rmtree may not."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for entry, is_dir in entries:
            if is_dir:
                remove_tree(fd, entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def first_too_long(root: Path, rels: list[bytes]) -> tuple[bytes, int, int]:
    """The shallowest folder of the chain whose path the kernel refuses, its path length and the limit."""
    path_max = os.pathconf(root, "PC_PATH_MAX")
    for rel in rels:
        n = len(os.fsencode(str(root)) + b"/" + rel)
        if n >= path_max:
            return rel, n, path_max
    raise AssertionError("the chain is not deeper than PATH_MAX")


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "Pictures"
    (root / "trip").mkdir(parents=True)
    write_rgb(root / "trip" / "old.png", solid((200, 10, 10)))
    yield root
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in os.listdir(fd):
            if os.path.isdir(os.path.join(root, name)) and not os.path.islink(os.path.join(root, name)):
                remove_tree(fd, name)
    finally:
        os.close(fd)


@pytest.fixture
def watcher() -> Iterator[tuple[Watcher, queue.Queue[FsEvent]]]:
    events: queue.Queue[FsEvent] = queue.Queue()
    w = Watcher([], events)
    w.start()
    yield w, events
    w.stop()


def _seen(events: queue.Queue[FsEvent], seen: list[FsEvent], wanted: FsEvent) -> bool:
    while True:
        try:
            seen.append(events.get_nowait())
        except queue.Empty:
            return wanted in seen


def test_a_folder_deeper_than_path_max_alone_is_left_to_scans(
        root: Path, watcher: tuple[Watcher, queue.Queue[FsEvent]], caplog: pytest.LogCaptureFixture) -> None:
    w, events = watcher
    rels = make_deep(root)
    deep, n, path_max = first_too_long(root, rels)
    with caplog.at_level(logging.INFO, logger="chromatica_watch.daemon.watcher"):
        mode = w.watch(str(root))
    assert mode == "native" and w.modes[str(root)] == "native"
    reason = f"its path is {n} bytes, longer than the system limit of {path_max} bytes"
    assert w.unwatched == {str(root): [(deep, reason)]}  # the topmost one: scanning it covers those below
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # one line per root, not one per folder
    text = errors[0].getMessage()
    assert os.fsdecode(deep) in text and reason in text and str(root) in text
    assert "inotify" not in caplog.text and "sysctl" not in caplog.text

    # the rest of the root is still watched: a new photo in a normal folder is reported
    write_rgb(root / "trip" / "new.png", solid((10, 200, 10)))
    seen: list[FsEvent] = []
    wait_until(lambda: _seen(events, seen, FsEvent("changed", str(root), b"trip/new.png")), timeout=10)
    # and so is one in the deepest watched folder whose file path the kernel still takes
    fits = [r for r in rels[:rels.index(deep)] if len(os.fsencode(str(root)) + b"/" + r + b"/deep.png") < path_max]
    watched_deep = fits[-1]
    write_rgb(root / os.fsdecode(watched_deep) / "deep.png", solid((10, 10, 200)))
    wait_until(lambda: _seen(events, seen, FsEvent("changed", str(root), watched_deep + b"/deep.png")), timeout=10)


def test_theinotify_watches_of_every_natively_watched_root_are_found(
        tmp_path: Path, watcher: tuple[Watcher, queue.Queue[FsEvent]], caplog: pytest.LogCaptureFixture) -> None:
    """The check of which folders got a watch must be on while watching natively, whatever release of
    watchdog is installed and however many inotify fds it opens: without it, folders left without a watch
    silently wait for the hourly rescan."""
    w, _ = watcher
    roots = [tmp_path / "a", tmp_path / "b"]
    for r in roots:
        (r / "sub").mkdir(parents=True)
    elsewhere = tmp_path / "not watched"
    elsewhere.mkdir()
    with caplog.at_level(logging.INFO, logger="chromatica_watch.daemon.watcher"):
        for r in roots:
            assert w.watch(str(r)) == "native"
            assert w.recheck(str(r)) == []
    assert w.unchecked == set() and not caplog.records
    for r in roots:
        found = inotify_watches_of(str(r))
        assert found is not None and os.stat(r) in found and os.stat(r / "sub") in found
    assert inotify_watches_of(str(elsewhere)) is None  # the check can tell a folder no watch covers


def test_recheck_finds_deep_folders_made_later_and_logs_only_changes(
        root: Path, watcher: tuple[Watcher, queue.Queue[FsEvent]], caplog: pytest.LogCaptureFixture) -> None:
    w, _ = watcher
    assert w.watch(str(root)) == "native"
    assert w.unwatched == {}  # every folder watched: nothing to scan, nothing logged
    staging = root.parent / "staging"
    staging.mkdir()
    rels = make_deep(staging)
    os.rename(staging, root / "later")  # moved in whole: watchdog watches what it can of it at once
    deep, _, _ = first_too_long(root, [b"later/" + r for r in rels])
    with caplog.at_level(logging.INFO, logger="chromatica_watch.daemon.watcher"):
        found = w.recheck(str(root))
        assert [rel for rel, _ in found] == [deep]
        assert w.unwatched[str(root)] == found and w.modes[str(root)] == "native"
        assert w.recheck(str(root)) == found
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and os.fsdecode(deep) in errors[0].getMessage()  # the second recheck was quiet


def test_a_deep_folder_the_daemon_never_scans_is_not_reported(
        root: Path, watcher: tuple[Watcher, queue.Queue[FsEvent]], caplog: pytest.LogCaptureFixture) -> None:
    w, _ = watcher
    (root / ".cache").mkdir()
    (root / "@eaDir").mkdir()
    make_deep(root / ".cache")
    make_deep(root / "@eaDir")
    with caplog.at_level(logging.INFO, logger="chromatica_watch.daemon.watcher"):
        assert w.watch(str(root)) == "native"
    assert w.unwatched == {}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_several_deep_folders_are_named_in_one_line_with_a_count_of_the_rest(
        root: Path, watcher: tuple[Watcher, queue.Queue[FsEvent]], caplog: pytest.LogCaptureFixture) -> None:
    w, _ = watcher
    deep = []
    for i in range(7):
        (root / f"album{i}").mkdir()
        rels = [f"album{i}/".encode() + r for r in make_deep(root / f"album{i}")]
        deep.append(first_too_long(root, rels)[0])
    with caplog.at_level(logging.ERROR, logger="chromatica_watch.daemon.watcher"):
        assert w.watch(str(root)) == "native"
    assert [rel for rel, _ in w.unwatched[str(root)]] == sorted(deep)
    assert len(caplog.records) == 1
    text = caplog.records[0].getMessage()
    assert text.startswith(f"cannot watch 7 folders under {root}: ") and "and 2 more" in text
    assert sum(os.fsdecode(rel) in text for rel in deep) == 5


def test_a_root_that_is_a_symlink_is_watched_at_its_target(
        root: Path, watcher: tuple[Watcher, queue.Queue[FsEvent]], caplog: pytest.LogCaptureFixture) -> None:
    """watchdog would watch the link itself (IN_DONT_FOLLOW), leaving the root's own folder unwatched."""
    w, events = watcher
    link = root.parent / "link"
    link.symlink_to(root)
    with caplog.at_level(logging.ERROR, logger="chromatica_watch.daemon.watcher"):
        assert w.watch(str(link)) == "native"
    assert w.unwatched == {} and not caplog.records
    write_rgb(root / "top.png", solid((1, 2, 3)))
    seen: list[FsEvent] = []
    wait_until(lambda: _seen(events, seen, FsEvent("changed", str(link), b"top.png")), timeout=10)


def test_a_root_deeper_than_path_max_falls_back_to_scans_naming_the_cause(
        root: Path, watcher: tuple[Watcher, queue.Queue[FsEvent]], caplog: pytest.LogCaptureFixture) -> None:
    w, _ = watcher
    deep, n, path_max = first_too_long(root, make_deep(root))
    too_deep = os.path.join(root, os.fsdecode(deep))
    with caplog.at_level(logging.ERROR, logger="chromatica_watch.daemon.watcher"):
        assert w.watch(too_deep) == "scan"
    assert too_deep not in w.unwatched
    assert f"its path is {n} bytes, longer than the system limit of {path_max} bytes" in caplog.text
    assert "inotify" not in caplog.text and len(caplog.records) == 1


def test_a_missing_root_falls_back_to_scans_saying_so(
        tmp_path: Path, watcher: tuple[Watcher, queue.Queue[FsEvent]], caplog: pytest.LogCaptureFixture) -> None:
    w, _ = watcher
    with caplog.at_level(logging.ERROR, logger="chromatica_watch.daemon.watcher"):
        assert w.watch(str(tmp_path / "gone")) == "scan"
    assert "it does not exist" in caplog.text and "inotify" not in caplog.text


def test_roots_watched_before_the_start_are_checked_at_the_start(root: Path) -> None:
    deep, _, _ = first_too_long(root, make_deep(root))
    events: queue.Queue[FsEvent] = queue.Queue()
    w = Watcher([], events)
    try:
        assert w.watch(str(root)) == "native"
        assert w.unwatched == {}  # no watches before the observer runs: nothing to judge yet
        w.start()
        assert [rel for rel, _ in w.unwatched[str(root)]] == [deep]
        assert w.modes[str(root)] == "native"
    finally:
        w.stop()


def test_a_watcher_never_started_stops_its_threads(root: Path) -> None:
    before = set(threading.enumerate())
    w = Watcher([], queue.Queue())
    assert w.watch(str(root)) == "native"
    w.stop()
    w.stop()  # twice is harmless
    assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]


def test_inotify_is_asked_for_changes_only_not_opens_or_reads(root: Path,
                                                             watcher: tuple[Watcher, queue.Queue[FsEvent]]) -> None:
    """The workers reading a photo and the scanner listing folders (opens, closes without a write) must
    not wake the watcher's thread: no watch asks the kernel for IN_OPEN or IN_CLOSE_NOWRITE."""
    in_open, in_close_nowrite, in_close_write = 0x20, 0x10, 0x08
    w, events = watcher
    w.watch(str(root))
    masks = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                with open(f"/proc/self/fdinfo/{fd}") as info:
                    masks += [int(line.split("mask:")[1].split()[0], 16) for line in info if "inotify wd:" in line]
    assert len(masks) >= 2  # the root and trip/
    assert all(m & (in_open | in_close_nowrite) == 0 for m in masks), [hex(m) for m in masks]
    assert all(m & in_close_write for m in masks)  # a writer closing its file is still heard
    write_rgb(root / "trip" / "marker.png", solid((1, 2, 3)))
    seen: list[FsEvent] = []
    wait_until(lambda: _seen(events, seen, FsEvent("changed", str(root), b"trip/marker.png")), timeout=10)
