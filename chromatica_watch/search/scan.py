"""Searches answered by scanning the search table: colours a photo should contain, colours to avoid, filters.

1. The filters become a mask over the table's rows (vectorized: folder codes, date range, camera codes,
   orientation, tone), searchable roots and live rows only.
2. Colours to contain: every kept row gets a lower bound of its score from its coarse colour cells
   (`contain.score_lower`, one compiled pass); the WINDOW rows with the best bounds get tighter bounds and
   an estimate from their heaviest bins (`contain.score_top`), and are scored exactly on their histograms in
   that order, a round at a time, until the k-th best exact score is no worse than the best bound left: then
   the answer is the exact top k, as a scan of every histogram would give it. Bounds tie when many photos
   could hold every colour (a common grey, small shares): then at most EXACT_LIMIT rows are read, the
   estimate choosing which (the agreement with a full scan is measured in bench/bench_contain.py).
3. Colours to avoid: a row whose bound is within the allowed share passes unread; the others are checked
   on their histograms as they come up as candidates.
4. Filters alone (or with colours to avoid): the newest photos taken first.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from chromatica_watch.colour import contain
from chromatica_watch.core.errors import UsageError
from chromatica_watch.search.ask import Ask, Colour, Filters
from chromatica_watch.storage.table import NO_DATE, ORIENTATIONS, TableView

ROUND = 256  # candidates scored exactly per round
# At most this many are scored exactly (and as many more read that hold too much of a colour to avoid): when
# more rows could hold every colour asked for (a common grey, and shares small enough for thousands of photos
# to qualify), the estimate from their heaviest bins picks which to score first.
EXACT_LIMIT = 512
WINDOW = 131072  # rows whose bounds are refined (from their heaviest bins) at once
Histograms = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # ids -> (ids found, (n, 1152) histograms)


@dataclass(frozen=True)
class Scored:
    """A row found: its id, its score (lower is better) and the share it holds of each colour asked about."""

    image_id: int
    score: float
    shares: tuple[float, ...]


@dataclass(frozen=True)
class Scope:
    """The rows a search may return, and how many more might pass once their details are read."""

    rows: np.ndarray  # positions in the view
    pending: int  # live photos in the searched folders whose headers (or colours) are not read yet


def scope(view: TableView, filters: Filters, searchable: Sequence[str] | None, *, colours: bool) -> Scope:
    """The positions of the rows passing `filters`, live, of searchable roots (`colours`: that need colour
    fields). Masks over every row first (cheap), then the header filters on the rows left."""
    keep = view.live.copy()
    if searchable is not None and not set(view.roots) <= set(searchable):
        keep &= _member(view.root, [n for n, root in enumerate(view.roots) if root in set(searchable)],
                        len(view.roots))
    if filters.folders:
        keep &= _member(view.folder, folder_codes(view, filters.folders), len(view.folders))
    waiting = 0
    if colours or filters.tone is not None:
        waiting += int(np.count_nonzero(keep & ~view.coloured))
        keep &= view.coloured
    if filters.tone == "monochrome":
        keep &= view.monochrome
    elif filters.tone == "colorful":
        keep &= ~view.monochrome & (view.colourfulness >= contain.COLORFUL)
    rows = np.flatnonzero(keep)
    if filters.reads_headers:
        read = view.detailed[rows]
        waiting += len(rows) - int(np.count_nonzero(read))
        rows = rows[read]
        rows = rows[_header_mask(view, filters, rows)]
    return Scope(rows, waiting)


def _header_mask(view: TableView, filters: Filters, rows: np.ndarray) -> np.ndarray:
    keep = np.ones(len(rows), bool)
    if filters.taken_after is not None or filters.taken_before is not None:
        taken = view.taken[rows]
        keep &= taken != NO_DATE
        if filters.taken_after is not None:
            keep &= taken >= int(np.ceil(filters.taken_after))
        if filters.taken_before is not None:
            keep &= taken < int(np.ceil(filters.taken_before))
    if filters.camera is not None:
        wanted = filters.camera.casefold()
        codes = [n for n, name in enumerate(view.cameras) if wanted in name.casefold()]
        keep &= _member(view.camera[rows], codes, len(view.cameras))
    if filters.orientation is not None:
        keep &= view.orientation[rows] == ORIENTATIONS.index(filters.orientation)
    return keep


def _member(codes: np.ndarray, wanted: Sequence[int], size: int) -> np.ndarray:
    """codes in `wanted` (codes below `size`; -1 is in none), by a lookup table: one gather for a million rows
    where np.isin sorts them."""
    table = np.zeros(size + 1, bool)  # the last entry answers -1
    table[np.asarray(wanted, np.intp)] = True
    return np.take(table, codes, mode="wrap")  # 2x faster than table[codes] on int32 codes (no intp copy)


def folder_codes(view: TableView, folders: Sequence[str]) -> list[int]:
    """The view's folder codes under any of these folders (absolute paths) or matching any glob."""
    codes: set[int] = set()
    for folder in folders:
        codes |= _codes_of(view.roots, view.folders, folder)
    return sorted(codes)


