"""A dataset folder against an index directory: the seed's "delta analysis", stat-only.

`dataset_plan` is what `build` executes and what `chromatica-watch diff` prints: one plan
(`pipeline.plan_delta`), not a second implementation. Matching by path compares each file with the row
at the same path under the same folder; matching by name (the seed: an index built under
`../o00_images/`, the photos now in `pictures/`) takes over the rows of the index's other folder and
pairs files with rows by file name, a name held by several files or rows never being paired.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chromatica_watch.core.errors import DatasetError, UsageError
from chromatica_watch.core.paths import DiskFile, display_path
from chromatica_watch.core.records import RootRecord
from chromatica_watch.ingest.diff import MatchBy
from chromatica_watch.ingest.pipeline import IngestPlan, plan_delta
from chromatica_watch.ingest.scan import ScanProblem, scan
from chromatica_watch.storage.catalog import Catalog


def adopted_root(records: Mapping[str, RootRecord], root: str, match_by: MatchBy) -> str | None:
    """With match_by="name", the index's other folder whose rows the dataset takes over (at most one:
    the seed's index built under another folder name)."""
    if match_by == "path":
        return None
    others = [r for r, rec in records.items() if r != root and rec.live]
    if len(others) > 1:
        raise UsageError(f"--match-by name needs an index of one folder, but this one holds photos of "
                         f"{len(others)} other folders ({', '.join(display_path(r) for r in others)}): relocate "
                         "each with `chromatica-watch relocate OLD NEW`")
    return others[0] if others else None


def dataset_plan(catalog: Catalog, root: str, disk: Mapping[bytes, DiskFile], match_by: MatchBy) -> IngestPlan:
    """The plan that brings the index to what the dataset folder `root` holds."""
    adopt = adopted_root(catalog.root_records(), root, match_by)
    return plan_delta(catalog, root, disk, time.time_ns(), match_by=match_by, adopt=adopt)


def scan_dataset(dataset: Path, excludes: Sequence[str]) -> tuple[str, dict[bytes, DiskFile], list[ScanProblem]]:
    """(root, files, what cannot be indexed) of a dataset folder; DatasetError when it cannot be read."""
    folder = dataset.resolve()
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {dataset} does not exist or is not a folder")
    root = os.fsdecode(folder)
    try:
        disk, problems = scan(root, excludes)
    except OSError as exc:
        raise DatasetError(f"cannot read dataset folder {dataset}: {exc.strerror}") from exc
    return root, disk, problems


@dataclass
class DeltaReport:
    """The plan, as `diff` prints it: paths relative to the dataset (moved ones: from where)."""

    dataset: str
    index: str
    match_by: str
    files: int
    unchanged: int
    failed_unchanged: int
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    adopted: str | None = None  # the folder whose rows the dataset takes over
    other_folders: dict[str, int] = field(default_factory=dict)  # photos of folders this diff leaves alone

    @property
    def to_read(self) -> int:
        return len(self.new) + len(self.changed)

    def counts(self) -> dict[str, int]:
        return {"files": self.files, "unchanged": self.unchanged, "new": len(self.new), "changed": len(self.changed),
                "moved": len(self.moved), "missing": len(self.missing), "ambiguous": len(self.ambiguous),
                "failed_unchanged": self.failed_unchanged, "to_read": self.to_read}

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "index": self.index, "match_by": self.match_by, "counts": self.counts(),
                "new": self.new, "changed": self.changed,
                "moved": [{"from": a, "to": b} for a, b in self.moved], "missing": self.missing,
                "ambiguous": self.ambiguous, "adopted": self.adopted, "other_folders": self.other_folders}


def report_plan(plan: IngestPlan, disk_files: int, index: str, match_by: str,
                records: Mapping[str, RootRecord]) -> DeltaReport:
    d = plan.delta
    return DeltaReport(
        dataset=display_path(plan.root), index=index, match_by=match_by, files=disk_files, unchanged=d.unchanged,
        failed_unchanged=d.failed_unchanged, new=[display_path(p) for p in d.new],
        changed=sorted(display_path(p) for p in [*(p for p, _ in d.changed), *(p for p, _ in d.rehash)]),
        moved=[(display_path(a), display_path(b)) for a, b, _ in d.moved],
        missing=[display_path(p) for p, _ in d.vanished], ambiguous=[display_path(n) for n in d.ambiguous],
        adopted=display_path(plan.adopt) if plan.adopt else None,
        other_folders={display_path(r): rec.live for r, rec in records.items()
                       if r not in (plan.root, plan.adopt) and rec.live})


def diff_dataset(index_dir: Path, dataset: Path, match_by: MatchBy, excludes: Sequence[str] = ()) -> DeltaReport:
    """What `build --dataset DATASET --output INDEX_DIR [--match-by]` would do, reading no image."""
    root, disk, _ = scan_dataset(dataset, excludes)
    with Catalog.open(index_dir, None, read_only=True) as catalog:
        plan = dataset_plan(catalog, root, disk, match_by)
        return report_plan(plan, len(disk), str(index_dir), match_by, catalog.root_records())
