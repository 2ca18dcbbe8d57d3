"""The catalog's records as plain values: what a batch commits (`Changes`) and what reads return.

No I/O here: the event rules, the ingest plan and the catalog all speak these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from chromatica_watch.core.paths import display_key


@dataclass(frozen=True)
class PhotoDetails:
    """What a photo's headers say, read at indexing without decoding a pixel: when it was taken and how
    that is known, the camera, and its orientation as shown (after the EXIF rotation)."""

    taken: datetime | None  # the wall-clock time as the camera wrote it (naive), else the file's mtime
    taken_source: str  # where `taken` comes from: "exif", "xmp", "png", or "mtime"
    camera: str | None  # "Make Model" as the camera wrote them (the make not repeated), None if unknown
    orientation: str | None  # "landscape", "portrait" or "square"; None if the size is unknown


@dataclass(frozen=True)
class NewImage:
    root: str
    path: bytes
    size: int
    mtime_ns: int
    content_hash: str
    width: int
    height: int
    histogram: np.ndarray
    details: PhotoDetails | None = None  # None: read later by the daemon's details pass
    ctime_ns: int | None = None  # the inode change time of the bytes read (None: not known)


@dataclass(frozen=True)
class Failure:
    root: str
    path: bytes
    size: int
    mtime_ns: int
    reason: str
    attempts: int = 1

    def to_json(self) -> dict[str, object]:
        """As `failed --json` and the socket's `failed` op show it."""
        return {"path": display_key((self.root, self.path)), "reason": self.reason, "attempts": self.attempts,
                "size": self.size}


@dataclass(frozen=True)
class Move:
    image_id: int
    root: str
    path: bytes
    size: int
    mtime_ns: int
    ctime_ns: int | None = None  # None: not known (compared by size and mtime only until a scan fills it)


@dataclass(frozen=True)
class StoredImage:
    image_id: int
    root: str
    path: bytes
    content_hash: str
    width: int
    height: int
    histogram: np.ndarray
    live: bool


@dataclass(frozen=True)
class LiveFile:
    image_id: int
    size: int
    mtime_ns: int
    content_hash: str
    ctime_ns: int | None = None  # None: a row from before the catalog kept it, or one relocated


@dataclass(frozen=True)
class RootRecord:
    """What the catalog knows of one root: live photos, failure records, when it left the config (retired,
    epoch seconds; None while configured) and its last full scan."""

    root: str
    live: int
    failed: int
    retired_at: float | None = None
    last_scan: float | None = None
    last_scan_files: int | None = None


@dataclass(frozen=True)
class Relocated:
    """A root's rows rewritten to another root: how many moved, and the ids superseded because the new
    root already had a live row at the same path (tombstoned)."""

    moved: int
    superseded: list[int]


@dataclass
class Changes:
    """Everything one batch commits, in one transaction."""

    added: list[NewImage] = field(default_factory=list)
    tombstoned: list[int] = field(default_factory=list)
    moved: list[Move] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    cleared_failures: list[tuple[str, bytes]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.tombstoned or self.moved or self.failed or self.cleared_failures)


def order_as(asked: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Positions in `got` (ids read in no order) of the ids of `asked` that it holds, in `asked`'s order:
    rows read by id put back in the order they were asked for (ids not found left out)."""
    position = {int(i): n for n, i in enumerate(np.asarray(got).tolist())}
    return np.array([position[i] for i in np.asarray(asked).tolist() if i in position], dtype=np.int64)
