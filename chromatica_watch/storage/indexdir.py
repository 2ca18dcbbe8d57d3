"""An index directory: the catalog, the live index and its checkpoint, opened and recovered together.

Recovery: verify the manifest and checksum, load, add catalog rows past the watermark, apply
tombstones. Anything that does not verify is rebuilt from the catalog, with a loud warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chromatica_watch.core.errors import IndexDirError
from chromatica_watch.core.fsutil import fsync_dir, remove_stale_temps
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.index import (
    FLAT,
    INDEX_FILE,
    MANIFEST_FILE,
    PCA,
    PCA_FROM,
    PCA_TRAINING,
    CheckpointInvalid,
    CheckpointOutdated,
    LiveIndex,
    Manifest,
    layout_for,
    load_checkpoint,
    read_manifest,
    rebuild,
)

logger = logging.getLogger(__name__)

FAILED_REPORT = "failed_images_report.txt"
INDEXING_REPORT = "indexing_report.json"


@dataclass(frozen=True)
class Recovery:
    loaded_checkpoint: bool
    caught_up: int  # vectors added past the watermark
    rebuilt_reason: str | None


def ensure_writable(index_dir: Path) -> None:
    """Create the directory and prove we can write to it, with one clear error if not."""
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IndexDirError(f"cannot create index dir {index_dir}: {exc.strerror}") from exc
    probe = index_dir / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise IndexDirError(f"index dir {index_dir} is not writable: {exc.strerror}") from exc


def discard_checkpoint(index_dir: Path) -> None:
    """Forget the live index checkpoint (derived data): the next open rebuilds it from the catalog.
    Needed when the catalog is replaced, since the checkpoint's ids belonged to the old one."""
    for name in (MANIFEST_FILE, INDEX_FILE):  # the manifest first: it is the commit point
        with contextlib.suppress(FileNotFoundError):
            (index_dir / name).unlink()
    fsync_dir(index_dir)


def compact(index_dir: Path, fingerprint: str, pca_from: int = PCA_FROM) -> tuple[int, int]:
    """Rebuild the live index of an index dir nobody is writing to without its tombstoned ids (and in the
    layout its size calls for), and checkpoint it (atomically: the manifest rename is the commit point).
    (vectors before, after)."""
    with Catalog.open(index_dir, fingerprint, must_exist=True) as catalog:
        live, _ = open_live_index(index_dir, catalog, fingerprint, pca_from=pca_from)
        before = live.ntotal
        if live.tombstone_count or live.dirty or needs_reshape(live, pca_from):
            live = rebuild_from(catalog, pca_from=pca_from)
            live.checkpoint(index_dir, fingerprint)
        return before, live.ntotal


Progress = Callable[[int, int], None]  # (vectors added so far, of how many): a long rebuild moving


def rebuild_from(catalog: Catalog, progress: Progress | None = None, pca_from: int = PCA_FROM) -> LiveIndex:
    """A new live index of the catalog's live rows, in the layout their number calls for (the PCA
    projection fitted on a sample of them)."""
    live_rows = catalog.counts()["live"]
    training = None
    if layout_for(live_rows, pca_from) == PCA:
        training = catalog.sample_histograms(PCA_TRAINING)
        logger.info("building the live index of %d photos in the %s layout", live_rows, PCA)
    return rebuild(catalog.iter_histograms(), _of(progress, live_rows), training)


def _of(progress: Progress | None, total: int) -> Callable[[int], None] | None:
    if progress is None:
        return None
    report = progress
    return lambda added: report(added, total)


def needs_reshape(live: LiveIndex, pca_from: int = PCA_FROM) -> bool:
    """A flat index grown past the size from which the PCA layout is used (rebuilt in it by the caller)."""
    return live.layout == FLAT and layout_for(live.ntotal - live.tombstone_count, pca_from) == PCA


def _checkpoint_holds_all(index_dir: Path, max_id: int) -> bool:
    try:
        return read_manifest(index_dir).watermark >= max_id
    except CheckpointInvalid:
        return False


def watermark_problem(manifest: Manifest, max_id: int) -> str | None:
    """Why a checkpoint cannot be of a catalog whose highest id is `max_id` (None: it can be): it holds ids
    the catalog never gave (the catalog is an older copy, or another one)."""
    if manifest.watermark > max_id:
        return f"checkpoint holds ids up to {manifest.watermark} but the catalog only up to {max_id}"
    return None


def open_live_index(index_dir: Path, catalog: Catalog, fingerprint: str,
                    progress: Progress | None = None,
                    pca_from: int = PCA_FROM) -> tuple[LiveIndex, Recovery]:
    """The live index of `index_dir`, recovered (see the module docstring); `progress` is called as
    chunks of vectors are added, so that a long rebuild is not taken for a stuck daemon."""
    if not catalog.read_only:
        remove_stale_temps(index_dir)
    max_id = catalog.counts()["max_id"]
    try:
        # A reader with nothing to catch up maps the checkpoint instead of loading it (a search with no
        # daemon: 0.01 s instead of 0.65 s at 100k photos, and only the pages it touches in memory).
        live, manifest = load_checkpoint(index_dir, fingerprint,
                                         mapped=catalog.read_only and _checkpoint_holds_all(index_dir, max_id))
        if (problem := watermark_problem(manifest, max_id)) is not None:
            raise CheckpointInvalid(problem)
    except CheckpointInvalid as exc:
        has_rows = max_id > 0
        if has_rows and isinstance(exc, CheckpointOutdated):
            logger.warning("live index of an earlier release (%s): rebuilding it from the catalog's histograms, "
                           "no image is read", exc)
        elif has_rows:
            logger.warning("live index checkpoint unusable (%s); rebuilding it from the catalog", exc)
        live = rebuild_from(catalog, progress, pca_from)  # live rows only: no tombstone to mark
        return live, Recovery(False, 0, str(exc) if has_rows else None)
    caught_up = live.add_from(catalog.iter_histograms(after_id=manifest.watermark),
                              _of(progress, max_id - manifest.watermark))  # at most that many
    # Only the deleted ids this index holds are its tombstones: rows a compaction (rebuild) already
    # dropped must not count, or every start after one would find "too many tombstones" and rebuild.
    live.mark_deleted(np.intersect1d(catalog.deleted_ids(), live.ids(), assume_unique=True))
    live.dirty = caught_up > 0
    if caught_up:
        logger.info("live index: loaded checkpoint (%d vectors) and caught up %d from the catalog",
                    manifest.vector_count, caught_up)
    return live, Recovery(True, caught_up, None)
