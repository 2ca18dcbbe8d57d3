"""Roots as the user sees them: watched, offline or retired; and relocating one root's rows to another.

A root is a folder the catalog holds photos of. It is *watched* while it is configured and reachable,
*offline* while configured but missing (an unplugged drive: its photos stay searchable, marked), and
*retired* once it is no longer in the config: never searched nor counted, its rows kept for
`retired_root_grace_days` so that a mistaken edit or a relocate can reuse them, then dropped.

Relocating rewrites the stored root of every row, in one transaction, reading no image: the seed's
"../o00_images/ became pictures/". A sample of the rows is checked against the new folder first
(same size and mtime, or the same content when only the mtime differs), so a relocate onto the wrong
folder is refused. What the sample does not cover is safe anyway: the rescan that follows compares
every file and reads those that differ.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chromatica_watch.core.errors import ChromaticaError, UsageError
from chromatica_watch.core.paths import DiskFile, display_key, display_path
from chromatica_watch.core.records import LiveFile, Relocated, RootRecord

if TYPE_CHECKING:
    from chromatica_watch.storage.catalog import Catalog

WATCHED, OFFLINE, RETIRED = "watched", "offline", "retired"
RELOCATE_SAMPLE = 200
DAY_S = 86400.0


# -- pure rules ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RootView:
    """One root as `roots` and `status` show it."""

    path: str
    state: str  # watched, offline or retired
    photos: int
    failed: int
    problem: str | None = None  # why an offline root cannot be reached
    last_scan: float | None = None  # epoch seconds
    last_scan_files: int | None = None
    retired_at: float | None = None
    dropped_after: float | None = None  # when a retired root's rows go
    watch: str | None = None  # how a watched root is kept current: "events", or events and rescans (and why)

    def to_json(self) -> dict[str, Any]:
        return {"path": display_path(self.path), "state": self.state, "photos": self.photos, "failed": self.failed,
                "problem": self.problem, "last_scan": self.last_scan, "last_scan_files": self.last_scan_files,
                "retired_at": self.retired_at, "dropped_after": self.dropped_after, "watch": self.watch}


def root_views(records: Mapping[str, RootRecord], configured: Sequence[str], problems: Mapping[str, str | None],
               grace_days: float, watching: Mapping[str, str] | None = None) -> list[RootView]:
    """Configured roots in config order (each listed, even before it holds a photo), then the retired ones.
    `problems` says why a configured root is offline (None or absent: reachable); `watching` how a watched
    root is kept current."""
    views = []
    for root in configured:
        rec = records.get(root, RootRecord(root, 0, 0))
        problem = problems.get(root)
        views.append(RootView(root, OFFLINE if problem else WATCHED, rec.live, rec.failed, problem,
                              rec.last_scan, rec.last_scan_files,
                              watch=None if problem else (watching or {}).get(root)))
    for root, rec in sorted(records.items()):
        if root in configured:
            continue
        retired_at = rec.retired_at
        views.append(RootView(root, RETIRED, rec.live, rec.failed, None, rec.last_scan, rec.last_scan_files,
                              retired_at, None if retired_at is None else retired_at + grace_days * DAY_S))
    return views


def expired_roots(records: Mapping[str, RootRecord], now: float, grace_days: float) -> list[str]:
    """Retired roots whose grace period is over."""
    return sorted(r for r, rec in records.items()
                  if rec.retired_at is not None and now - rec.retired_at >= grace_days * DAY_S)


def relocation_source(disk: Mapping[bytes, DiskFile], candidates: Mapping[str, Mapping[bytes, LiveFile]]
                      ) -> tuple[str, int] | None:
    """The root (of `candidates`: roots that went missing or were retired) whose photos a newly configured
    folder holds: the one with the most files at the same relative path with the same size and mtime,
    if that is at least half of its rows. (root, files that match) or None."""
    best: tuple[str, int] | None = None
    for root, rows in sorted(candidates.items()):
        same = sum(1 for p, row in rows.items() if (f := disk.get(p)) is not None
                   and (f.size, f.mtime_ns) == (row.size, row.mtime_ns))
        if same and 2 * same >= len(rows) and (best is None or same > best[1]):
            best = (root, same)
    return best


# -- relocating ------------------------------------------------------------------------------------
@dataclass
class RelocationCheck:
    """A sample of OLD's rows looked for under NEW."""

    old: str
    new: str
    rows: int  # live rows under OLD
    sampled: int = 0
    same_stat: int = 0
    same_content: int = 0  # same size, another mtime, same bytes (a copy that did not keep times)
    missing: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)

    @property
    def found(self) -> int:
        return self.same_stat + self.same_content

    @property
    def convincing(self) -> bool:
        return self.sampled > 0 and 2 * self.found >= self.sampled

    def summary(self) -> str:
        return (f"{self.found} of {self.sampled} sampled photos of {display_path(self.old)} are in "
                f"{display_path(self.new)} ({self.same_stat} with the same size and time, {self.same_content} with "
                f"the same content), {len(self.missing)} missing, {len(self.different)} different")

    def to_json(self) -> dict[str, Any]:
        return {"old": display_path(self.old), "new": display_path(self.new), "rows": self.rows,
                "sampled": self.sampled, "same_stat": self.same_stat, "same_content": self.same_content,
                "missing": self.missing, "different": self.different}


