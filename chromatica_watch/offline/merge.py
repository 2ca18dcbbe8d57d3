"""`merge`: combine index directories built with the same histogram settings into a new one.

Two machines, two halves of a collection, a delta index into its base: the catalogs are merged by
DuckDB (`catalog.merge_catalogs`: new ids, roots kept apart, a file present in several inputs kept
once, its newest version), and the live index is the largest input's checkpoint with the other rows
appended from the merged catalog. No image is read or decoded.

Everything is written in a temporary sibling of the output and renamed into place at the end, so an
interrupted merge (even kill -9) leaves no half-made output, only a temporary folder the next merge
into the same output removes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from chromatica_watch.core.errors import IndexDirError, UsageError
from chromatica_watch.core.fsutil import atomic_write, fsync_dir
from chromatica_watch.storage.catalog import CATALOG_FILE, SCHEMA_VERSION, Catalog, merge_catalogs
from chromatica_watch.storage.decoder_stamp import META_KEY as DECODERS_KEY
from chromatica_watch.storage.decoder_stamp import merged_stamp
from chromatica_watch.storage.index import CheckpointInvalid, copy_checkpoint
from chromatica_watch.storage.indexdir import ensure_writable, open_live_index

logger = logging.getLogger(__name__)

MERGE_REPORT = "merge_report.json"
TEMP_INFIX = ".merging-"


@dataclass(frozen=True)
class Input:
    """An input index dir as surveyed before merging."""

    path: Path
    fingerprint: str
    rows: int  # catalog rows, live and tombstoned: the size of its live index
    decoders: str | None  # the stamp of the decoders that made its histograms


@dataclass
class MergeReport:
    inputs: list[str]
    rows: list[int]  # catalog rows (live and tombstoned) of each input, in input order
    output: str
    base: str  # the input whose ids and live index were kept
    fingerprint: str
    live: int
    tombstoned: int
    duplicates: int  # rows dropped (tombstoned) because another input held the same file newer
    failed: int
    checkpoint_reused: bool  # False: the base's checkpoint did not verify, the index was built from the catalog
    vectors_appended: int
    vectors: int
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def merge(inputs: Sequence[Path], output: Path) -> MergeReport:
    """Merge the index dirs `inputs` into the new index dir `output` (absent or empty). Refuses, with
    a UsageError or IndexDirError, anything that cannot make one coherent index."""
    started = time.monotonic()
    dirs = _checked_inputs(inputs)
    out = _checked_output(output, dirs)
    surveyed = [_survey(d) for d in dirs]
    fingerprint = _common_fingerprint(surveyed)
    base = max(surveyed, key=lambda s: s.rows)  # the first of the largest: the most vectors kept as they are
    _remove_abandoned_temps(out)
    tmp = out.with_name(f"{out.name}{TEMP_INFIX}{os.getpid()}")
    ensure_writable(tmp)
    try:
        report = _merge_into(tmp, surveyed, base, fingerprint)
        report.output = str(out)
        report.seconds = round(time.monotonic() - started, 3)
        atomic_write(tmp / MERGE_REPORT, json.dumps(report.to_json(), indent=2).encode())
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("merged %d index dirs into %s in %.2f s: %d live rows, %d duplicates dropped", len(dirs), out,
                report.seconds, report.live, report.duplicates)
    return report


# -- refusals, before anything is written -------------------------------------------------------------
def _checked_inputs(inputs: Sequence[Path]) -> list[Path]:
    if len(inputs) < 2:
        raise UsageError(f"merge needs at least two index dirs, got {len(inputs)}")
    dirs: list[Path] = []
    for given in inputs:
        real = Path(os.path.realpath(given))
        if not (real / CATALOG_FILE).is_file():
            raise IndexDirError(f"{given} is not an index dir (no {CATALOG_FILE} in it)")
        if real in dirs:  # merged with itself, every file would be a duplicate of itself
            raise UsageError(f"the index dir {real} is given twice; merging an index with itself would only "
                             "duplicate it")
        dirs.append(real)
    return dirs


def _checked_output(output: Path, dirs: list[Path]) -> Path:
    out = Path(os.path.realpath(output))
    if out in dirs:
        raise UsageError(f"the output {output} is one of the inputs; merge writes a new index dir")
    if out.exists():
        if not out.is_dir():
            raise IndexDirError(f"the output {output} exists and is not a folder")
        if any(out.iterdir()):
            raise IndexDirError(f"the output {output} exists and is not empty; merge writes a new index dir")
    return out


def _survey(index_dir: Path) -> Input:
    """Schema version checked by the open; busy or damaged catalogs refused here, naming the file."""
    with Catalog.open(index_dir, None, read_only=True) as catalog:
        if catalog.schema_version != SCHEMA_VERSION:
            raise IndexDirError(f"the catalog of {index_dir} was written by an older version; run "
                                f"`chromatica-watch compact --index-dir {index_dir}` once to bring it up to date, "
                                "then merge")
        counts = catalog.counts()
        return Input(index_dir, catalog.fingerprint(), counts["live"] + counts["tombstoned"],
                     catalog.meta(DECODERS_KEY))


def _common_fingerprint(surveyed: list[Input]) -> str:
    first = surveyed[0]
    for other in surveyed[1:]:
        if other.fingerprint != first.fingerprint:
            raise IndexDirError(
                f"cannot merge {first.path} (histogram settings {first.fingerprint}) with {other.path} "
                f"(histogram settings {other.fingerprint}): their histograms are not comparable "
                "(different max_dimension or version)")
    return first.fingerprint


# -- the merge, in the temporary folder ---------------------------------------------------------------
def _merge_into(tmp: Path, surveyed: list[Input], base: Input, fingerprint: str) -> MergeReport:
    counts = merge_catalogs([s.path for s in surveyed], tmp, base.path, fingerprint)
    reused = _copy_base_checkpoint(base.path, tmp, fingerprint)
    with Catalog.open(tmp, fingerprint, must_exist=True) as catalog:
        catalog.set_meta(DECODERS_KEY, merged_stamp([s.decoders for s in surveyed]))
        # loads the base's checkpoint, appends every live row past its watermark (the other inputs'),
        # and marks the tombstones it holds (duplicates the base lost)
        live, recovery = open_live_index(tmp, catalog, fingerprint)
        live.checkpoint(tmp, fingerprint)
    return MergeReport(
        inputs=[str(s.path) for s in surveyed], rows=[s.rows for s in surveyed], output="", base=str(base.path),
        fingerprint=fingerprint, live=counts.live, tombstoned=counts.tombstoned, duplicates=counts.duplicates,
        failed=counts.failed, checkpoint_reused=reused and recovery.loaded_checkpoint,
        vectors_appended=recovery.caught_up, vectors=live.ntotal)


def _copy_base_checkpoint(base: Path, tmp: Path, fingerprint: str) -> bool:
    """The base's checkpoint, if it verifies; otherwise the index is built from the merged catalog
    (slower, same result: the index is derived data)."""
    try:
        manifest = copy_checkpoint(base, tmp, fingerprint)
    except CheckpointInvalid as exc:
        logger.warning("the live index of %s is not usable (%s); the merged index is built from the catalog",
                       base, exc)
        return False
    logger.info("live index of %s copied: %d vectors up to id %d", base, manifest.vector_count, manifest.watermark)
    return True


# -- into place ------------------------------------------------------------------------------------
def _move_into_place(tmp: Path, out: Path) -> None:
    """rename(2) replaces an empty folder in one step: the output is the whole merge or not there."""
    fsync_dir(tmp)
    try:
        os.replace(tmp, out)
    except OSError as exc:
        raise IndexDirError(f"cannot move the merged index into {out}: {exc.strerror}") from exc
    fsync_dir(out.parent)


def _remove_abandoned_temps(out: Path) -> None:
    """Temporary folders of merges into `out` whose process is gone (killed midway)."""
    if not out.parent.is_dir():
        return
    for entry in out.parent.glob(f"{out.name}{TEMP_INFIX}*"):
        pid = entry.name.rsplit("-", 1)[-1]
        if entry.is_dir() and pid.isdigit() and not _alive(int(pid)):
            logger.info("removing %s, left by an interrupted merge", entry)
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a folder with our pid was left by an earlier process that had it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
