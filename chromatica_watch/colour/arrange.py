"""Laying a library out by colour: where a photo stands on the colour wall, and which colours a library holds.
Pure functions on what the search table keeps per photo (its heaviest fine bins and their shares, its coarse
cells), so both are computed for a million photos without reading a histogram.

The wall: photos go round the hue wheel by their dominant hue (red, orange, yellow, green, cyan, blue,
purple, pink), light to dark within a hue, and the photos without colour (greyscale, toned monochrome, or
next to no chromatic mass) apart at the end, white to black. A photo's dominant hue is the hue sector
holding the most of its chromatic mass, each bin weighted by its share *and* its chroma: a small vivid red
on a beige wall is seen red, as a person sees it; a photo of red and blue is red or blue, never the purple
a mean hue would give. The key is one number per photo, so the table keeps its photos ordered by it as they
are indexed (`insert_ordered`) and a page of the wall is a slice, never a sort.

The palette: a library "holds" a colour in as many photos as have at least `HOLDS` of their colour mass
in it (a coarse cell, ~25 L by ~40 a/b), more than in the cells around (one colour counts once); its swatch
is the colour those photos hold there (from their heaviest bins), not the cell's centre.
"""

from __future__ import annotations

import numpy as np

from chromatica_watch.colour import contain, fused
from chromatica_watch.colour.contain import CELL_OF_BIN, CENTRES, COARSE_CELLS
from chromatica_watch.colour.rerank import grid_neighbours, hex_of_lab

HUE_SECTORS = 24  # 15 degrees each, from red round the wheel
# The four bins around the neutral axis have centres 15 delta E from it (the next ring 34): what falls in them
# (greys, beiges, skin in shade) has no hue to speak of.
CHROMATIC = 20.0
GREY_BELOW = 0.05  # a photo with less chromatic mass than this is shown with the greys
HOLDS = 13  # 1/255ths of a photo (5%, as stored: rounded up) from which it holds a cell's colour
SAME_COLOUR = 10.0  # delta E between two cells' colours that are one colour
MODE_RADIUS = 24.0  # delta E: the shades a swatch's colour is the mean of
SAMPLE = 65536  # photos whose heaviest bins give the swatch colours (the counts take every photo)