def same_content(path: str, content_hash: str) -> bool:
    from chromatica_watch.core.hashing import hash_bytes
    from chromatica_watch.imaging.reading import read_file

    try:
        return hash_bytes(read_file(path).data) == content_hash
    except (OSError, ChromaticaError, ValueError):
        return False


def check_relocation(catalog: Catalog, old: str, new: str, sample: int = RELOCATE_SAMPLE) -> RelocationCheck:
    """Look for a sample of OLD's rows under NEW: stat only, and a read (no decode) when only the mtime
    differs. Raises UsageError when there is nothing to relocate or nowhere to relocate it to."""
    if old == new:
        raise UsageError(f"{display_path(old)} is already where its photos are")
    records = catalog.root_records()
    if old not in records or not records[old].live:
        known = ", ".join(display_path(r) for r, rec in records.items() if rec.live) or "none"
        raise UsageError(f"the index holds no photos under {display_path(old)} (its folders: {known})")
    if not os.path.isdir(new):
        raise UsageError(f"{display_path(new)} is not a folder")
    check = RelocationCheck(old, new, records[old].live)
    newb = os.fsencode(new)
    for rel, row in catalog.sample_live(old, sample).items():
        check.sampled += 1
        where = os.path.join(newb, rel)
        try:
            st = os.stat(where)
        except OSError:
            check.missing.append(display_key((new, rel)))
            continue
        if (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns):
            check.same_stat += 1
        elif st.st_size == row.size and same_content(os.fsdecode(where), row.content_hash):
            check.same_content += 1
        else:
            check.different.append(display_key((new, rel)))
    return check


def relocate(catalog: Catalog, old: str, new: str, *, dry_run: bool, force: bool,
             rewrite: Callable[[str, str], Relocated]) -> dict[str, Any]:
    """Check a sample, refuse an unconvincing relocate (unless forced), then `rewrite` (the catalog's own
    relocate, or the daemon's store, which also updates its live index). The report, as JSON."""
    check = check_relocation(catalog, old, new)
    if not check.convincing and not force:
        raise UsageError(f"refusing to relocate: {check.summary()}; check the folder, or use --force")
    report: dict[str, Any] = {"check": check.to_json(), "summary": check.summary(), "dry_run": dry_run,
                              "moved": 0, "superseded": 0}
    if not dry_run:
        done = rewrite(old, new)
        report.update(moved=done.moved, superseded=len(done.superseded))
    return report


def root_problem(root: str) -> str | None:
    """Why a configured root cannot be watched now, or None when it is a readable folder."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return "missing or unmounted"
    except OSError as exc:
        return f"cannot be reached: {exc.strerror}"
    if not stat_mod.S_ISDIR(st.st_mode):
        return "not a folder"
    if not os.access(root, os.R_OK | os.X_OK):
        return "not readable (permission denied)"
    return None
