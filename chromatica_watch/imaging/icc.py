"""Colour management: an embedded ICC profile other than sRGB (Display P3, Adobe RGB...) is converted to sRGB
after the resize and before Lab, so that a photo's colours are binned as they are shown.

The profile comes from the header without decoding anything (a JPEG's APP2 segments, a PNG's iCCP chunk;
Pillow's reading for the other formats). LittleCMS (Pillow's ImageCms) converts; the transform is built
once per profile, by its bytes, and kept (a folder of photos from one camera shares one profile).
"""

from __future__ import annotations

import functools
import io
import zlib

import numpy as np
from PIL import Image, ImageCms

from chromatica_watch.imaging.headers import PNG_SIGNATURE, jpeg_header_segments, png_chunks

_ICC_MARKER = b"ICC_PROFILE\0"


def jpeg_icc(data: bytes) -> bytes | None:
    """A JPEG's ICC profile, from its APP2 'ICC_PROFILE' segments (in their sequence order), or None.
    OpenCV's decode ignores it; the header walk finds it without decoding anything."""
    parts: dict[int, bytes] = {}
    for pos, marker in jpeg_header_segments(data):
        if marker == 0xE2:
            length = int.from_bytes(data[pos + 2:pos + 4], "big")
            body = data[pos + 4:pos + 2 + length]
            if body.startswith(_ICC_MARKER) and len(body) > 14:
                parts[body[12]] = body[14:]
    return b"".join(parts[k] for k in sorted(parts)) if parts else None


def png_icc(data: bytes) -> bytes | None:
    """A PNG's ICC profile from its iCCP chunk (name, NUL, method, zlib data), or None."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    for start, end, kind in png_chunks(data):
        if kind == b"iCCP":
            body = data[start + 8:end - 4]
            nul = body.find(b"\0")
            try:
                return zlib.decompress(body[nul + 2:]) if nul > 0 else None
            except zlib.error:
                return None
        if kind == b"IDAT":
            return None
    return None


@functools.cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.lru_cache(maxsize=64)
def _icc_transform(icc: bytes) -> ImageCms.ImageCmsTransform | None:
    """The transform from this profile to sRGB, built once per profile (by its bytes); None for a profile
    that is sRGB already, is not an RGB profile (gray, CMYK, Lab: those pixels are left as decoded) or
    does not parse (the picture is still indexed, as if untagged)."""
    if len(icc) < 132 or icc[16:20] != b"RGB ":
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(profile) or ""
        if "srgb" in description.lower().replace(" ", ""):
            return None
        return ImageCms.buildTransform(profile, _srgb_profile(), "RGB", "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def to_srgb(rgb: np.ndarray, icc: bytes) -> np.ndarray:
    """RGB pixels (uint8, or float32 in [0, 1]: taken to 8 bits first) in the colour space of `icc`,
    converted to sRGB (LittleCMS, the profile's default intent, as ImageCms.profileToProfile does)."""
    transform = _icc_transform(bytes(icc))
    if transform is None:
        return rgb
    if rgb.dtype != np.uint8:
        rgb = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    converted = transform.apply(Image.fromarray(np.ascontiguousarray(rgb), "RGB"))
    return np.asarray(converted)