@functools.lru_cache(maxsize=64)
def _codes_of(roots: tuple[str, ...], folders: tuple[tuple[int, bytes], ...], folder: str) -> frozenset[int]:
    """One `--in`'s folder codes, kept while the view's folders are the same (a glob over ten thousand
    folders takes ~20 ms)."""
    absolute = _absolute_folders(roots, folders)
    if any(c in folder for c in "*?["):
        pattern = re.compile(fnmatch.translate(folder).encode("utf-8", "surrogateescape"))
        found = frozenset(n for n, path in enumerate(absolute) if _matches_glob(pattern, path))
        if not found:
            raise UsageError(f"--in {folder!r} matches no folder of the index")
        return found
    target = _as_under_a_root(os.fsencode(os.path.normpath(folder)), roots)
    if not _near_a_root(target, roots):
        raise UsageError(f"--in {folder}: not a folder under a watched root (roots: {', '.join(roots) or 'none'})")
    return frozenset(n for n, path in enumerate(absolute) if path == target or path.startswith(target + b"/"))


@functools.lru_cache(maxsize=4)
def _absolute_folders(roots: tuple[str, ...], folders: tuple[tuple[int, bytes], ...]) -> list[bytes]:
    """Each folder code's absolute path (kept for the last few views: ten thousand folders take ~5 ms)."""
    return [os.path.join(os.fsencode(roots[r]), rel) if rel else os.fsencode(roots[r]) for r, rel in folders]


def _matches_glob(pattern: re.Pattern[bytes], path: bytes) -> bool:
    """A glob matches a folder, or one of the folders above it (so its photos and those below are in)."""
    while path and path != b"/":
        if pattern.match(path):
            return True
        path = os.path.dirname(path)
    return False


def _as_under_a_root(folder: bytes, roots: Sequence[str]) -> bytes:
    """The folder as the catalog names it: a path reached through a link (the root's real path, or a link to
    a folder in it) is rewritten under the root it resolves into."""
    if _near_a_root(folder, roots):
        return folder
    real = os.path.realpath(folder)
    for root in map(os.fsencode, roots):
        root_real = os.path.realpath(root)
        if real == root_real or real.startswith(root_real + b"/"):
            return root + real[len(root_real):]
    return folder


def _near_a_root(folder: bytes, roots: Sequence[str]) -> bool:
    for root in map(os.fsencode, roots):
        if folder == root or folder.startswith(root + b"/") or root.startswith(folder.rstrip(b"/") + b"/"):
            return True
    return False


