"""A photo's main colours as words people use: a small fixed vocabulary of basic colour terms, read from the
1152-bin Lab histogram. Pure functions, no I/O: the keyword sidecars (imaging/sidecars.py) write what
`main_terms` answers.

Each bin of the histogram is given one term, by its Lab centre:

- a bin with little chroma is achromatic: black, grey or white by its lightness (the neutral column and
  its nearest neighbours, which is where soft binning puts a grey pixel's mass: 99% of a grey photo's mass
  lands on achromatic bins). Near white a little more chroma still reads as white (cream, ivory); near
  black as black (a colour you cannot see in the dark is black to a person);
- any other bin takes the term of the nearest of a few prototypes per term (CIE76 delta E, as the rest of
  the project measures colour): sRGB colours that people name with that term, from the CSS colours and
  their common shades. Prototypes rather than hue angles because CIE Lab's hue is not a person's: blue
  (0, 0, 255) and a violet (147, 112, 219) share one Lab hue angle, and what tells them apart is where they
  lie in the whole space.

A photo's share of a term is the mass of its bins of that term. Its main terms are the (at most AT_MOST)
terms holding at least MIN_SHARE of it, most first. Judged on plain photos (tests/test_terms.py): an
orange photo is "orange" (orange and brown are told apart by lightness and chroma: burnt orange is orange,
saddle brown brown), a grey one "grey", a toned sepia photo "brown" (its dark and mid tones are; its light
tones are low-chroma warm, tan, which is brown too), a cyan or turquoise one "teal".
"""

from __future__ import annotations

import numpy as np

from chromatica_watch.colour.histogram import TOTAL_BINS, bin_centers_lab

TERMS = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "brown", "black", "grey", "white")
AT_MOST = 3  # terms kept per photo
MIN_SHARE = 0.15  # a term must hold this much of a photo to be one of its main colours

ACHROMATIC_CHROMA = 16.0  # a bin centre with less chroma (delta E from the neutral axis) has no hue
WHITE_CHROMA = 25.0  # ... near white: cream and ivory are white to a person
BLACK_CHROMA = 30.0  # ... near black
BLACK_BELOW, WHITE_FROM = 25.0, 87.0  # lightness: black below, white from (grey between)
DARKEST, LIGHTEST = 12.0, 87.0  # the bins whose lightness counts as near black, near white

# Lab (D65) of sRGB colours people name by each term (skimage.color.rgb2lab of each hex).
PROTOTYPES: dict[str, tuple[tuple[str, float, float, float], ...]] = {
    "red": (("#ff0000", 53.2, 80.1, 67.2), ("#b22222", 39.1, 55.9, 37.6), ("#8b0000", 28.1, 51.0, 41.3),
            ("#dc143c", 47.0, 70.9, 33.6), ("#c0392b", 44.7, 52.9, 39.2), ("#800000", 25.5, 48.0, 38.1)),
    "orange": (("#ff8000", 67.1, 42.8, 74.0), ("#ffa500", 74.9, 23.9, 78.9), ("#ff8c00", 69.5, 36.8, 75.5),
               ("#e67e22", 63.2, 34.4, 62.5), ("#cc5500", 51.1, 44.2, 60.8), ("#ffb366", 78.7, 20.0, 49.8)),
    "yellow": (("#ffff00", 97.1, -21.6, 94.5), ("#ffd700", 86.9, -1.9, 87.1), ("#f4d03f", 84.3, -1.7, 72.1),
               ("#ffe135", 89.6, -6.1, 80.4), ("#fff176", 94.1, -10.5, 60.2), ("#d4b000", 72.9, -0.4, 75.4)),
    "green": (("#00ff00", 87.7, -86.2, 83.2), ("#008000", 46.2, -51.7, 49.9), ("#006400", 36.2, -43.4, 41.9),
              ("#32cd32", 72.6, -67.1, 61.4), ("#228b22", 50.6, -49.6, 45.0), ("#6b8e23", 54.7, -28.2, 49.7),
              ("#90ee90", 86.5, -46.3, 37.0), ("#2e8b57", 51.5, -39.7, 20.1), ("#9acd32", 76.5, -38.0, 66.6),
              ("#556b2f", 42.2, -18.8, 30.6)),
    "teal": (("#008080", 48.3, -28.8, -8.5), ("#00ced1", 75.3, -40.0, -13.5), ("#40e0d0", 81.3, -44.1, -4.0),
             ("#20b2aa", 65.8, -37.5, -6.3), ("#00ffff", 91.1, -48.1, -14.1), ("#005f5f", 36.0, -23.3, -6.9),
             ("#7fffd4", 92.0, -45.5, 9.7)),
    "blue": (("#0000ff", 32.3, 79.2, -107.9), ("#000080", 13.0, 47.5, -64.7), ("#1e90ff", 59.4, 10.0, -63.4),
             ("#4169e1", 47.8, 26.3, -65.3), ("#4682b4", 52.5, -4.1, -32.2), ("#87ceeb", 79.2, -14.8, -21.3),
             ("#00bfff", 72.5, -17.7, -42.5), ("#191970", 15.9, 31.7, -49.6), ("#6495ed", 61.9, 9.3, -49.3)),
    "purple": (("#800080", 29.8, 58.9, -36.5), ("#8a2be2", 42.2, 69.8, -74.8), ("#9370db", 55.0, 36.8, -50.1),
               ("#4b0082", 20.5, 51.7, -53.3), ("#663399", 32.9, 42.9, -47.1), ("#ee82ee", 69.7, 56.4, -36.8),
               ("#ba55d3", 53.6, 59.1, -47.4), ("#da70d6", 62.8, 55.3, -34.4)),
    "pink": (("#ffc0cb", 83.6, 24.1, 3.3), ("#ff69b4", 65.5, 64.2, -10.6), ("#ff1493", 56.0, 84.5, -5.7),
             ("#db7093", 60.6, 45.5, 0.4), ("#ffb6c1", 81.1, 28.0, 5.0), ("#ff00ff", 60.3, 98.2, -60.8),
             ("#c71585", 44.8, 71.0, -15.2), ("#f08080", 66.2, 42.8, 19.6), ("#fa8072", 67.3, 45.2, 29.1)),
    "brown": (("#8b4513", 37.5, 26.4, 41.0), ("#964b00", 40.4, 27.5, 50.1), ("#654321", 31.6, 10.9, 26.2),
              ("#a0522d", 43.8, 29.3, 35.6), ("#d2b48c", 75.0, 5.0, 24.4), ("#c19a6b", 66.1, 8.4, 30.2),
              ("#704214", 32.7, 16.0, 34.7), ("#deb887", 77.0, 7.0, 30.0), ("#5c4033", 29.9, 10.3, 12.8)),
}


