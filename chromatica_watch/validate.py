"""`validate`: every check an index directory must pass, each reported by name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog import Catalog
from .errors import ChromaticaError
from .histogram import TOTAL_BINS
from .index import CheckpointInvalid, load_checkpoint, read_manifest


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def validate(index_dir: Path, sample: int = 50) -> list[Check]:
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
        catalog = Catalog.open(index_dir, manifest.fingerprint, read_only=True)
    except ChromaticaError as exc:
        add("catalog opens", False, str(exc))
        return checks
    try:
        counts = catalog.counts()
        add("catalog opens", True, f"{counts['live']} live, {counts['tombstoned']} tombstoned, "
                                   f"{counts['failed']} failed")
        add("fingerprint", catalog.fingerprint() == manifest.fingerprint,
            f"catalog {catalog.fingerprint()}, manifest {manifest.fingerprint}")
        try:
            live, _ = load_checkpoint(index_dir, manifest.fingerprint)
            add("index checksum and load", True, f"sha256 {manifest.sha256[:16]}…, {live.ntotal} vectors")
        except CheckpointInvalid as exc:
            add("index checksum and load", False, str(exc))
            return checks
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
    finally:
        catalog.close()
    return checks
