"""Walking a watched root: which files are candidates, with the (size, mtime_ns) the diff needs.

Stat only: no file is opened here. Directory symlinks are followed once; a link back into a folder
already being walked is a loop, reported and not followed.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .image import has_image_extension

logger = logging.getLogger(__name__)

PARTIAL_SUFFIXES = (".part", ".crdownload", ".tmp", ".partial", ".download", "~")
JUNK_NAMES = frozenset({"@eaDir", "#recycle", "#snapshot", ".stfolder", ".stversions", "$RECYCLE.BIN",
                        "System Volume Information", "lost+found"})


@dataclass(frozen=True)
class DiskFile:
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ScanProblem:
    path: bytes  # relative to the root
    reason: str


def rel_key(rel: str) -> bytes:
    """A relative path as the catalog key: POSIX form, raw bytes (undecodable names kept exactly)."""
    return os.fsencode(rel.replace(os.sep, "/"))


def key_to_str(key: bytes) -> str:
    return os.fsdecode(key)


def display_path(key: bytes | str) -> str:
    """A one-line, unambiguous rendering of a path: odd bytes and control characters escaped."""
    raw = key if isinstance(key, bytes) else os.fsencode(key)
    text = raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


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


def walk(root: str, excludes: Sequence[str] = ()) -> Iterator[tuple[bytes, DiskFile] | ScanProblem]:
    """Every candidate image under `root` as (key, DiskFile), and problems met on the way."""
    root_st = os.stat(root)
    stack: list[tuple[str, tuple[tuple[int, int], ...]]] = [("", ((root_st.st_dev, root_st.st_ino),))]
    while stack:
        rel_dir, ancestors = stack.pop()
        abs_dir = os.path.join(root, rel_dir) if rel_dir else root
        try:
            with os.scandir(abs_dir) as it:
                entries = list(it)
        except OSError as exc:
            if rel_dir:
                yield ScanProblem(rel_key(rel_dir), f"cannot list folder: {exc.strerror}")
            else:
                raise
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_ignored_name(entry.name, is_dir) or is_excluded(rel, excludes):
                continue
            if is_dir:
                try:
                    st = entry.stat(follow_symlinks=True)
                except OSError as exc:
                    yield ScanProblem(rel_key(rel), f"cannot stat folder: {exc.strerror}")
                    continue
                ident = (st.st_dev, st.st_ino)
                if ident in ancestors:
                    yield ScanProblem(rel_key(rel), "symlink loop: links back to a folder above it; not followed")
                    continue
                stack.append((rel, (*ancestors, ident)))
                continue
            if not has_image_extension(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                reason = "symlink loop" if exc.errno == errno.ELOOP else f"cannot stat: {exc.strerror}"
                if exc.errno == errno.ENOENT and entry.is_symlink():
                    reason = "broken symlink"
                yield ScanProblem(rel_key(rel), reason)
                continue
            if not entry.is_file(follow_symlinks=True):
                continue
            yield rel_key(rel), DiskFile(st.st_size, st.st_mtime_ns)


def scan(root: str, excludes: Sequence[str] = ()) -> tuple[dict[bytes, DiskFile], list[ScanProblem]]:
    files: dict[bytes, DiskFile] = {}
    problems: list[ScanProblem] = []
    for item in walk(root, excludes):
        if isinstance(item, ScanProblem):
            problems.append(item)
        else:
            files[item[0]] = item[1]
    return files, problems
