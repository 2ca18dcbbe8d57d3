"""Decoding image bytes to sRGB pixels: the only module that decodes (OpenCV, Pillow and its plugins, rawpy).

The header is read first (headers.py), to know the format and refuse decompression bombs by pixel count
before anything is decoded. OpenCV decodes, with libjpeg DCT scaling for JPEGs much larger than needed; a
PNG reaches it with only the chunks its pixels come from. What OpenCV cannot decode but Pillow identified
(a TIFF compressed with ZSTD, say) is decoded by Pillow, to the same output. No decoder writes to stderr:
OpenCV's logging is off in every process that imports this module, what the C libraries write there is
captured into the failure's reason, and reasons come back as ImageError.

Beyond what OpenCV reads: HEIC/HEIF (pillow-heif), AVIF (Pillow's own), JPEG XL (pillow-jxl-plugin) and
camera RAW (rawpy). Their size is read from the container (ISOBMFF `ispe`, the JPEG XL size header, LibRaw's
metadata) before anything is decoded, so the pixel limit holds for them too; their Pillow plugins are
registered on first use by the decode path, never at import. A RAW gives its embedded preview (what the
camera rendered) when it is at least `max_dimension` on its long side, else a half-size demosaic.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from chromatica_watch.core.defaults import DEFAULT_MAX_PIXELS
from chromatica_watch.core.errors import ImageError
from chromatica_watch.imaging import formats
from chromatica_watch.imaging.headers import (
    check_dimensions,
    check_tiff_extent,
    check_whole,
    exception_detail,
    isobmff_size,
    jpeg_dimensions,
    jpeg_scan_complete,
    jxl_size,
    png_pixel_chunks,
    probe,
    sniff,
)
from chromatica_watch.imaging.icc import jpeg_icc, png_icc, to_srgb


def quiet_decoder_logging() -> None:
    """No OpenCV log line (decoder warnings such as 'read_chunk user chunk data is too large', libtiff
    errors) reaches stderr: it would land in the daemon's log without the file's name, and every
    failure comes back as an ImageError with a reason anyway."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


quiet_decoder_logging()

_JPEG_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                 (2, cv2.IMREAD_REDUCED_COLOR_2))
_IGNORE_ORIENTATION = cv2.IMREAD_IGNORE_ORIENTATION  # rotation cannot change a colour histogram


@dataclass(frozen=True)
class Decoded:
    rgb: np.ndarray  # (h, w, 3) uint8, or float32 in [0, 1] for deeper images
    weights: np.ndarray | None  # (h, w) float32; 0 where fully transparent; None when opaque
    width: int  # of the original image
    height: int
    alpha: np.ndarray | None = None  # (h, w), the dtype of rgb: the alpha channel, for display; None when opaque


# Pillow modes whose samples are taken as they are (the 16-bit ones in any byte order).
_PILLOW_AS_IS = frozenset({"L", "LA", "RGB", "RGBA", "F", "I;16", "I;16L", "I;16B", "I;16N"})


