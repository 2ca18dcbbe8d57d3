"""The Python API: find photos by colour or by an example image.

    from chromatica_watch import search

    for match in search(colors=["#ff8800:0.7", "#0044ff:0.3"], k=5):
        print(match.path, f"{match.similarity:.2f}", match.dominant_colors)

    search(image="beach.jpg")                      # photos whose colours look like this one's
    search(colors="#0a8", index_dir="./my-index")  # an index made by `chromatica-watch build`

While the daemon runs, the query goes to it over its Unix socket: DuckDB lets one process write or
several read, never both, and the daemon is the writer. With no daemon, the index directory is
opened read-only for this one query. Both ways give the same results: the daemon's answer and the
local one pass through the same JSON form.

Bad queries raise `chromatica_watch.UsageError` (a `ChromaticaError`) naming what was wrong.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chromatica_watch.access.remote import request
from chromatica_watch.core import config as config_mod
from chromatica_watch.core.config import Config
from chromatica_watch.core.defaults import DEFAULT_MAX_DIMENSION, DEFAULT_MAX_PIXELS
from chromatica_watch.core.errors import DaemonNotRunning, IndexDirBusy, UsageError
from chromatica_watch.search.query import color_query_histogram, image_query_histogram, parse_colors
from chromatica_watch.search.readonly import open_readonly
from chromatica_watch.search.searcher import DEFAULT_K, DEFAULT_K_CANDIDATES, Searcher

logger = logging.getLogger(__name__)

# Between the daemon opening its catalog and opening its socket, neither way answers: retry that long.
DAEMON_STARTING_GRACE = 5.0


@dataclass(frozen=True)
class Match:
    """One search result: the file, how close its colours are, and the colours themselves."""

    path: str  # absolute
    relative_path: str  # to its watched root
    root: str
    id: int
    score: float  # Earth Mover's Distance in CIE delta E: 0 = the same colours, lower is closer
    similarity: float  # exp(-score / 20): 1 = the same colours
    dominant_colors: tuple[tuple[str, float], ...]  # ('#rrggbb', share of the image), largest first
    offline: bool = False  # its folder is not reachable now (an unplugged drive)
    sidecars: tuple[str, ...] = ()  # grouped searches: the other files of its RAW+JPEG pair (absolute)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Match:
        return cls(path=str(data["path"]), relative_path=str(data["relative_path"]), root=str(data["root"]),
                   id=int(data["id"]), score=float(data["score"]), similarity=float(data["similarity"]),
                   dominant_colors=tuple((str(c["hex"]), float(c["share"])) for c in data["dominant_colors"]),
                   offline=bool(data.get("offline", False)),
                   sidecars=tuple(str(p) for p in data.get("sidecars", ())))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "relative_path": self.relative_path, "root": self.root, "id": self.id,
                "score": self.score, "similarity": self.similarity,
                "dominant_colors": [{"hex": h, "share": s} for h, s in self.dominant_colors],
                "offline": self.offline, "sidecars": list(self.sidecars)}


def query_histogram(colors: Sequence[str] | str | None = None, image: str | Path | None = None, *,
                    max_dimension: int = DEFAULT_MAX_DIMENSION, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The 1152-bin histogram of a query: weighted colours ('#ff8800:0.7') or an example image."""
    if (colors is None) == (image is None):
        raise UsageError("give colors or an example image to search by (one of the two)")
    if image is not None:
        return image_query_histogram(str(image), max_dimension, max_pixels)
    return color_query_histogram(parse_colors([colors] if isinstance(colors, str) else list(colors or [])))


def search_index_dir(index_dir: Path, query: np.ndarray, k: int = DEFAULT_K, *,
                     max_dimension: int = DEFAULT_MAX_DIMENSION, candidates: int = DEFAULT_K_CANDIDATES,
                     searchable: Sequence[str] | None = None, group_sidecars: bool = False) -> list[Match]:
    """Search an index directory nobody is writing to, read-only: the photos of the `searchable` roots
    (default: every root the daemon has not retired)."""
    catalog, live = open_readonly(Path(index_dir), max_dimension, searchable)
    with catalog:
        results = Searcher(catalog, live, candidates).search(query, k, group_sidecars=group_sidecars)
    return [Match.from_json(r.to_json()) for r in results]


def search_daemon(socket_path: Path, query: np.ndarray, k: int = DEFAULT_K,
                  group_sidecars: bool = False) -> list[Match]:
    """Ask the running daemon; raises DaemonNotRunning when none answers."""
    response = request(socket_path, {"op": "search", "histogram": query.tolist(), "k": k,
                                     "group_sidecars": group_sidecars})
    return [Match.from_json(r) for r in response["results"]]


def search(colors: Sequence[str] | str | None = None, image: str | Path | None = None, *, k: int = DEFAULT_K,
           config: Config | None = None, index_dir: str | Path | None = None,
           group_sidecars: bool = False) -> list[Match]:
    """The k photos whose colours best match the query, best first.

    `config` defaults to the one the daemon would read (CHROMATICA_WATCH_CONFIG, environment, built-in
    defaults). `index_dir` searches that directory read-only instead of the daemon's index.
    `group_sidecars`: a camera's RAW and the JPEG beside it are one result (the other in `sidecars`).
    """
    cfg = config if config is not None else config_mod.load()
    query = query_histogram(colors, image, max_dimension=cfg.max_dimension, max_pixels=cfg.max_pixels)
    if index_dir is not None:
        return search_index_dir(Path(index_dir), query, k, max_dimension=cfg.max_dimension,
                                candidates=cfg.search_candidates, group_sidecars=group_sidecars)
    return search_configured(cfg, query, k, group_sidecars=group_sidecars)


def search_configured(cfg: Config, query: np.ndarray, k: int, clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep, *, group_sidecars: bool = False) -> list[Match]:
    """The daemon if it answers, else the index dir read-only; a daemon still starting is waited for."""
    deadline = clock() + DAEMON_STARTING_GRACE
    while True:
        try:
            return search_daemon(cfg.socket_path, query, k, group_sidecars)
        except DaemonNotRunning:
            pass
        try:
            return search_index_dir(Path(cfg.index_dir), query, k, max_dimension=cfg.max_dimension,
                                    candidates=cfg.search_candidates, searchable=cfg.roots,
                                    group_sidecars=group_sidecars)
        except IndexDirBusy:
            if clock() >= deadline:
                raise
            logger.debug("catalog busy and no socket yet (daemon starting?); retrying")
            sleep(0.1)
