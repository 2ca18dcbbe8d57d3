"""Whether this install's decoders turn the same bytes into the same pixels as those that made an index.

A new release of a decoder (OpenCV's libjpeg-turbo, Pillow, pillow-heif, pillow-jxl-plugin, LibRaw,
LittleCMS) may change the pixels a file decodes to, and so its histogram: an index would then hold the
histograms of two decoders side by side. So the catalog keeps a stamp of the decoders that made it: their
versions and, per format, a digest of the pixels that small reference files (data/probes/, written by
tools/make_decoder_probes.py) decode to. When a read-write open finds other versions, the references are
decoded again, and only the formats whose pixels changed have their files read again: the catalog marks
those rows stale, and the next comparison with the folder reads them like any changed file. Versions
unchanged (every start but the first after an upgrade): nothing is decoded.

A catalog made before stamps existed is taken as made by the set before constraints.txt
(`UNSTAMPED`), whose digests were recorded here: with this lock pillow-jxl-plugin 1.3.8 decodes JPEG XL
one level apart from 1.3.7 in about a third of the pixels, so those files are read again once.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from chromatica_watch.core.errors import ImageError
from chromatica_watch.core.filetypes import IMAGE_EXTENSIONS
from chromatica_watch.core.hashing import hash_bytes

if TYPE_CHECKING:
    from chromatica_watch.storage.catalog import Catalog

logger = logging.getLogger(__name__)

# The distributions whose code decodes pixels (LittleCMS comes with Pillow, libjpeg-turbo with OpenCV).
DECODER_PACKAGES = ("opencv-python-headless", "pillow", "pillow-heif", "pillow-jxl-plugin", "rawpy")
PROBE_MAX_DIMENSION = 64
_NAMES = {"basic": "JPEG, PNG, BMP, TIFF, WebP and GIF", "heif": "HEIC", "avif": "AVIF", "jxl": "JPEG XL",
          "raw": "camera RAW", "icc": "colour-managed (ICC profile)"}

# The stamp of every catalog made before stamps existed: the set the suite passed with before
# constraints.txt (opencv-python-headless 4.14.0.94, pillow 12.3.0, pillow-heif 1.8.1, pillow-jxl-plugin
# 1.3.7, rawpy 0.27.1), its digests measured with that set.
UNSTAMPED_VERSIONS = {"opencv-python-headless": "4.14.0.94", "pillow": "12.3.0", "pillow-heif": "1.8.1",
                      "pillow-jxl-plugin": "1.3.7", "rawpy": "0.27.1"}
UNSTAMPED_DIGESTS = {"avif": "f0cb40d16ffea702", "basic": "0ead55e70edb19ba", "heif": "bf5dca6891ea8784",
                     "icc": "b6d1f603bdf4b834", "jxl": "6a30fc7f91a9b7d7", "raw": "1693db71674b3e42"}
# The tested set (constraints.txt) and what it decodes the references to: an install of exactly these
# versions stamps a catalog without decoding anything. tests/test_decoder_stamp.py checks both against
# what is installed, so a lock refresh that changes either fails until they are recorded here.
LOCKED_VERSIONS = {"opencv-python-headless": "5.1.0.95", "pillow": "13.0.0", "pillow-heif": "1.9.0",
                   "pillow-jxl-plugin": "1.3.8", "rawpy": "0.28.0"}
LOCKED_DIGESTS = {"avif": "f0cb40d16ffea702", "basic": "0ead55e70edb19ba", "heif": "bf5dca6891ea8784",
                  "icc": "b6d1f603bdf4b834", "jxl": "aacadd56e259fe48", "raw": "1693db71674b3e42"}
META_KEY = "decoders"


@dataclass(frozen=True)
class DecoderStamp:
    versions: dict[str, str]
    digests: dict[str, str] = field(default_factory=dict)  # format key -> digest of its references' pixels

    def to_json(self) -> str:
        return json.dumps({"versions": self.versions, "digests": self.digests}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> DecoderStamp:
        """The stamp stored in a catalog; None or unreadable: the set before stamps existed."""
        try:
            value = json.loads(text or "null")
            return cls(dict(value["versions"]), dict(value["digests"]))
        except (ValueError, KeyError, TypeError):
            return cls(dict(UNSTAMPED_VERSIONS), dict(UNSTAMPED_DIGESTS))


def decoder_versions() -> dict[str, str]:
    """The installed version of each decoder distribution ("-" when missing); imports nothing."""
    versions = {}
    for dist in DECODER_PACKAGES:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "-"
    return versions


def _probes() -> dict[str, list[tuple[str, bytes]]]:
    """The reference files by format key (the part of their name before the first '-' or '.')."""
    found: dict[str, list[tuple[str, bytes]]] = {}
    for entry in sorted(resources.files("chromatica_watch").joinpath("data/probes").iterdir(), key=lambda e: e.name):
        key = entry.name.split(".")[0].split("-")[0]
        found.setdefault(key, []).append((entry.name, entry.read_bytes()))
    return found


def _pixels_digest(name: str, blob: bytes) -> bytes:
    from chromatica_watch.imaging.decoders import decode  # here: an index opened for writing (`build`'s
    # driver, the daemon) does not load the decoders unless the stamp must be made anew

    try:
        decoded = decode(blob, PROBE_MAX_DIMENSION, suffix="." + name.rsplit(".", 1)[-1])
    except ImageError as exc:
        return f"cannot decode: {exc.reason}".encode()  # a decoder missing here: digested as such
    parts = [np.ascontiguousarray(decoded.rgb)]
    if decoded.weights is not None:
        parts.append(np.ascontiguousarray(decoded.weights))
    return b"".join(f"{p.dtype}{p.shape}".encode() + p.tobytes() for p in parts)


def decoder_digests() -> dict[str, str]:
    """Per format key, a digest of the pixels its reference files decode to with this install."""
    return {key: hash_bytes(b"".join(_pixels_digest(name, blob) for name, blob in files))[:16]
            for key, files in _probes().items()}


def digests_for(versions: dict[str, str]) -> dict[str, str]:
    """The digests of these versions: recorded for the tested set, else decoded now (~65 ms)."""
    return dict(LOCKED_DIGESTS) if versions == LOCKED_VERSIONS else decoder_digests()


def suffixes_of(keys: list[str]) -> list[str]:
    """The file extensions whose rows a change of these formats' decoding makes stale."""
    from chromatica_watch.imaging.formats import support

    if "icc" in keys:  # any format may carry a profile
        return sorted(IMAGE_EXTENSIONS)
    return sorted({ext for key in keys for ext in support(key).extensions})


