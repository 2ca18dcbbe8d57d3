"""chromatica-watch: a daemon that keeps a CIE Lab color-search index of a photo folder live.

The Python API (see `chromatica_watch.access.api`)::

    from chromatica_watch import search
    matches = search(colors=["#ff8800:0.7", "#0044ff:0.3"], k=5)
    swatches = palette()["swatches"]  # the colours most of the library's photos hold
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from chromatica_watch.access.api import Match, palette, parse_filters, query_histogram, search, search_index_dir
    from chromatica_watch.core.errors import ChromaticaError, UsageError

# Loaded on first use: the CLI's `status` and the decoding workers import this package too, and must
# not pay for DuckDB, FAISS and OpenCV they never touch.
_LAZY = {"Match": "access.api", "query_histogram": "access.api", "search": "access.api",
         "search_index_dir": "access.api", "palette": "access.api", "parse_filters": "access.api",
         "ChromaticaError": "core.errors", "UsageError": "core.errors"}

__all__ = ["ChromaticaError", "Match", "UsageError", "__version__", "palette", "parse_filters", "query_histogram",
           "search", "search_index_dir"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
