"""What the daemon keeps of catalog reads between writes, for the threads that read: values (counts, roots,
failures) read again only after a write, and where the latest results' files are, for their thumbnails."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from chromatica_watch.search.searcher import Result, Row
from chromatica_watch.storage.catalog import Catalog

R = TypeVar("R")


class ReadCache:
    """Values read from a catalog, read again only once it has been written since (its generation moved):
    the daemon's status timer and the web app's status polls then run no query on an idle daemon.
    Safe from several threads: a value is published by one assignment, and a race only reads twice."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Catalog, int, Any]] = {}

    def get(self, catalog: Catalog, name: str, read: Callable[[], R]) -> R:
        seen = self._seen.get(name)
        if seen is not None and seen[0] is catalog and seen[1] == catalog.generation:
            return cast(R, seen[2])
        generation = catalog.generation  # before the read: a write meanwhile makes the next call read again
        value = read()
        self._seen[name] = (catalog, generation, value)
        return value


class RecentResults:
    """Where the files of the latest results are: the web app asks for each result's thumbnail right
    after a search, and a catalog lookup per thumbnail (~2 ms at 100k photos) would cost more than
    serving the cached thumbnail itself. An entry holds only while the catalog it came from has seen no
    write since (its generation): a move or a delete meanwhile sends the caller back to the catalog."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._source: tuple[object, int] | None = None  # (catalog, generation) the entries were read under
        self._rows: OrderedDict[int, Row] = OrderedDict()

    def _holds(self, source: tuple[object, int]) -> bool:
        """Whether the entries were read under `source`: the same catalog object, at the same generation."""
        return self._source is not None and self._source[0] is source[0] and self._source[1] == source[1]

    def remember(self, source: tuple[object, int], results: Sequence[Result]) -> None:
        with self._lock:
            if not self._holds(source):
                self._rows.clear()
                self._source = source
            for r in results:
                self._rows[r.id] = (r.root, r.path, True)
                self._rows.move_to_end(r.id)
            while len(self._rows) > self.capacity:
                self._rows.popitem(last=False)

    def get(self, source: tuple[object, int], image_id: int) -> Row | None:
        with self._lock:
            return self._rows.get(image_id) if self._holds(source) else None
