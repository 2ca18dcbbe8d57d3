"""Which image formats this install can read, and the package that brings each one.

Looked up without importing any decoder plugin (importlib.util.find_spec, and Pillow's own feature
table for AVIF), so `chromatica-watch formats` and the daemon's start-up check cost nothing and change
nothing: the decoders (decoders.py) register plugins themselves, once, when they first meet such a file.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

from chromatica_watch.core.filetypes import (
    AVIF_EXTENSIONS,
    BASIC_EXTENSIONS,
    HEIF_EXTENSIONS,
    JXL_EXTENSIONS,
    RAW_EXTENSIONS,
)


@dataclass(frozen=True)
class FormatSupport:
    key: str  # "basic", "heif", "avif", "jxl", "raw"
    name: str
    extensions: tuple[str, ...]
    package: str  # the PyPI distribution that brings it
    install: str  # what to run when it is missing
    available: bool
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {"key": self.key, "name": self.name, "extensions": list(self.extensions), "package": self.package,
                "install": self.install, "available": self.available, "note": self.note}

    @property
    def missing_reason(self) -> str:
        """The failure reason of a file of this format while its library is missing."""
        return (f"{self.name} ({', '.join(self.extensions)}) cannot be read: the {self.package} package is not "
                f"installed ({self.install})")


def _module_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _pillow_avif() -> bool:
    try:
        from PIL import features
        return bool(features.check("avif"))
    except Exception:  # an old or broken Pillow: no AVIF
        return False


def _sorted(exts: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted(exts))


@functools.lru_cache(maxsize=1)
def format_support() -> tuple[FormatSupport, ...]:
    """Every format the scanner looks for, in the order `chromatica-watch formats` lists them."""
    return (
        FormatSupport("basic", "JPEG, PNG, BMP, TIFF, WebP, GIF", _sorted(BASIC_EXTENSIONS), "opencv-python-headless",
                      "a core dependency", _module_installed("cv2"),
                      "animations (GIF, APNG, animated WebP): the first frame"),
        FormatSupport("heif", "HEIC/HEIF", _sorted(HEIF_EXTENSIONS), "pillow-heif", "pip install pillow-heif",
                      _module_installed("pillow_heif"), "the primary image"),
        FormatSupport("avif", "AVIF", _sorted(AVIF_EXTENSIONS), "pillow",
                      "pip install --upgrade 'pillow>=11.2' (built with libavif)", _pillow_avif(),
                      "Pillow's own AVIF support; animations: the first frame"),
        FormatSupport("jxl", "JPEG XL", _sorted(JXL_EXTENSIONS), "pillow-jxl-plugin",
                      "pip install pillow-jxl-plugin", _module_installed("pillow_jxl")),
        FormatSupport("raw", "camera RAW", _sorted(RAW_EXTENSIONS), "rawpy", "pip install rawpy",
                      _module_installed("rawpy"),
                      "the embedded preview (what the camera rendered) when large enough, else a half-size demosaic"),
    )


def support_for(ext: str) -> FormatSupport | None:
    """The format an extension ('.heic') belongs to, or None for an extension that is no image's."""
    ext = ext.lower()
    return next((f for f in format_support() if ext in f.extensions), None)


def support(key: str) -> FormatSupport:
    """The format of that key ("heif", "avif", "jxl", "raw", "basic")."""
    return next(f for f in format_support() if f.key == key)


def missing_format_support() -> list[str]:
    """One message per known format whose library is missing, naming the package: what the daemon logs
    once at start (files of such a format then fail with `FormatSupport.missing_reason`)."""
    return [f"{f.name} files ({' '.join(f.extensions)}) will not be indexed: the {f.package} package is "
            f"missing ({f.install})" for f in format_support() if not f.available]
