"""Colour keywords for indexed photos, written to (or removed from) their XMP sidecars: what
`chromatica-watch keywords write|remove` does, in the daemon (which also writes them as it indexes, with
`keywords = "xmp"`) or, with no daemon, on the index dir opened read-only here.

A photo's keywords are its main colour terms (`colour.terms.main_terms`) from the histogram the catalog holds:
no photo is read. A sidecar that cannot be read as XMP is a failure record keyed by the sidecar's own path
(`failed` lists it; the daemon records it, the CLI alone only reports it). A full disk (or a quota, a
read-only or failing disk) stops the run at the first sidecar it refuses, which is left as it was: one line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chromatica_watch.colour.terms import TERMS, main_terms
from chromatica_watch.core.errors import UsageError
from chromatica_watch.core.fsutil import is_storage_error
from chromatica_watch.core.paths import Key, absolute_key, display_key, display_path, rel_key
from chromatica_watch.core.records import Failure
from chromatica_watch.imaging.sidecars import Outcome, SidecarUnreadable, remove_keywords, sidecar_path, write_keywords
from chromatica_watch.storage.catalog import Catalog

logger = logging.getLogger(__name__)

ACTIONS = ("write", "remove")
CHUNK = 512  # histograms read from the catalog at once


@dataclass
class KeywordReport:
    """What a run did: sidecars written (made or changed), unchanged, with our keywords removed (deleted:
    those that held nothing else), failures (each a record keyed by the sidecar), and the storage error that
    stopped it, if one did."""

    action: str
    dry_run: bool
    photos: int = 0
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    deleted: int = 0
    failed: list[Failure] = field(default_factory=list)
    done: list[Key] = field(default_factory=list)  # sidecars now fine: their failure records, if any, go
    stopped: str | None = None

    def count(self, outcome: Outcome) -> None:
        if outcome.action in ("written", "unchanged", "removed", "deleted"):
            setattr(self, outcome.action, getattr(self, outcome.action) + 1)

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "dry_run": self.dry_run, "photos": self.photos, "written": self.written,
                "unchanged": self.unchanged, "removed": self.removed, "deleted": self.deleted,
                "failed": [f.to_json() for f in self.failed], "stopped": self.stopped}


def terms_of(hist: np.ndarray) -> list[str]:
    return [t for t, _ in main_terms(hist)]


def sidecar_key(key: Key, naming: str) -> Key:
    """The (root, relative path) of a photo's sidecar: what its failure record is keyed by."""
    return key[0], sidecar_path(key[1], naming)


def is_sidecar_record(path: bytes) -> bool:
    """Whether a failure record is a sidecar's (no photo is named .xmp)."""
    return path.lower().endswith(b".xmp")


def update_one(key: Key, hist: np.ndarray | None, action: str, naming: str, dry_run: bool = False) -> Outcome:
    """Write (with the terms of `hist`) or remove one photo's colour keywords. Raises SidecarUnreadable, and
    OSError when the sidecar cannot be written (the old one is then left whole)."""
    path = absolute_key(sidecar_key(key, naming))
    if action == "remove" or hist is None:
        return remove_keywords(path, TERMS, dry_run=dry_run)
    return write_keywords(path, terms_of(hist), TERMS, dry_run=dry_run)


def apply(report: KeywordReport, key: Key, hist: np.ndarray | None, naming: str) -> bool:
    """One photo, counted into `report`; False when a storage error stopped the run (said in `report.stopped`)."""
    side = sidecar_key(key, naming)
    report.photos += 1
    try:
        report.count(update_one(key, hist, report.action, naming, report.dry_run))
    except SidecarUnreadable as exc:
        report.failed.append(failure_of(side, exc.reason))
        return True
    except OSError as exc:
        if is_storage_error(exc):
            report.stopped = (f"{exc.strerror or exc} writing {display_key(side)}: stopped after "
                              f"{report.written + report.removed + report.deleted} sidecar(s); that one was left "
                              "as it was")
            return False
        report.failed.append(failure_of(side, f"cannot write the XMP sidecar ({exc.strerror or exc})"))
        return True
    report.done.append(side)
    return True


def failure_of(side: Key, reason: str) -> Failure:
    try:
        st = os.lstat(absolute_key(side))
        size, mtime_ns = st.st_size, st.st_mtime_ns
    except OSError:
        size, mtime_ns = 0, 0
    return Failure(side[0], side[1], size, mtime_ns, reason)


def places(folder: str | None, roots: Sequence[str]) -> list[tuple[str, bytes]]:
    """(root, folder inside it) pairs to cover: every root, or the one holding `folder` (UsageError if none)."""
    if folder is None:
        return [(r, b"") for r in roots]
    wanted = os.path.abspath(os.path.expanduser(folder))
    for root in roots:
        if wanted == root or wanted.startswith(root.rstrip("/") + "/"):
            rel = os.path.relpath(wanted, root)
            return [(root, b"" if rel == "." else rel_key(rel))]
    raise UsageError(f"{wanted} is not inside a watched folder ({', '.join(roots) or 'none configured'})")


def run(catalog: Catalog, where: Iterable[tuple[str, bytes]], action: str, naming: str, dry_run: bool = False,
        should_stop: Callable[[], bool] = lambda: False) -> KeywordReport:
    """Write or remove the colour keywords of every live photo in these places; reads no photo."""
    if action not in ACTIONS:
        raise UsageError(f"keywords: the action must be one of {', '.join(ACTIONS)}, got {action!r}")
    report = KeywordReport(action, dry_run)
    for root, folder in where:
        rows = sorted(catalog.live_under(root, folder).items())
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start:start + CHUNK]
            hists = catalog.histograms(row.image_id for _, row in chunk) if action == "write" else {}
            for path, row in chunk:
                if should_stop() or not apply(report, (root, path), hists.get(row.image_id), naming):
                    return report
    for f in report.failed:
        logger.warning("colour keywords: %s: %s", display_path(absolute_key((f.root, f.path))), f.reason)
    return report
