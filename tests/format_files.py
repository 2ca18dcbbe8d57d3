"""Real files of every format, written by the libraries themselves (no hand-made bytes but for the bombs):
pillow-heif writes HEIC, Pillow writes AVIF and animated GIF/WebP/APNG, pillow-jxl-plugin JPEG XL, and
tifffile a DNG (a CFA sensor image, with or without an embedded JPEG preview Pillow wrote). The tests
and bench/bench_formats.py share them."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image


def _pillow(fmt: str, rgb: np.ndarray, **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **params)
    return buf.getvalue()


def heic(rgb: np.ndarray, quality: int = 90, thumbnail: int | None = None) -> bytes:
    """Written by pillow-heif without registering its Pillow opener (the decoder does that itself);
    `thumbnail`: with an embedded copy of that long side, as phones write one (320 px on an iPhone)."""
    import pillow_heif

    heif = pillow_heif.from_bytes("RGB", (rgb.shape[1], rgb.shape[0]), np.ascontiguousarray(rgb).tobytes())
    buf = io.BytesIO()
    heif.save(buf, quality=quality, thumbnails=[thumbnail] if thumbnail else [])
    return buf.getvalue()


def avif(rgb: np.ndarray, quality: int = 90) -> bytes:
    return _pillow("AVIF", rgb, quality=quality)


def jxl(rgb: np.ndarray, quality: int = 90) -> bytes:
    import pillow_jxl  # noqa: F401 - registers the plugin, for writing

    return _pillow("JXL", rgb, quality=quality)


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    return _pillow("JPEG", rgb, quality=quality)


def png(rgb: np.ndarray) -> bytes:
    return _pillow("PNG", rgb)


def _animation(fmt: str, frames: list[np.ndarray], **params: object) -> bytes:
    first, *rest = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    first.save(buf, fmt, save_all=True, append_images=rest, duration=100, loop=0, **params)
    return buf.getvalue()


def gif(frames: list[np.ndarray]) -> bytes:
    return _animation("GIF", frames)


def webp(frames: list[np.ndarray]) -> bytes:
    return _animation("WEBP", frames, quality=90)


def apng(frames: list[np.ndarray]) -> bytes:
    return _animation("PNG", frames)


def _srational(values: np.ndarray) -> list[int]:
    out: list[int] = []
    for v in values.ravel():
        out += [round(float(v) * 10000), 10000]
    return out


# XYZ (D65) -> linear sRGB: the DNG's ColorMatrix1, so that its "camera" sees in linear sRGB.
_XYZ_TO_LINEAR_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                                [0.0556434, -0.2040259, 1.0572252]])


def dng(rgb: np.ndarray, preview: bool = True, preview_quality: int = 92, preview_side: int | None = None,
        preview_jpeg: bytes | None = None, lossless_jpeg: bool = False) -> bytes:
    """A DNG whose 12-bit RGGB sensor image samples `rgb` (linearised sRGB) and, with `preview`, whose
    first image directory is that picture as a JPEG (a camera's rendering; shrunk to `preview_side` on
    its long side if given; or `preview_jpeg` as it is), the sensor data in a SubIFD, as cameras and
    Adobe's converter lay them out. Sides are cut to even numbers (whole CFA cells). `lossless_jpeg`
    stores the sensor data as most DNGs do (Adobe's converter, many cameras): 256 x 256 tiles, each a
    lossless JPEG (imagecodecs); otherwise uncompressed."""
    import tifffile

    h, w = rgb.shape[0] - rgb.shape[0] % 2, rgb.shape[1] - rgb.shape[1] % 2
    rgb = np.ascontiguousarray(rgb[:h, :w, :3])
    v = rgb.astype(np.float64) / 255.0
    linear = np.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)
    white = 4095
    cfa = np.empty((h, w), np.uint16)
    cfa[0::2, 0::2] = np.round(linear[0::2, 0::2, 0] * white)
    cfa[0::2, 1::2] = np.round(linear[0::2, 1::2, 1] * white)
    cfa[1::2, 0::2] = np.round(linear[1::2, 0::2, 1] * white)
    cfa[1::2, 1::2] = np.round(linear[1::2, 1::2, 2] * white)
    camera = [(271, "s", 0, "chromatica", True), (272, "s", 0, "test camera", True),
              (50706, "B", 4, (1, 4, 0, 0), True), (50708, "s", 0, "chromatica test camera", True),
              (50721, "2i", 9, _srational(_XYZ_TO_LINEAR_SRGB), True), (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),
              (50778, "H", 1, 21, True)]  # D65
    sensor = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True), (50710, "B", 3, (0, 1, 2), True),
              (50714, "H", 1, 0, True), (50717, "H", 1, white, True)]
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        if preview:
            small = rgb
            if preview_side is not None:
                scale = preview_side / max(h, w)
                small = np.asarray(Image.fromarray(rgb).resize((round(w * scale), round(h * scale))))
            encoded = preview_jpeg if preview_jpeg is not None else jpeg(small, preview_quality)
            tif.write(iter([encoded]), shape=small.shape, dtype="uint8", compression=7,
                      photometric="ycbcr", subfiletype=1, subifds=1, rowsperstrip=h, extratags=camera,
                      metadata=None)
            _write_cfa(tif, cfa, sensor, lossless_jpeg)
        else:
            _write_cfa(tif, cfa, camera + sensor, lossless_jpeg)
    return buf.getvalue()


def _write_cfa(tif: Any, cfa: np.ndarray, tags: list[tuple[object, ...]], lossless_jpeg: bool,
               tile: int = 256) -> None:
    if not lossless_jpeg:
        tif.write(cfa, photometric=32803, subfiletype=0, extratags=tags, metadata=None)
        return
    import imagecodecs

    h, w = cfa.shape
    tiles = []
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            block = np.zeros((tile, tile), np.uint16)  # edge tiles padded, as the TIFF tiling requires
            part = cfa[y:y + tile, x:x + tile]
            block[:part.shape[0], :part.shape[1]] = part
            tiles.append(imagecodecs.ljpeg_encode(block, bitspersample=12))
    tif.write(iter(tiles), shape=(h, w), dtype="uint16", compression=7, photometric=32803,
              subfiletype=0, tile=(tile, tile), bitspersample=12, extratags=tags, metadata=None)


def dng_preview(rgb: np.ndarray) -> bytes:
    return dng(rgb, preview=True)


def dng_sensor_only(rgb: np.ndarray) -> bytes:
    return dng(rgb, preview=False)


# name -> (extension, writer of one picture). Animations are written with a second, different frame.
STILL: dict[str, tuple[str, Callable[[np.ndarray], bytes]]] = {
    "heic": (".heic", heic), "avif": (".avif", avif), "jxl": (".jxl", jxl), "dng": (".dng", dng_preview),
    "dng-demosaic": (".dng", dng_sensor_only), "jpeg": (".jpg", jpeg),
}
ANIMATED: dict[str, tuple[str, Callable[[list[np.ndarray]], bytes]]] = {
    "gif": (".gif", gif), "webp": (".webp", webp), "apng": (".png", apng),
}