def _term_of_centre(lab: np.ndarray) -> np.ndarray:
    """int[n]: the index in TERMS of each Lab colour (rows), by the rules in the module's docstring."""
    light, chroma = lab[:, 0], np.hypot(lab[:, 1], lab[:, 2])
    names = list(PROTOTYPES)
    protos = np.array([p[1:] for n in names for p in PROTOTYPES[n]], dtype=np.float64)
    owner = np.array([TERMS.index(n) for n in names for _ in PROTOTYPES[n]], dtype=np.intp)
    nearest = ((lab[:, None, :] - protos[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    out = owner[nearest]
    achromatic = ((chroma < ACHROMATIC_CHROMA) | ((light >= LIGHTEST) & (chroma < WHITE_CHROMA))
                  | ((light < DARKEST) & (chroma < BLACK_CHROMA)))
    shade = np.where(light < BLACK_BELOW, TERMS.index("black"),
                     np.where(light >= WHITE_FROM, TERMS.index("white"), TERMS.index("grey")))
    return np.where(achromatic, shade, out).astype(np.intp)


_TERM_OF_BIN = _term_of_centre(bin_centers_lab().astype(np.float64))
_TERM_OF_BIN.setflags(write=False)


def term_of(lab: tuple[float, float, float]) -> str:
    """The term a single Lab colour is given (as a bin centre there would be)."""
    return TERMS[int(_term_of_centre(np.asarray([lab], dtype=np.float64))[0])]


def term_shares(hist: np.ndarray) -> np.ndarray:
    """float64[len(TERMS)]: the share of a photo's histogram (1152 bins) that is each term."""
    h = np.asarray(hist, dtype=np.float64).reshape(TOTAL_BINS)
    total = h.sum()
    shares = np.bincount(_TERM_OF_BIN, weights=h, minlength=len(TERMS))
    return shares / total if total > 0 else shares


def main_terms(hist: np.ndarray, at_most: int = AT_MOST, min_share: float = MIN_SHARE) -> list[tuple[str, float]]:
    """A photo's main colours: (term, share) for the terms holding at least `min_share`, most first (ties in
    the vocabulary's order), at most `at_most` of them. Empty for an empty histogram."""
    shares = term_shares(hist)
    order = sorted(range(len(TERMS)), key=lambda i: (-shares[i], i))
    return [(TERMS[i], float(shares[i])) for i in order[:at_most] if shares[i] >= min_share]
