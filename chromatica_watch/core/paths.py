"""Where a photo is, in one place: its key (root, path relative to the root as raw bytes), the
conversions between keys and paths, and the one stat the daemon trusts (size, mtime_ns; the inode change
time too, as git's index does: a file swapped for another of the same size and mtime changes it).

A key's path is POSIX-form bytes, so names that are not valid UTF-8 survive exactly; only
`display_path` turns one into text, escaping what a terminal or a log line cannot show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

Key = tuple[str, bytes]  # (root as configured, path relative to it)


@dataclass(frozen=True)
class DiskFile:
    """What the diff and the settle rule compare: a file is unchanged while these are. `ctime_ns` (the inode
    change time, which no program can set) only asks for the bytes to be hashed again when it differs from
    the catalog's (see ingest.diff); it is not part of a DiskFile's equality (the settle rule)."""

    size: int
    mtime_ns: int
    ctime_ns: int | None = field(default=None, compare=False)  # None: not known


def rel_key(rel: str) -> bytes:
    """A relative path as the catalog key: POSIX form, raw bytes (undecodable names kept exactly)."""
    return os.fsencode(rel.replace(os.sep, "/"))


def key_to_str(path: bytes) -> str:
    return os.fsdecode(path)


def absolute_key(key: Key) -> bytes:
    """The absolute path of a key, as bytes (what the OS takes, whatever the name's encoding)."""
    root, path = key
    return os.path.join(os.fsencode(root), path)


def absolute_path(key: Key) -> str:
    return os.fsdecode(absolute_key(key))


def is_under(path: bytes, folder: bytes) -> bool:
    """Whether a root-relative key lies in `folder` (b"" or b"." is the whole root)."""
    return folder in (b"", b".") or path.startswith(folder + b"/")


def display_path(key: bytes | str) -> str:
    """A one-line, unambiguous rendering of a path: odd bytes and control characters escaped."""
    raw = key if isinstance(key, bytes) else os.fsencode(key)
    text = raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def display_key(key: Key) -> str:
    return display_path(absolute_key(key))


def stat_file(path: bytes | str) -> DiskFile | None:
    """(size, mtime_ns, ctime_ns) of what the path names (links followed), or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return DiskFile(st.st_size, st.st_mtime_ns, st.st_ctime_ns)