def restamp(stored: DecoderStamp) -> tuple[DecoderStamp, list[str]] | None:
    """None when this install's decoders are the stored ones; else the new stamp and the format keys
    whose pixels changed (decoded again only when versions differ)."""
    versions = decoder_versions()
    if versions == stored.versions and stored.digests:
        return None
    digests = digests_for(versions)
    changed = sorted(key for key, digest in digests.items() if stored.digests.get(key, digest) != digest)
    if changed:
        moved = ", ".join(f"{d} {stored.versions.get(d, '-')} -> {v}" for d, v in versions.items()
                          if stored.versions.get(d) != v)
        logger.warning("this install's decoders (%s) decode %s files to other pixels than those that made the "
                       "index: those files are read again", moved or "same versions",
                       ", ".join(_NAMES.get(k, k) for k in changed))
    return DecoderStamp(versions, digests), changed


def merged_stamp(stored: list[str | None]) -> str:
    """The stamp of a catalog merged from catalogs with these stamps: a format their decoders disagree on
    is stamped "mixed", so the next read-write open reads its files again with one decoder."""
    stamps = [DecoderStamp.from_json(text) for text in stored]
    versions = stamps[0].versions if all(s.versions == stamps[0].versions for s in stamps) else {}
    keys = {k for s in stamps for k in s.digests}
    digests = {k: d.pop() if len(d := {s.digests.get(k, "") for s in stamps}) == 1 else "mixed" for k in keys}
    return DecoderStamp(versions, digests).to_json()


def check_decoders(catalog: Catalog) -> int:
    """At a read-write open: stamp a new catalog; for one made by other decoders, mark the rows of the formats
    they decode differently to be read again. Returns how many rows were marked."""
    stored = catalog.meta(META_KEY)
    if stored is None and catalog.counts()["max_id"] == 0:
        stored_stamp = DecoderStamp({}, {})  # a new catalog: nothing was decoded by another set
    else:
        stored_stamp = DecoderStamp.from_json(stored)
    outcome = restamp(stored_stamp)
    if outcome is None:
        return 0
    stamp, changed = outcome
    marked = catalog.mark_stale(suffixes_of(changed), META_KEY, stamp.to_json())
    if marked:
        logger.warning("%d photos will be read again by this install's decoders", marked)
    return marked
