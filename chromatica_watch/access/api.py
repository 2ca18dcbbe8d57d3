"""The Python API: find photos by colour or by an example image.

    from chromatica_watch import search

    for match in search(colors=["#ff8800:0.7", "#0044ff:0.3"], k=5):
        print(match.path, f"{match.similarity:.2f}", match.dominant_colors)

    search(image="beach.jpg")                      # photos whose colours look like this one's
    search(colors="#0a8", index_dir="./my-index")  # an index made by `chromatica-watch build`
    search(colors="#f58214:0.25")                  # at least a quarter of the photo is this orange
    search(colors="orange", avoid=["red"], tone="colorful", folders=["~/Pictures/2024"],
           taken_after="2024-06", taken_before="2024-09", camera="pixel", orientation="landscape")
    palette(parse_filters(folders=["~/Pictures/2024"]))  # the colours most of these photos hold

While the daemon runs, the query goes to it over its Unix socket: DuckDB lets one process write or
several read, never both, and the daemon is the writer. With no daemon, the index directory is
opened read-only for this one query (`reach.use_index` chooses). Both ways give the same results:
the daemon's answer and the local one pass through the same JSON form.

Bad queries raise `chromatica_watch.UsageError` (a `ChromaticaError`) naming what was wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chromatica_watch.access.local import LocalIndex
from chromatica_watch.access.match import Match
from chromatica_watch.access.reach import use_index
from chromatica_watch.access.remote import DaemonIndex
from chromatica_watch.core import config as config_mod
from chromatica_watch.core.config import Config
from chromatica_watch.core.defaults import DEFAULT_MAX_DIMENSION, DEFAULT_MAX_PIXELS
from chromatica_watch.core.errors import UsageError
from chromatica_watch.search.ask import Ask, Filters, parse_ask
from chromatica_watch.search.ask import parse_filters as parse_filters  # the API's, for palette()
from chromatica_watch.search.browse import PALETTE_SWATCHES
from chromatica_watch.search.query import color_query_histogram, image_query_histogram, parse_colors
from chromatica_watch.search.searcher import DEFAULT_K, DEFAULT_K_CANDIDATES


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
    index = LocalIndex(Path(index_dir), max_dimension=max_dimension, candidates=candidates, roots=searchable)
    return index.search(query, k, group_sidecars)


def search_daemon(socket_path: Path, query: np.ndarray, k: int = DEFAULT_K,
                  group_sidecars: bool = False) -> list[Match]:
    """Ask the running daemon; raises DaemonNotRunning when none answers."""
    return DaemonIndex(socket_path).search(query, k, group_sidecars)


def search(colors: Sequence[str] | str | None = None, image: str | Path | None = None, *, k: int = DEFAULT_K,
           config: Config | None = None, index_dir: str | Path | None = None, group_sidecars: bool = False,
           avoid: Sequence[str] = (), folders: Sequence[str] = (), taken_after: str | None = None,
           taken_before: str | None = None, camera: str | None = None, orientation: str | None = None,
           tone: str | None = None) -> list[Match]:
    """The k photos whose colours best match the query, best first.

    `colors` with weights summing below 1 ('#f58214:0.25'), or a lone colour without a weight: photos that
    contain that much of each (the rest of the photo is free); otherwise the whole palette is matched.
    `avoid`: colours a photo may hold at most a little of ('red', or 'red:0.2' for 20%). The filters:
    `folders` (under a root, or globs), `taken_after`/`taken_before` ('2024', '2024-06', '2024-06-01'),
    `camera` (part of make and model), `orientation` ('landscape', 'portrait', 'square'), `tone`
    ('monochrome' or 'colorful'). `find` also says how many photos the filters could not judge yet.

    `config` defaults to the one the daemon would read (CHROMATICA_WATCH_CONFIG, environment, built-in
    defaults). `index_dir` searches that directory read-only instead of the daemon's index.
    `group_sidecars`: a camera's RAW and the JPEG beside it are one result (the other in `sidecars`).
    """
    cfg = config if config is not None else config_mod.load()
    if avoid or folders or taken_after or taken_before or camera or orientation or tone or \
            (colors is not None and image is None and _contains(colors)):
        histogram = None if image is None else image_query_histogram(str(image), cfg.max_dimension, cfg.max_pixels)
        ask = parse_ask([colors] if isinstance(colors, str) else list(colors or []), histogram=histogram,
                        avoid=avoid, folders=folders, taken_after=taken_after, taken_before=taken_before,
                        camera=camera, orientation=orientation, tone=tone)
        return find(ask, k, cfg, index_dir, group_sidecars=group_sidecars)[0]
    query = query_histogram(colors, image, max_dimension=cfg.max_dimension, max_pixels=cfg.max_pixels)
    if index_dir is not None:  # asked for by name: read-only here, even if it is the daemon's
        return search_index_dir(Path(index_dir), query, k, max_dimension=cfg.max_dimension,
                                candidates=cfg.search_candidates, group_sidecars=group_sidecars)
    return search_configured(cfg, query, k, group_sidecars=group_sidecars)


def _contains(colors: Sequence[str] | str) -> bool:
    from chromatica_watch.search.ask import read_colours

    return bool(read_colours([colors] if isinstance(colors, str) else list(colors))[0])


def find(ask: Ask, k: int = DEFAULT_K, config: Config | None = None, index_dir: str | Path | None = None, *,
         group_sidecars: bool = False) -> tuple[list[Match], int]:
    """Any search, as an `Ask` (`search.ask.parse_ask` makes one from what people type): the k best matches,
    and how many photos the filters could not judge yet (their headers not read yet)."""
    cfg = config if config is not None else config_mod.load()
    if index_dir is not None:
        local = LocalIndex(Path(index_dir), max_dimension=cfg.max_dimension, candidates=cfg.search_candidates)
        return local.find(ask, k, group_sidecars)
    return use_index(cfg, lambda index: index.find(ask, k, group_sidecars), ask_first=True)


def palette(filters: Filters | None = None, top: int = PALETTE_SWATCHES, config: Config | None = None,
            index_dir: str | Path | None = None) -> dict[str, Any]:
    """The library's colours: those held (at least 5% of a photo) by the most photos passing `filters`
    (`search.ask.parse_filters` makes them from what people type), as {"photos", "pending", "swatches":
    [{"hex", "lab", "photos", "share"}]}, most held first."""
    cfg = config if config is not None else config_mod.load()
    filters = filters if filters is not None else Filters()
    if index_dir is not None:
        local = LocalIndex(Path(index_dir), max_dimension=cfg.max_dimension, candidates=cfg.search_candidates)
        return local.palette(filters, top)
    return use_index(cfg, lambda index: index.palette(filters, top), ask_first=True)


def search_configured(cfg: Config, query: np.ndarray, k: int, clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep, *, group_sidecars: bool = False) -> list[Match]:
    """The configured index: the daemon if it answers, else the index dir read-only; a daemon still
    starting is waited for."""
    return use_index(cfg, lambda index: index.search(query, k, group_sidecars), ask_first=True, clock=clock,
                     sleep=sleep)