def _pillow_pixels(data: bytes, max_dimension: int,
                   max_pixels: int | None = None) -> tuple[np.ndarray, tuple[int, int], bytes | None]:
    """The first image (frame) in `data` decoded by Pillow, laid out as OpenCV's imdecode gives it (gray,
    gray+alpha, BGR or BGRA; uint8, uint16 or float32), for the same resizing and colour steps, and the
    image's size and ICC profile. A JPEG is reduced while decoding (DCT scaling) to no less than `max_dimension`. With
    `max_pixels` the size Pillow read is checked before the pixels are decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as im:
            size, icc = im.size, im.info.get("icc_profile") or None
            if max_pixels is not None:
                check_dimensions(*size, max_pixels)
            if im.format in ("JPEG", "MPO", "HEIF"):
                # JPEG: libjpeg decodes at 1/2, 1/4 or 1/8 scale. HEIF: pillow-heif decodes the embedded
                # thumbnail instead, when one is a scaled copy of the picture (same crop, turn and colour
                # profile) no smaller than this, as a RAW's embedded preview is used.
                scale = max_dimension / max(im.size)
                if scale < 1:
                    im.draft("RGB", (math.ceil(im.width * scale), math.ceil(im.height * scale)))
            im.load()
            frame: Image.Image = im
            if im.mode == "I":  # 32-bit integers: as 16-bit samples
                return np.clip(np.asarray(im), 0, 65535).astype(np.uint16), size, icc
            if im.mode == "1":
                frame = im.convert("L")
            elif im.mode not in _PILLOW_AS_IS:  # palette, CMYK, YCbCr, LAB, premultiplied alpha...
                frame = im.convert("RGBA" if im.has_transparency_data else "RGB")
            pixels = np.asarray(frame)
    if pixels.dtype.kind == "u" and pixels.dtype.itemsize == 2:
        pixels = pixels.astype(np.uint16, copy=False)  # native byte order
    elif pixels.dtype.kind == "f":
        pixels = pixels.astype(np.float32, copy=False)
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = pixels[:, :, [2, 1, 0, 3][: pixels.shape[2]]]  # RGB(A) -> BGR(A), as OpenCV's
    return np.ascontiguousarray(pixels), size, icc


def _pillow_decode(data: bytes, fmt: str, max_dimension: int, opencv_error: str,
                   max_pixels: int | None = None) -> tuple[np.ndarray, tuple[int, int], bytes | None]:
    try:
        return _pillow_pixels(data, max_dimension, max_pixels)
    except (MemoryError, ImageError):
        raise
    except Exception as exc:  # Pillow's plugins raise many kinds on bad data: each is a reason
        why = f" ({opencv_error})" if opencv_error else ""
        raise ImageError(f"could not decode {fmt} data{why}: {exception_detail(exc)}") from exc


def _reduced_jpeg_flag(width: int, height: int, max_dimension: int) -> int:
    longest = max(width, height)
    for factor, flag in _JPEG_REDUCED:
        if longest >= factor * max_dimension:
            return flag
    return cv2.IMREAD_COLOR


def _to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 as it is; deeper samples as float32 in [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / np.float32(65535.0)
    if pixels.dtype.kind == "f":
        return np.clip(pixels.astype(np.float32), 0.0, 1.0)
    raise ImageError(f"unsupported sample type {pixels.dtype}")


@contextlib.contextmanager
def _decoder_messages() -> Iterator[list[str]]:
    """What the C decoders (libpng, libjpeg, libtiff) write to stderr meanwhile, captured into the list
    (filled on exit): it belongs in the file's failure reason, not bare in the daemon's log without the
    file's name. The decoding processes and the CLI decode on one thread; the daemon itself never does."""
    said: list[str] = []
    sys.stderr.flush()
    sink = os.memfd_create("decoder-messages", os.MFD_CLOEXEC)
    saved = os.dup(2)
    os.dup2(sink, 2)
    try:
        yield said
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.lseek(sink, 0, os.SEEK_SET)
        text = os.read(sink, 4096).decode("utf-8", "replace")
        os.close(sink)
        said += [line.strip() for line in text.splitlines() if line.strip()]


def _with_messages(reason: str, said: list[str]) -> str:
    return f"{reason}; the decoder said: {said[-1]}" if said else reason


class _DecoderSetup:
    """What this process has set up for decoding: the Pillow plugins registered so far, and whether the
    decoders keep to one thread. One per process (`_setup`), so the state has one place."""

    def __init__(self) -> None:
        self.registered: set[str] = set()
        # Set in worker processes: parallelism comes from processes, not decoder threads.
        self.one_thread = False

    def require(self, kind: str) -> None:
        """Make Pillow able to read `kind` ("heif", "avif", "jxl"), once per process; ImageError naming
        the package when its library is missing."""
        if kind in self.registered:
            return
        try:
            if kind == "heif":
                import pillow_heif

                # thumbnails=True: a phone's HEIC carries a 320 px copy of itself, which `draft` decodes
                # instead of the 12 MP picture when it is large enough (~1 s less per photo).
                pillow_heif.register_heif_opener(thumbnails=True, depth_images=False, aux_images=False,
                                                 **({"decode_threads": 1} if self.one_thread else {}))
            elif kind == "avif":
                from PIL import AvifImagePlugin, features

                if not features.check("avif"):
                    raise ImportError("Pillow was built without AVIF")
                if self.one_thread:
                    AvifImagePlugin.DEFAULT_MAX_THREADS = 1
            elif kind == "jxl":
                import pillow_jxl  # noqa: F401 - registers its Pillow plugin
                from pillow_jxl import JpegXLImagePlugin

                if self.one_thread:
                    JpegXLImagePlugin.DECODE_THREADS = 0
        except ImportError as exc:
            raise ImageError(formats.support(kind).missing_reason) from exc
        self.registered.add(kind)


_setup = _DecoderSetup()


def enable_pillow_for(data: bytes) -> None:
    """Let Pillow open this file's format (its HEIF, AVIF or JPEG XL plugin registered on first need), for
    other image modules that decode with Pillow (thumbnails). ImageError naming a missing package."""
    kind = sniff(data)
    if kind in ("heif", "avif", "jxl"):
        _setup.require(kind)


