"""What the CLI and the Python API can do with an index, whoever holds it: `IndexAccess`.

Two implementations: `remote.DaemonIndex` (the running daemon, over its socket) and `local.LocalIndex`
(the index directory opened by this process). `reach.use_index` chooses between them. Both return the
same JSON-shaped data, so a caller never needs to know which one answered, except where the outcome
itself differs (`is_daemon`: a retry queued now, or failure records cleared for the daemon's next start).

The daemon's status is not here: `status` judges the daemon's own answer *and* the saved status.json
together (see `remote.ask_status` and `daemon.status.judge`), it never picks one of the two.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for the annotations: reaching the daemon must not load numpy
    import numpy as np

    from chromatica_watch.access.match import Match
    from chromatica_watch.search.ask import Ask, Filters


class IndexAccess(ABC):
    """One index, and the operations every way of reaching it offers."""

    is_daemon: bool  # True: the running daemon answers, and makes every change itself (its catalog's writer)

    @abstractmethod
    def search(self, query: np.ndarray, k: int, group_sidecars: bool = False) -> list[Match]:
        """The k photos closest to a query histogram (1152 bins), best first."""

    @abstractmethod
    def find(self, ask: Ask, k: int, group_sidecars: bool = False) -> tuple[list[Match], int]:
        """Any search (colours to contain or avoid, filters, a whole palette): the k best, and how many photos
        the filters could not judge yet (their headers or colours not read)."""

    @abstractmethod
    def palette(self, filters: Filters, top: int) -> dict[str, Any]:
        """The colours held by the most photos passing `filters`: {"photos", "pending", "swatches": [{"hex",
        "lab", "photos", "share"}]}, most held first (`search.browse.library_palette`)."""

    @abstractmethod
    def failures(self) -> list[dict[str, Any]]:
        """The files that could not be indexed (`Failure.to_json` each)."""

    @abstractmethod
    def retry_failed(self) -> int:
        """Give the failed files another try; how many."""

    @abstractmethod
    def compact(self) -> tuple[int, int]:
        """Rebuild the live index without its tombstones: (vectors before, after)."""

    @abstractmethod
    def roots(self) -> list[dict[str, Any]]:
        """The folders the index holds photos of, watched, offline or retired (`RootView.to_json` each)."""

    @abstractmethod
    def relocate(self, old: str, new: str, *, dry_run: bool, force: bool) -> dict[str, Any]:
        """The stored paths of root OLD become NEW's, reading no image; the report, as JSON."""

    @abstractmethod
    def keywords(self, action: str, folder: str | None, *, dry_run: bool) -> dict[str, Any]:
        """Write ("write") or take out ("remove") the colour keywords in the XMP sidecars of the indexed photos
        (of every root, or under `folder`, an absolute path); the report (`KeywordReport.to_json`)."""
