"""Setting a damaged catalog aside: renamed (with its WAL) beside the index, never deleted, so that a new one
can be built in its place and the old one still be looked at."""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

from chromatica_watch.core.errors import IndexDirError
from chromatica_watch.core.fsutil import fsync_dir
from chromatica_watch.storage.catalog.schema import CATALOG_FILE

logger = logging.getLogger(__name__)


def quarantine(index_dir: Path, now: datetime) -> Path:
    """Rename the catalog (and its WAL, kept beside it as `<new name>.wal`, so the pair still opens together)
    to chromatica_metadata.db.damaged-YYYYmmddTHHMMSS, with -2, -3... if that is taken. Nothing is deleted
    or overwritten. The catalog must be closed. Returns the new path."""
    index_dir = Path(index_dir)
    src = index_dir / CATALOG_FILE
    wal = src.with_name(CATALOG_FILE + ".wal")
    if not src.exists() and not wal.exists():
        raise IndexDirError(f"no catalog at {src} to set aside")
    dest = _unused_name(index_dir, f"{CATALOG_FILE}.damaged-{now.strftime('%Y%m%dT%H%M%S')}")
    try:
        if src.exists():
            os.rename(src, dest)
        if wal.exists():
            os.rename(wal, dest.with_name(dest.name + ".wal"))
        fsync_dir(index_dir)
    except OSError as exc:
        raise IndexDirError(f"cannot set the catalog {src} aside as {dest}: {exc.strerror}") from exc
    logger.warning("catalog %s set aside as %s", src, dest)
    return dest


def _unused_name(directory: Path, name: str) -> Path:
    """`name`, or `name-2`, `name-3`...: the first for which neither it nor its .wal exists."""
    candidate, n = directory / name, 1
    while candidate.exists() or candidate.with_name(candidate.name + ".wal").exists():
        n += 1
        candidate = directory / f"{name}-{n}"
    return candidate