def limit_decoder_threads() -> None:
    """One decoding thread per process: parallelism comes from worker processes (the HEIF, AVIF and
    JPEG XL plugins are set likewise when they are registered)."""
    cv2.setNumThreads(1)
    _setup.one_thread = True
    if "rawpy" not in sys.modules:  # LibRaw's demosaic is OpenMP-parallel: one thread, read when it loads
        os.environ["OMP_NUM_THREADS"] = "1"


def _raw_pixels(data: bytes, max_dimension: int,
                max_pixels: int) -> tuple[np.ndarray, int, int, bytes | None]:
    """A camera RAW file's pixels (BGR uint8, as OpenCV gives them), width, height and ICC profile (the
    preview's: an Adobe RGB camera setting tags it so; the demosaic's output is sRGB). The embedded JPEG
    preview is used when its long side is at least `max_dimension` (what the camera rendered, and much
    cheaper), else a half-size demosaic with the camera's white balance, sRGB gamma.
    The sensor's size is checked against the pixel limit before anything is decoded."""
    try:
        import rawpy
    except ImportError as exc:
        raise ImageError(formats.support("raw").missing_reason) from exc
    check_tiff_extent(data)
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            s = raw.sizes
            check_dimensions(s.raw_width, s.raw_height, max_pixels)
            width, height = s.width, s.height
            preview = _raw_preview(raw, rawpy, max_dimension, max_pixels)
            if preview is not None:
                return preview[0], width, height, preview[1]
            rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8, gamma=(2.4, 12.92))
    except rawpy.LibRawFileUnsupportedError as exc:
        raise ImageError(f"not a camera RAW file LibRaw can read: {exception_detail(exc)}") from exc
    except rawpy.LibRawError as exc:
        raise ImageError(f"could not decode camera RAW data: {exception_detail(exc)}") from exc
    return np.ascontiguousarray(rgb[:, :, ::-1]), width, height, None


def _raw_preview(raw: Any, rawpy: Any, max_dimension: int,
                 max_pixels: int) -> tuple[np.ndarray, bytes | None] | None:
    """The embedded preview's pixels (BGR) and ICC profile when it is large enough, else None."""
    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:  # none, or of a kind LibRaw cannot give
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        size = jpeg_dimensions(thumb.data)
        if size is None or max(size) < max_dimension:
            return None
        try:
            check_dimensions(*size, max_pixels)
            return _opencv_pixels(thumb.data, "JPEG", "", size, max_dimension), jpeg_icc(thumb.data)
        except ImageError:  # a damaged preview: the sensor data may still be whole
            return None
    bitmap = np.asarray(thumb.data)
    if bitmap.ndim != 3 or bitmap.shape[2] != 3 or max(bitmap.shape[:2]) < max_dimension:
        return None
    return np.ascontiguousarray(bitmap[:, :, ::-1]), None


def _pillow_only(data: bytes, kind: str, max_dimension: int,
                 max_pixels: int) -> tuple[np.ndarray, int, int, bytes | None]:
    """HEIF, AVIF and JPEG XL: the size from the container first, then Pillow's plugin decodes (once:
    the JPEG XL plugin decodes the whole image as it opens it, so it is opened only after the check)."""
    where = {"heif": "HEIF", "avif": "AVIF", "jxl": "JPEG XL"}[kind]
    size = jxl_size(data) if kind == "jxl" else isobmff_size(data, where)
    if size is not None:
        check_dimensions(*size, max_pixels)
    _setup.require(kind)
    with _decoder_messages() as said:
        try:
            pixels, (width, height), icc = _pillow_decode(data, where, max_dimension, "", max_pixels)
        except ImageError as exc:
            if kind == "jxl" and isinstance(exc.__cause__, RuntimeError):  # its words are about building libjxl
                raise ImageError("could not decode JPEG XL data: corrupt or truncated (libjxl gave no detail)") from exc
            raise ImageError(_with_messages(exc.reason, said)) from exc
    return pixels, width, height, icc


