"""The bound on example images the web app decodes: a few at a time, and a pixel budget between them.

An example image is decoded in the daemon's own process, on a request's thread. Its bytes are small and
its pixels need not be (a 17 KB PNG can declare 12000 x 12000: ~300 MB decoded), so the pixels are
counted from the header before anything is decoded (`imaging.headers.declared_size`). An image declaring
more than the budget is too large (413); one that does not fit beside the decodes in progress, or that
comes while every slot is taken, is refused at once as busy (503): never queued, so that a burst of
uploads cannot hold the request threads or the memory of the machine.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from chromatica_watch.core.errors import ChromaticaError

UPLOAD_SLOTS = 2  # example images in hand at once, read or decoded
BUSY = "busy: the daemon is reading another example image; try again in a moment"


class Busy(ChromaticaError):
    """No room for another example image now: nothing was done; try again in a moment."""


class TooLarge(ChromaticaError):
    """An example image declaring more pixels than the budget: refused before decoding."""


class DecodeGate:
    """At most `slots` example images in hand at once, and the pixels their decodes declare at most
    `pixel_budget` between them (the daemon's `max_pixels`: as much as one photo it indexes may hold).
    Safe from any thread; nothing blocks."""

    def __init__(self, pixel_budget: int, slots: int = UPLOAD_SLOTS) -> None:
        self.pixel_budget = pixel_budget
        self._lock = threading.Lock()
        self._free = slots
        self._pixels = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """One example image in hand, from before its bytes are read; Busy when every slot is taken."""
        with self._lock:
            if self._free == 0:
                raise Busy(BUSY)
            self._free -= 1
        try:
            yield
        finally:
            with self._lock:
                self._free += 1

    @contextlib.contextmanager
    def pixels(self, size: tuple[int, int] | None) -> Iterator[None]:
        """A decode of an image of this declared size (None: unknown, counted as the whole budget);
        TooLarge past the budget, Busy when it does not fit beside the decodes in progress."""
        count = self.pixel_budget if size is None else size[0] * size[1]
        if size is not None and count > self.pixel_budget:
            raise TooLarge(f"the image is too large: {size[0]}x{size[1]} = {count:,} pixels, more than the "
                           f"{self.pixel_budget:,} this app reads (max_pixels); search with a smaller copy of it")
        with self._lock:
            if self._pixels + count > self.pixel_budget:
                raise Busy(BUSY)
            self._pixels += count
        try:
            yield
        finally:
            with self._lock:
                self._pixels -= count
