"""Walking a watched root: which files are candidates, with the (size, mtime_ns, ctime_ns) the diff needs.

Stat only: no file is opened here. Symbolic links are not followed (see `walk`).
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from chromatica_watch.core.filetypes import has_image_extension, special_file_reason, symlink_reason
from chromatica_watch.core.paths import DiskFile, display_path, key_to_str, rel_key

__all__ = ["DiskFile", "ScanProblem", "display_path", "is_candidate", "is_excluded", "is_ignored_name", "rel_key",
           "scan", "walk"]  # DiskFile, display_path and rel_key live in paths.py; tests name them here too

logger = logging.getLogger(__name__)

PARTIAL_SUFFIXES = (".part", ".crdownload", ".tmp", ".partial", ".download", "~")
JUNK_NAMES = frozenset({"@eaDir", "#recycle", "#snapshot", ".stfolder", ".stversions", "$RECYCLE.BIN",
                        "System Volume Information", "lost+found"})


@dataclass(frozen=True)
class ScanProblem:
    path: bytes  # relative to the root
    reason: str


# A file or folder gone between its folder's listing and its stat (renamed or deleted meanwhile): nothing
# wrong with it, and not a failure to record; the caller looks again once the changes calm down.
VANISHED = "vanished while its folder was walked"


def _gone(exc: OSError) -> bool:
    return exc.errno in (errno.ENOENT, errno.ENOTDIR)


def is_ignored_name(name: str, is_dir: bool) -> bool:
    """Hidden files and folders, partial downloads, NAS and sync-tool junk."""
    if name.startswith(".") or name in JUNK_NAMES:
        return True
    return not is_dir and name.endswith(PARTIAL_SUFFIXES)


def is_candidate(rel: str, excludes: Sequence[str] = ()) -> bool:
    """Whether a path relative to a root names a file we would index (by name only)."""
    parts = rel.replace(os.sep, "/").split("/")
    if any(is_ignored_name(p, is_dir=True) for p in parts[:-1]):
        return False
    name = parts[-1]
    if is_ignored_name(name, is_dir=False) or not has_image_extension(name):
        return False
    return not is_excluded(rel, excludes)


def is_excluded(rel: str, excludes: Sequence[str]) -> bool:
    posix = rel.replace(os.sep, "/")
    return any(fnmatch.fnmatchcase(posix, pat) or fnmatch.fnmatchcase(posix.rsplit("/", 1)[-1], pat)
               for pat in excludes)


def walk(root: str, excludes: Sequence[str] = (), under: bytes = b"") -> Iterator[tuple[bytes, DiskFile] | ScanProblem]:
    """Every candidate image under `root` (or only under its folder `under`) as (key, DiskFile), and
    the problems met on the way.

    Symbolic links are not followed, to files or to folders: a link back into the root would index
    the same photo twice, and a folder reached through a link is not watched. A link named like a
    photo, and any linked folder, is reported once with the reason (the workers give the same words
    when an event hands them a link). Files that are not regular files (FIFOs, sockets, devices)
    are reported, never opened.
    """
    root_st = os.stat(root)
    start = key_to_str(under) if under not in (b"", b".") else ""
    if start and (any(is_ignored_name(p, is_dir=True) for p in start.split("/")) or is_excluded(start, excludes)):
        return
    ancestors: tuple[tuple[int, int], ...] = ((root_st.st_dev, root_st.st_ino),)
    if start:
        try:
            st = os.lstat(os.path.join(root, start))
        except OSError as exc:
            yield ScanProblem(under, VANISHED if _gone(exc) else _unlistable_reason(os.path.join(root, start), exc))
            return
        if stat.S_ISLNK(st.st_mode):
            yield ScanProblem(under, symlink_reason(os.path.join(root, start)))
            return
        ancestors += ((st.st_dev, st.st_ino),)
    stack: list[tuple[str, tuple[tuple[int, int], ...]]] = [(start, ancestors)]
    while stack:
        rel_dir, ancestors = stack.pop()
        abs_dir = os.path.join(root, rel_dir) if rel_dir else root
        try:
            with os.scandir(abs_dir) as it:
                entries = list(it)
        except OSError as exc:
            if rel_dir:
                yield ScanProblem(rel_key(rel_dir), VANISHED if _gone(exc) else _unlistable_reason(abs_dir, exc))
            else:
                raise
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            yield from _walk_entry(entry, rel, ancestors, excludes, stack)


def _unlistable_reason(path: str, exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        limit = os.pathconf("/", "PC_PATH_MAX")
        return (f"cannot list folder: its path is {len(os.fsencode(path))} bytes, longer than the system "
                f"limit of {limit} bytes (move it higher up to index it)")
    return f"cannot list folder: {exc.strerror}"


def _walk_entry(entry: os.DirEntry[str], rel: str, ancestors: tuple[tuple[int, int], ...],
                excludes: Sequence[str], stack: list[tuple[str, tuple[tuple[int, int], ...]]],
                ) -> Iterator[tuple[bytes, DiskFile] | ScanProblem]:
    try:
        is_link = entry.is_symlink()
        is_dir = entry.is_dir(follow_symlinks=True)
    except OSError:
        is_link, is_dir = True, False
    if is_ignored_name(entry.name, is_dir) or is_excluded(rel, excludes):
        return
    if is_link:
        if is_dir or has_image_extension(entry.name):
            yield ScanProblem(rel_key(rel), symlink_reason(entry.path))
        return
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError as exc:
        if is_dir or has_image_extension(entry.name):
            yield ScanProblem(rel_key(rel), VANISHED if _gone(exc) else f"cannot stat: {exc.strerror}")
        return
    if is_dir:
        ident = (st.st_dev, st.st_ino)
        if ident in ancestors:  # a bind mount of a folder above it
            yield ScanProblem(rel_key(rel), "folder loop: the same folder as one above it; not entered")
        else:
            stack.append((rel, (*ancestors, ident)))
        return
    if not has_image_extension(entry.name):
        return
    reason = special_file_reason(st.st_mode)
    if reason is not None:
        yield ScanProblem(rel_key(rel), reason)
        return
    yield rel_key(rel), DiskFile(st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def scan(root: str, excludes: Sequence[str] = (), under: bytes = b"", vanished: list[bytes] | None = None,
         ) -> tuple[dict[bytes, DiskFile], list[ScanProblem]]:
    """(files, problems) under `root` (or its folder `under`); what vanished during the walk is no problem:
    its paths go to `vanished`, for a caller that looks again later."""
    files: dict[bytes, DiskFile] = {}
    problems: list[ScanProblem] = []
    for item in walk(root, excludes, under):
        if isinstance(item, ScanProblem):
            if item.reason != VANISHED:
                problems.append(item)
            elif vanished is not None:
                vanished.append(item.path)
        else:
            files[item[0]] = item[1]
    return files, problems
