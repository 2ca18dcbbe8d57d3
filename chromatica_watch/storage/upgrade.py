"""Upgrading an index made with other histogram settings, without a day of refusing to search.

A new version can change how histograms are made (the fingerprint), and so can a new `max_dimension`.
An index of another fingerprint is never mixed with new histograms. Instead the daemon keeps answering
searches from the old index, read-only, while it indexes the folders again into a new one beside it,
`<index dir>/upgrade-<new fingerprint>/` (an ordinary index dir: resumable, so a kill or a restart
costs nothing already done). When that one is complete it is switched in:

1. the new catalog and index are closed (checkpointed whole), then `COMPLETE` is written in the
   upgrade dir and fsynced: the commit point;
2. every old file is renamed into `<index dir>/previous/` (then `OLD_OUT` is written), and every new
   file renamed into the index dir;
3. both folders are removed.

`finish_switch` does steps 2 and 3, and runs before anything opens the index dir, so a kill -9 at any
moment leaves one of the two indexes whole: before step 1 the old one (and the upgrade resumes), after
it the new one (and the switch is finished at the next start).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from chromatica_watch.core.fsutil import atomic_write, fsync_dir
from chromatica_watch.storage.catalog import CATALOG_FILE
from chromatica_watch.storage.index import INDEX_FILE, MANIFEST_FILE

logger = logging.getLogger(__name__)

UPGRADE_PREFIX = "upgrade-"
PREVIOUS = "previous"
COMPLETE = "COMPLETE"
OLD_OUT = "OLD_OUT"
INDEX_DIR_FILES = (CATALOG_FILE, CATALOG_FILE + ".wal", INDEX_FILE, MANIFEST_FILE)


def upgrade_dir(index_dir: Path, fingerprint: str) -> Path:
    return Path(index_dir) / f"{UPGRADE_PREFIX}{fingerprint}"


def mark_complete(upgrade: Path) -> None:
    """The commit point of the switch: the new index in `upgrade` is whole (its files closed and synced)."""
    for name in INDEX_DIR_FILES:
        if (upgrade / name).exists():
            with open(upgrade / name, "rb") as f:
                os.fsync(f.fileno())
    atomic_write(upgrade / COMPLETE, b"complete\n")


def finish_switch(index_dir: Path) -> bool:
    """Finish a switch whose commit point was written (see the module docstring); True if one was. An
    upgrade dir without COMPLETE is an upgrade in progress and is left alone."""
    index_dir = Path(index_dir)
    done = False
    for upgrade in sorted(index_dir.glob(f"{UPGRADE_PREFIX}*")):
        if (upgrade / COMPLETE).exists():
            _switch(index_dir, upgrade)
            logger.warning("the upgraded index replaced the previous one in %s", index_dir)
            done = True
    return done


def _switch(index_dir: Path, upgrade: Path) -> None:
    """Every old file out (all of them: an old WAL left beside the new catalog would be replayed into it),
    noted by OLD_OUT; then every new file in. Each step is a rename, and each phase can be run again."""
    previous = index_dir / PREVIOUS
    if not (upgrade / OLD_OUT).exists():
        previous.mkdir(exist_ok=True)
        for name in INDEX_DIR_FILES:
            if (index_dir / name).exists():
                os.replace(index_dir / name, previous / name)
        fsync_dir(previous)
        fsync_dir(index_dir)
        atomic_write(upgrade / OLD_OUT, b"old files moved out\n")
    for name in INDEX_DIR_FILES:
        if (upgrade / name).exists():
            os.replace(upgrade / name, index_dir / name)
    fsync_dir(index_dir)
    shutil.rmtree(upgrade)
    shutil.rmtree(previous, ignore_errors=True)
    fsync_dir(index_dir)


def abandoned_upgrades(index_dir: Path, fingerprint: str) -> list[Path]:
    """Upgrade dirs towards another fingerprint than this program's (a version tried, then not kept)."""
    return [p for p in Path(index_dir).glob(f"{UPGRADE_PREFIX}*")
            if p.is_dir() and p.name != f"{UPGRADE_PREFIX}{fingerprint}"]
