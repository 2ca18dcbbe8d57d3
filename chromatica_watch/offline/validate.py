"""`validate`: every check an index directory must pass, each reported by name."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chromatica_watch.colour.histogram import TOTAL_BINS
from chromatica_watch.core.errors import ChromaticaError
from chromatica_watch.storage.catalog import Catalog, Verified
from chromatica_watch.storage.histfile import HISTOGRAM_FILE, check_file
from chromatica_watch.storage.index import (
    CheckpointInvalid,
    CheckpointOutdated,
    Manifest,
    load_checkpoint,
    read_manifest,
)
from chromatica_watch.storage.indexdir import watermark_problem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


Add = Callable[[str, bool, str], None]


def validate(index_dir: Path, sample: int = 50) -> list[Check]:
    """Every check, in order; a check that fails is reported (ok=False), never raised."""
    checks: list[Check] = []

    def add(name: str, ok: bool, detail: str) -> None:
        checks.append(Check(name, ok, detail))

    try:
        manifest = read_manifest(index_dir)
        add("manifest", True, f"watermark {manifest.watermark}, {manifest.vector_count} vectors, "
                              f"fingerprint {manifest.fingerprint}")
    except CheckpointInvalid as exc:
        add("manifest", False, str(exc))
        return checks
    try:
        catalog = Catalog.open(index_dir, None, read_only=True)  # its fingerprint is checked below, as a check
    except ChromaticaError as exc:
        add("catalog opens", False, str(exc))
        return checks
    try:
        if _catalog_reads_back(catalog, add):
            _check_against_index(index_dir, catalog, manifest, sample, add)
    except ChromaticaError as exc:  # a read that fails after verify passed: reported all the same
        add("catalog reads", False, str(exc))
    finally:
        with contextlib.suppress(ChromaticaError):
            catalog.close()
    return checks


def _catalog_reads_back(catalog: Catalog, add: Add) -> bool:
    """The counts, then every block of the catalog read back (Catalog.verify)."""
    try:
        counts = catalog.counts()
    except ChromaticaError as exc:
        add("catalog opens", False, str(exc))
        return False
    add("catalog opens", True, f"{counts['live']} live, {counts['tombstoned']} tombstoned, "
                               f"{counts['failed']} failed")
    try:
        verified = catalog.verify()
    except ChromaticaError as exc:
        add("catalog reads back", False, str(exc))
        return False
    add("catalog reads back", True, _describe(verified))
    return True


def _describe(verified: Verified) -> str:
    rows = ", ".join(f"{n} {table}" for table, n in verified.rows.items())
    detail = (f"every column of {rows} rows read in {verified.seconds:.2f} s; "
              f"key indexes walked: {', '.join(verified.indexes_walked) or 'none'}")
    if verified.indexes_not_walked:
        detail += f" (not {', '.join(verified.indexes_not_walked)}: a composite key is walked only read-write)"
    return detail


def _check_against_index(index_dir: Path, catalog: Catalog, manifest: Manifest, sample: int, add: Add) -> None:
    add("fingerprint", catalog.fingerprint() == manifest.fingerprint,
        f"catalog {catalog.fingerprint()}, manifest {manifest.fingerprint}")
    max_id = catalog.counts()["max_id"]
    # The daemon's own checks at its start (which would rebuild the index, or start the file again).
    problem = watermark_problem(manifest, max_id)
    add("watermark within the catalog", problem is None,
        problem or f"watermark {manifest.watermark}, the catalog's highest id {max_id}")
    add("histogram file", *check_file(index_dir / HISTOGRAM_FILE, catalog.catalog_id, max_id))
    try:
        live, _ = load_checkpoint(index_dir, manifest.fingerprint)
        add("index checksum and load", True, f"{manifest.checksum[:24]}…, {live.ntotal} vectors")
    except CheckpointOutdated as exc:  # not damaged: the daemon makes it again, reading no image
        add("index of an earlier release", True, f"{exc}; the daemon rebuilds it from the catalog's histograms at "
                                                 "its next start, reading no image")
        return
    except CheckpointInvalid as exc:
        add("index checksum and load", False, str(exc))
        return
    index_ids = set(live.ids().tolist())
    live_ids = set(catalog.live_ids().tolist())
    committed_live = {i for i in live_ids if i <= manifest.watermark}
    missing = committed_live - index_ids
    add("every live catalog row is in the index", not missing,
        f"{len(committed_live)} live rows up to the watermark, {len(missing)} missing"
        + (f" (e.g. id {min(missing)})" if missing else ""))
    unknown = index_ids - {int(i) for i in np.concatenate([catalog.live_ids(), catalog.deleted_ids()])}
    add("every index id is in the catalog", not unknown, f"{len(index_ids)} ids, {len(unknown)} unknown")
    pending = len(live_ids) - len(committed_live)
    add("counts agree", not missing and not unknown,
        f"index {live.ntotal} vectors = {len(committed_live)} live + "
        f"{len(index_ids - committed_live)} tombstoned; {pending} rows past the watermark to catch up")
    hists = catalog.sample_histograms(sample)
    sums = hists.sum(axis=1) if len(hists) else np.zeros(0)
    ok = hists.shape[1] == TOTAL_BINS and bool(np.all(np.abs(sums - 1.0) < 1e-4)) and bool(np.all(hists >= 0))
    add("sampled histograms", ok or len(hists) == 0,
        f"{len(hists)} sampled, {hists.shape[1]} bins, sums in "
        f"[{sums.min() if len(sums) else 0:.6f}, {sums.max() if len(sums) else 0:.6f}]")