def _opencv_pixels(data: bytes, fmt: str, mode: str, size: tuple[int, int], max_dimension: int) -> np.ndarray:
    """OpenCV's decode of a file whose header was checked (JPEG at reduced scale); what it cannot decode
    but Pillow identified goes to Pillow."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if fmt == "JPEG":
        if not jpeg_scan_complete(data):
            raise ImageError("truncated JPEG: image data ends before the end-of-image marker")
        flags = _reduced_jpeg_flag(*size, max_dimension) | _IGNORE_ORIENTATION
    elif mode == "CMYK":
        flags = cv2.IMREAD_COLOR | _IGNORE_ORIENTATION  # let the decoder convert CMYK to BGR
    else:
        flags = cv2.IMREAD_UNCHANGED  # keep alpha and 16-bit depth
    opencv_error = "corrupt, truncated or unsupported"
    with _decoder_messages() as said:
        try:
            pixels = cv2.imdecode(buf, flags)
        except cv2.error as exc:
            pixels, opencv_error = None, str(exc).strip().splitlines()[-1]
    if pixels is None or pixels.size == 0:
        opencv_error = _with_messages(opencv_error, said)
        if fmt == "JPEG":  # libjpeg reads every valid JPEG: this one is broken
            raise ImageError(f"could not decode {fmt} data ({opencv_error})")
        try:
            with _decoder_messages() as said:
                pixels, _, _ = _pillow_decode(data, fmt, max_dimension, opencv_error)
        except ImageError as exc:
            raise ImageError(_with_messages(exc.reason, said)) from exc
    return pixels


def _pixels(data: bytes, max_dimension: int, max_pixels: int,
            suffix: str) -> tuple[np.ndarray, int, int, bytes | None]:
    """The decoded pixels (as OpenCV lays them out), the image's width and height, and its embedded ICC
    profile (None without one)."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    kind = sniff(data, suffix)
    if kind == "raw":
        return _raw_pixels(data, max_dimension, max_pixels)
    if kind != "basic":
        return _pillow_only(data, kind, max_dimension, max_pixels)
    jpeg_size = jpeg_dimensions(data)
    if jpeg_size is not None:
        (width, height), fmt, mode = jpeg_size, "JPEG", ""
        check_dimensions(width, height, max_pixels)
        icc = jpeg_icc(data)
    else:
        iccp = png_icc(data)  # before its chunk is dropped for OpenCV
        data = png_pixel_chunks(data)
        check_whole(data)
        fmt, mode, width, height, icc = probe(data, max_pixels)
        icc = iccp or icc
    return _opencv_pixels(data, fmt, mode, (width, height), max_dimension), width, height, icc


def shrink(pixels: np.ndarray, longest: int) -> np.ndarray:
    """Pixels (h, w, c) with their longest side at most `longest`, by area averaging; never enlarged."""
    if max(pixels.shape[:2]) <= longest:
        return pixels
    scale = longest / max(pixels.shape[:2])
    size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
    shrunk = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return shrunk[:, :, None] if shrunk.ndim == 2 else shrunk


def decode(data: bytes, max_dimension: int, max_pixels: int = DEFAULT_MAX_PIXELS, *, suffix: str = "") -> Decoded:
    """Decode to sRGB with the longest side at most `max_dimension`; raises ImageError with a reason.
    Pixels tagged with an ICC profile other than sRGB (Display P3, Adobe RGB) are converted to sRGB.

    `suffix` is the file's extension ('.dng'): it only sends a TIFF-like file named like a camera RAW to
    LibRaw; every other format is told by its content."""
    pixels, width, height, icc = _pixels(data, max_dimension, max_pixels, suffix)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    pixels = shrink(pixels, max_dimension)
    channels = pixels.shape[2]
    pixels = _to_unit_float(pixels)  # before cvtColor, which takes only 8-bit, 16-bit and float32
    weights = alpha = None
    if channels in (2, 4):  # gray+alpha, BGRA
        alpha = pixels[:, :, -1]
        weights = (alpha > 0).astype(np.float32)
        if alpha.min() >= (255 if alpha.dtype == np.uint8 else 1.0):
            alpha = None  # an alpha channel with nothing transparent (a GIF decodes so)
    if channels in (3, 4):
        rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGB)
    else:
        rgb = np.repeat(pixels[:, :, :1], 3, axis=2)
    if icc is not None:
        rgb = to_srgb(rgb, icc)
    return Decoded(rgb=rgb, weights=weights, width=width, height=height, alpha=alpha)


def decode_reduced_only(data: bytes, max_dimension: int) -> tuple[int, int]:
    """The decode-only limit for the benchmark: header probe (the same as decode's) and reduced-scale
    decode, nothing else."""
    size = jpeg_dimensions(data)
    if size is None:
        raise ImageError("not a JPEG")
    width, height = size
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8),
                          _reduced_jpeg_flag(width, height, max_dimension) | _IGNORE_ORIENTATION)
    if pixels is None:
        raise ImageError("could not decode")
    return pixels.shape[1], pixels.shape[0]