class TableSearch:
    """One search over a view of the table; `histograms` reads candidates' histograms by id."""

    def __init__(self, view: TableView, histograms: Histograms) -> None:
        self.view = view
        self.histograms = histograms

    def contains(self, ask: Ask, rows: np.ndarray, k: int) -> list[Scored]:
        """The exact top k rows for the colours they should contain (and avoid), best first."""
        wanted = [c.wanted for c in ask.contains]
        bounds = contain.score_lower(self.view.palette, wanted, rows)
        # Rows holding nothing near any colour all have the worst bound: left out, unless too few others exist.
        hopeless = bounds >= np.float32(1.0 + contain.SHADE_WEIGHT - 1e-4)
        if int((~hopeless).sum()) >= k + ROUND:
            rows, bounds = rows[~hopeless], bounds[~hopeless]
        clear = self._clear(ask.avoid, rows)

        def exact(ids: np.ndarray, hists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            score, shares = contain.containment_score(hists, wanted)
            return score, shares

        def refine(head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Tighter bounds and an estimate from the rows' heaviest bins (the coarse bounds of thousands of
            rows tie when that many could hold every colour)."""
            estimate, bound = contain.score_top(self.view.top_bins, self.view.top_shares, rows[head], wanted)
            bound = np.maximum(bound, bounds[head])
            return bound, (bound + estimate) / 2

        return self._rounds(rows, bounds, clear, ask.avoid, k, exact, limit=EXACT_LIMIT, refine=refine,
                            window=WINDOW)

    def browse(self, ask: Ask, rows: np.ndarray, k: int) -> list[Scored]:
        """Filters alone (and colours to avoid): the newest photos taken first, then the newest indexed."""
        taken = self.view.taken[rows].astype(np.float64)
        order_key = -np.where(taken == NO_DATE, -np.inf, taken) - self.view.ids[rows] * 1e-12
        clear = self._clear(ask.avoid, rows)

        def exact(ids: np.ndarray, hists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            at = self.view.positions(ids)
            t = self.view.taken[at].astype(np.float64)
            return -np.where(t == NO_DATE, -np.inf, t) - ids * 1e-12, np.zeros((len(ids), 0))

        return self._rounds(rows, order_key, clear, ask.avoid, k, exact, reads=bool(ask.avoid))

    def _clear(self, avoid: Sequence[Colour], rows: np.ndarray) -> np.ndarray:
        """Rows certainly within every avoided colour's share (their bound says so): no read needed."""
        clear = np.ones(len(rows), bool)
        for colour in avoid:
            clear &= contain.held_upper(self.view.palette, colour.lab, rows) <= colour.share
        return clear

    def _rounds(self, rows: np.ndarray, bounds: np.ndarray, clear: np.ndarray, avoid: Sequence[Colour], k: int,
                exact: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], *, reads: bool = True,
                limit: int | None = None, window: int | None = None,
                refine: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None) -> list[Scored]:
        """Score the rows in order of their bounds, a round at a time, until no bound left can beat the k-th
        (or `limit` rows were scored). The rows are taken a window at a time (the best bounds first; `refine`
        gives a window's rows tighter bounds and the order to score them in): a million rows are never
        sorted whole."""
        best = _Best(k)
        done = np.zeros(len(rows), bool)
        scored = read = 0  # rows scored (passing the colours to avoid), rows read
        # Rows holding too much of a colour to avoid are read too: up to as many again.
        read_limit = None if limit is None else limit * (2 if avoid else 1)
        take = min(len(rows), window or max(4 * ROUND, 4 * k))
        while True:
            window_rows, floor = _lowest(bounds, take)  # every row outside has a bound of at least floor
            window_rows = window_rows[~done[window_rows]]
            tight, order = (bounds[window_rows], bounds[window_rows]) if refine is None else refine(window_rows)
            # Only as many as may still be scored are put in order (a window can hold 100,000 rows); the
            # others' tight bounds still count against stopping early.
            budget = len(window_rows) if read_limit is None else min(len(window_rows), read_limit - read)
            pick, spare = _best_first(order, tight, budget)
            head, tight = window_rows[pick], tight[pick]
            beyond = min(floor, spare)
            left = np.minimum.accumulate(tight[::-1])[::-1] if len(head) else np.zeros(0)
            for start in range(0, len(head), ROUND):
                chunk = head[start:start + ROUND]
                done[chunk] = True
                found = self._score(self.view.ids[rows[chunk]], clear[chunk], avoid, exact, reads)
                best.add(*found)
                scored, read = scored + len(found[0]), read + len(chunk)
                rest = min(float(left[start + ROUND]) if start + ROUND < len(head) else np.inf, beyond)
                if (best.full() and best.worst() <= rest) or (limit is not None and scored >= limit) or \
                        (read_limit is not None and read >= read_limit):
                    return best.scored()
            if take >= len(rows):
                return best.scored()
            take = min(len(rows), take * 4)

    def _score(self, ids: np.ndarray, clear: np.ndarray, avoid: Sequence[Colour],
               exact: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
               read: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, scores, shares) of the rows passing the colours to avoid."""
        if read or not clear.all():
            got, hists = self.histograms(ids)
        else:
            got, hists = ids, np.zeros((len(ids), 0), np.float32)
        if avoid:
            ok = np.ones(len(got), bool)
            for colour in avoid:
                ok &= contain.held(hists, colour.lab) <= colour.share
            got, hists = got[ok], hists[ok]
        if not len(got):  # none read back, or every one holds too much of a colour to avoid
            return got, np.zeros(0, np.float64), np.zeros((0, 0), np.float64)
        scores, shares = exact(got, hists)
        return got, np.asarray(scores, np.float64), np.asarray(shares, np.float64).reshape(len(got), -1)


def _best_first(order: np.ndarray, tight: np.ndarray, budget: int) -> tuple[np.ndarray, float]:
    """(positions of the `budget` lowest of `order`, lowest first; the lowest `tight` of the others)."""
    if budget >= len(order):
        return np.argsort(order, kind="stable"), np.inf
    pick = np.argpartition(order, budget - 1)[:budget]
    others = np.ones(len(order), bool)
    others[pick] = False
    return pick[np.argsort(order[pick], kind="stable")], float(tight[others].min())


def _lowest(values: np.ndarray, take: int) -> tuple[np.ndarray, float]:
    """(positions of about the `take` lowest values (at least `take`; all of them when fewer), a floor: no
    value outside them is lower). A threshold from a sample first: an argpartition of a million values for
    30,000 of them costs 25 ms, this a few."""
    if take >= len(values):
        return np.arange(len(values)), np.inf
    sample = values[:: max(1, len(values) // 20_000)]
    threshold = np.quantile(sample, min(1.0, 1.5 * take / len(values)))
    head = np.flatnonzero(values <= threshold)
    if take <= len(head) <= 2 * take:
        return head, float(threshold)  # the others are above it
    if len(head) < take:
        head = np.argpartition(values, take - 1)[:take]
    else:
        head = head[np.argpartition(values[head], take - 1)[:take]]
    return head, float(values[head].max())  # the others are no lower than the take-th lowest


class _Best:
    """The k best (lowest score, then lowest id) seen so far, as arrays."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.ids = np.zeros(0, np.int64)
        self.scores = np.zeros(0, np.float64)
        self.shares = np.zeros((0, 0), np.float64)

    def add(self, ids: np.ndarray, scores: np.ndarray, shares: np.ndarray) -> None:
        if not len(ids):
            return
        if not len(self.ids):
            self.shares = np.zeros((0, shares.shape[1]), np.float64)
        ids, scores = np.concatenate([self.ids, ids]), np.concatenate([self.scores, scores])
        shares = np.concatenate([self.shares, shares])
        keep = np.lexsort((ids, scores))[:self.k]
        self.ids, self.scores, self.shares = ids[keep], scores[keep], shares[keep]

    def full(self) -> bool:
        return len(self.ids) >= self.k

    def worst(self) -> float:
        return float(self.scores[-1])

    def scored(self) -> list[Scored]:
        return [Scored(int(i), float(s), tuple(float(v) for v in row))
                for i, s, row in zip(self.ids.tolist(), self.scores.tolist(), self.shares, strict=True)]