_CHROMA = np.hypot(CENTRES[:, 1], CENTRES[:, 2])
_HUE = np.degrees(np.arctan2(CENTRES[:, 2], CENTRES[:, 1])) % 360.0
# Each bin's sector, and its weight as colour (0 for the bins too near the neutral axis to have a hue). A photo's
# dominant sector is the one holding most of sum(share * chroma) over its heaviest bins (fused.py: one
# compiled pass for a million photos, where numpy needed 3 s).
_SECTOR = np.where(_CHROMA >= CHROMATIC, (_HUE // (360.0 / HUE_SECTORS)).astype(np.intp), HUE_SECTORS)
_WEIGHT = np.where(_CHROMA >= CHROMATIC, _CHROMA, 0.0)
_LIGHTNESS = CENTRES[:, 0]
GREY_KEYS = float(HUE_SECTORS)  # keys from here on are the greys'


def wall_keys(top_bins: np.ndarray, top_shares: np.ndarray, monochrome: np.ndarray) -> np.ndarray:
    """float64[n]: each photo's place on the wall (sorted ascending). `top_bins`, `top_shares`: (TOP_BINS, n)
    as the search table keeps them; `monochrome`: the photos without colour of their own."""
    if not top_bins.shape[-1]:
        return np.zeros(0)
    dominant, chromatic, light_dominant, light_all = fused.dominant_sectors(
        top_bins, top_shares, _SECTOR, _WEIGHT, _LIGHTNESS, HUE_SECTORS)
    grey = np.asarray(monochrome, bool) | (chromatic < GREY_BELOW)
    lightness = np.where(grey, light_all, light_dominant)
    darkness = np.clip(1.0 - lightness / 100.0, 0.0, 0.999)  # light first within a hue
    return np.where(grey, GREY_KEYS + darkness, dominant + darkness)


def insert_ordered(order: np.ndarray, keys: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """`order` (row positions, ascending by `keys`) with `positions` (rows not in it) merged in, still
    ascending: a copy, O(n), never a sort of everything. Equal keys keep the older rows first."""
    positions = np.asarray(positions, np.int64)
    if not len(positions):
        return order
    positions = positions[np.argsort(keys[positions], kind="stable")]
    at = np.searchsorted(keys[order], keys[positions], side="right")
    return np.insert(order, at, positions)


def full_order(keys: np.ndarray) -> np.ndarray:
    """Every row position, ascending by key (ties by position)."""
    return np.argsort(keys, kind="stable").astype(np.int64)


# -- the library's colours ------------------------------------------------------------------------
def cell_counts(cells: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """int64[144]: for each coarse cell, how many of the photos at `rows` hold its colour: at least HOLDS of
    the photo in it, and more than in any neighbouring cell (one colour's shades straddle cells: it counts
    once, where most of it is). `cells`: uint8 (144, n), cell-major, as the search table keeps them."""
    return fused.peak_counts(cells, rows, _CELL_NEIGHBOURS, HOLDS)


def _cell_neighbours() -> np.ndarray:
    """int64 (144, 26): each coarse cell's neighbours (itself not), -1 after the last (`fused.peak_counts`)."""
    out = np.full((COARSE_CELLS, 26), -1, np.int64)
    for cell, near in enumerate(grid_neighbours(contain.COARSE_SHAPE)):
        others = [n for n in near if n != cell]
        out[cell, :len(others)] = others
    return out


_CELL_NEIGHBOURS = _cell_neighbours()


def bin_weights(top_bins: np.ndarray, top_shares: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """float64[1152]: how much of the photos at `rows` each fine bin holds, from their heaviest bins (at most
    SAMPLE photos, evenly spread over `rows`): where the swatches find the colours photos really have."""
    if len(rows) > SAMPLE:
        rows = rows[np.linspace(0, len(rows) - 1, SAMPLE).astype(np.intp)]
    bins = np.asarray(top_bins[:, rows], np.intp).ravel()
    return np.bincount(bins, np.asarray(top_shares[:, rows], np.float64).ravel(), minlength=len(CENTRES))


def _colour_near(weights: np.ndarray, cell: int) -> np.ndarray | None:
    """The colour photos hold around a cell: the mean of its bins, then moved (mean shift, within MODE_RADIUS)
    to the heart of the colour, whose shades soft binning spreads over neighbouring cells too."""
    own = weights * (cell == CELL_OF_BIN)
    if own.sum() <= 0:
        return None
    mean = (own @ CENTRES) / own.sum()
    for _ in range(3):
        near = weights * (np.linalg.norm(CENTRES - mean, axis=1) < MODE_RADIUS)
        mean = (near @ CENTRES) / near.sum()
    return np.asarray(mean)


def swatches(counts: np.ndarray, weights: np.ndarray, photos: int, top: int) -> list[dict[str, object]]:
    """The `top` colours held by the most photos, most first: hex, Lab, photos holding it, and their share of
    the `photos` looked at. `weights`: `bin_weights` of those photos. Cells whose colours meet (a colour at a
    cell boundary: its photos' peaks fall on either side) are one swatch: their photos add up, each photo
    having counted once."""
    found: list[tuple[np.ndarray, int]] = []
    for cell in np.argsort(-counts, kind="stable").tolist():
        if counts[cell] == 0:
            break
        lab = _colour_near(weights, cell)
        if lab is None:  # no sampled photo showed it
            continue
        same = next((n for n, (seen, _) in enumerate(found) if np.linalg.norm(seen - lab) < SAME_COLOUR), None)
        if same is None:
            found.append((lab, int(counts[cell])))
        else:
            found[same] = (found[same][0], found[same][1] + int(counts[cell]))
    found.sort(key=lambda swatch: -swatch[1])
    return [{"hex": hex_of_lab(lab), "lab": [round(float(v), 1) for v in lab], "photos": held,
             "share": round(held / max(photos, 1), 4)} for lab, held in found[:top]]
