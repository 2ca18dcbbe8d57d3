"""Reading and decoding image files: the only module that decodes images (OpenCV, Pillow).

One read of the file's bytes serves both the content hash and the decode. The header alone is read
first, to know the format and refuse decompression bombs by pixel count before anything is decoded:
a JPEG's by walking its marker segments to the start-of-frame, any other file's (or an odd JPEG's) by
Pillow. OpenCV decodes, with libjpeg DCT scaling for JPEGs much larger than needed; a PNG reaches it
with only the chunks its pixels come from. What OpenCV cannot decode but Pillow identified (a TIFF
compressed with ZSTD, say) is decoded by Pillow, to the same output. No decoder writes to stderr:
OpenCV's logging is off in every process that imports this module, and reasons come back as ImageError.

Beyond what OpenCV reads: HEIC/HEIF (pillow-heif), AVIF (Pillow's own), JPEG XL (pillow-jxl-plugin) and
camera RAW (rawpy). Their size is read from the container (ISOBMFF `ispe`, the JPEG XL size header, LibRaw's
metadata) before anything is decoded, so the pixel limit holds for them too; their Pillow plugins are
registered on first use by the decode path, never at import. A RAW gives its embedded preview (what the
camera rendered) when it is at least `max_dimension` on its long side, else a half-size demosaic.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import math
import os
import stat
import struct
import sys
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import xxhash
from PIL import Image, ImageCms, UnidentifiedImageError

from chromatica_watch.colour import histogram
from chromatica_watch.core.defaults import DEFAULT_MAX_PIXELS
from chromatica_watch.core.errors import ImageError
from chromatica_watch.core.filetypes import (
    BROKEN_SYMLINK,
    RAW_EXTENSIONS,
    SYMLINK_LOOP,
    special_file_reason,
    symlink_reason,
)
from chromatica_watch.imaging import formats

# We enforce our own, configurable pixel limit right after reading the header (see _probe).
Image.MAX_IMAGE_PIXELS = None



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
class FileBytes:
    data: bytes
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Decoded:
    rgb: np.ndarray  # (h, w, 3) uint8, or float32 in [0, 1] for deeper images
    weights: np.ndarray | None  # (h, w) float32; 0 where fully transparent; None when opaque
    width: int  # of the original image
    height: int
    alpha: np.ndarray | None = None  # (h, w), the dtype of rgb: the alpha channel, for display; None when opaque


@dataclass(frozen=True)
class Features:
    histogram: np.ndarray  # float32[1152], sums to 1
    content_hash: str
    width: int
    height: int


def hash_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


# Never blocks on a FIFO or a device, never makes a terminal ours; O_NOFOLLOW is added when asked.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _is_symlink(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _refusal(path: str, st_mode: int) -> str | None:
    return symlink_reason(path) if stat.S_ISLNK(st_mode) else special_file_reason(st_mode)


def _unopenable_reason(path: str, exc: OSError, follow_symlinks: bool) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"unreadable: permission denied ({exc.strerror})"
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW on a link, or a loop anywhere on the path
        return symlink_reason(path) if not follow_symlinks and _is_symlink(path) else SYMLINK_LOOP
    if exc.errno in (errno.ENOENT, errno.ENOTDIR) and _is_symlink(path):
        return BROKEN_SYMLINK
    if exc.errno == errno.ENXIO:  # what open() says of a socket
        try:
            reason = _refusal(path, os.stat(path, follow_symlinks=follow_symlinks).st_mode)
        except OSError:
            reason = None
        if reason is not None:
            return reason
    return f"cannot open: {exc.strerror}"


def read_file(path: str, *, follow_symlinks: bool = True) -> FileBytes:
    """All bytes of a regular file, with the size and mtime they were read at; never blocks.

    Only a regular file is ever read: anything else raises ImageError with a reason naming what it
    is (see `special_file_reason`). It is looked at (stat) before it is opened, so a device or a
    FIFO is not even opened, and the descriptor is checked again (fstat) in case the path changed
    in between; the open itself cannot block (O_NONBLOCK, O_NOCTTY).

    With follow_symlinks=False a symbolic link is not read (O_NOFOLLOW): symlinks inside a watched
    folder are not followed, so no photo is indexed twice through a link back into the folder; add
    the target as a root to index it. Its reason is then SYMLINK_NOT_FOLLOWED, or 'symlink loop' /
    'broken symlink' for a link that loops or dangles. Only the last component of `path` is checked:
    which folders to enter is the scanner's decision. A query image (`search --image`) follows links.
    """
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError as exc:
        raise ImageError(_unopenable_reason(path, exc, follow_symlinks)) from exc
    reason = _refusal(path, st.st_mode)
    if reason is not None:
        raise ImageError(reason)
    try:
        fd = os.open(path, _OPEN_FLAGS | (0 if follow_symlinks else os.O_NOFOLLOW))
    except OSError as exc:
        raise ImageError(_unopenable_reason(path, exc, follow_symlinks)) from exc
    try:
        st = os.fstat(fd)
        reason = special_file_reason(st.st_mode)
        if reason is not None:
            raise ImageError(reason)
        # Regular files ignore O_NONBLOCK on local file systems; clear it anyway so that no network
        # or FUSE file system can turn a slow read into a short one.
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError as exc:
        raise ImageError(f"read error: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return FileBytes(data=data, size=st.st_size, mtime_ns=st.st_mtime_ns)


def _probe(data: bytes, max_pixels: int) -> tuple[str, str, int, int, bytes | None]:
    """(format, mode, width, height, ICC profile) from the header alone; refuses bombs before any decode."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                fmt, mode, (width, height) = im.format or "?", im.mode, im.size
                icc = im.info.get("icc_profile") or None
    except UnidentifiedImageError as exc:
        raise ImageError("not an image: unrecognized file format") from exc
    except MemoryError:
        raise
    except Exception as exc:  # plugins (pillow-heif, libavif) raise more than OSError on a bad header
        raise ImageError(f"corrupt image header: {_detail(exc)}") from exc
    _check_dimensions(width, height, max_pixels)
    return fmt, mode, width, height, icc


def _detail(exc: BaseException) -> str:
    """The last line of an exception's message (bytes from LibRaw decoded), else its type's name."""
    arg = exc.args[0] if len(exc.args) == 1 else None
    text = (arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(exc)).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _check_dimensions(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"invalid dimensions {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            f"too many pixels: {width}x{height} = {width * height} exceeds the pixel limit "
            f"{max_pixels} (max_pixels); refused before decoding (possible decompression bomb)")


# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic coded).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment, or None when the header walk is not
    conclusive (not a JPEG, odd or broken header): then Pillow reads the header and judges it.

    ~20x cheaper than opening the file with Pillow, and it also takes camera MPO files (a JPEG with
    extra images after it, which Pillow calls "MPO") as the JPEGs they are, so they decode at reduced
    scale too.
    """
    if data[:3] != b"\xff\xd8\xff":
        return None
    size = None
    for pos, marker in _jpeg_header_segments(data):
        if marker == 0xDA:
            return size
        if marker in _JPEG_SOF and pos + 9 <= len(data):  # FF Cn, length(2), precision(1), height(2), width(2)
            height, width = int.from_bytes(data[pos + 5: pos + 7], "big"), int.from_bytes(data[pos + 7: pos + 9], "big")
            size = (width, height) if width > 0 and height > 0 else None
    return None


def _jpeg_header_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """(offset, marker) of each segment of a JPEG's header, skipped by their lengths, up to and including
    the first start of scan (FF DA); stops early, without it, where the header is malformed or cut."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        yield pos, marker
        if marker == 0xDA:
            return
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers carry no length
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2: pos + 4], "big")


def _jpeg_scan_complete(data: bytes) -> bool:
    """True when the JPEG's image data ends with an EOI marker after its first scan.

    Header segments (APPn, which may hold a whole thumbnail JPEG) are skipped by their lengths so a
    thumbnail's own EOI cannot pass for the main image's. Some decoders silently grey-fill a truncated
    file; this makes truncation an error whatever the decoder does.
    """
    for pos, marker in _jpeg_header_segments(data):
        if marker == 0xDA:  # start of scan: entropy-coded data follows, never containing FF D9
            # Searched from the end, where a complete file has it: a forward search stops at every
            # FF byte of the entropy-coded data (FF 00 stuffing) and costs ~4 ms on a 12 MP photo.
            return data.rfind(b"\xff\xd9", pos) != -1
    return False


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The ancillary chunks OpenCV's pixels depend on: transparency, and APNG's animation chunks.
_PNG_PIXEL_ANCILLARY = frozenset({b"tRNS", b"acTL", b"fcTL", b"fdAT"})


def _png_chunks(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, type) of each whole chunk of a PNG, up to and including IEND; stops early, without
    it, where a chunk header is malformed or a chunk runs past the end of the data."""
    pos, n = len(_PNG_SIGNATURE), len(data)
    while pos + 12 <= n:
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length  # length, type, data, CRC
        if length > 0x7FFFFFFF or end > n or not kind.isalpha():
            return
        yield pos, end, kind
        if kind == b"IEND":
            return
        pos = end


def _png_pixel_chunks(data: bytes) -> bytes:
    """A PNG without the ancillary chunks its pixels do not depend on (text, ICC profile, EXIF, private
    chunks...); data that is not a PNG is returned as it is. Raises ImageError for a PNG whose chunks
    end before IEND: truncated (a partial copy), or with a malformed chunk header.

    libpng only checks those chunks, and says so on stderr itself ('libpng warning: tEXt: out of
    memory' for a text chunk over 8 MB, 'iCCP: ... invalid ICC profile' for an odd profile), where no
    log level reaches it; and OpenCV refuses the whole PNG when one of them before the image data is
    over 8 MB (an iTXt, eXIf or private chunk), though Pillow reads it. Likewise libpng writes 'libpng
    error: PNG input buffer is incomplete' for a truncated PNG, which is refused here first, as a
    truncated JPEG is: whatever follows IEND is kept as it is.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return data
    view = memoryview(data)
    parts, kept_from, dropped = [], 0, False
    end, kind = len(_PNG_SIGNATURE), b""
    for start, end, kind in _png_chunks(data):
        if kind[0] & 0x20 and kind not in _PNG_PIXEL_ANCILLARY:  # lower-case first letter: ancillary
            parts.append(view[kept_from:start])
            kept_from, dropped = end, True
    if kind != b"IEND":
        raise ImageError(_png_damage(data, end))
    if not dropped:
        return data
    parts.append(view[kept_from:])
    return b"".join(parts)


def _png_damage(data: bytes, pos: int) -> str:
    """Why the chunk walk stopped at `pos`, before IEND."""
    if pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if length > 0x7FFFFFFF or not kind.isalpha():
            return f"corrupt PNG: malformed chunk header at byte {pos}"
    return "truncated PNG: data ends before the IEND chunk"


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
                _check_dimensions(*size, max_pixels)
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
        raise ImageError(f"could not decode {fmt} data{why}: {_detail(exc)}") from exc


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


# --- Formats beyond OpenCV's: told apart by their content (an extension only decides camera RAW) ---

# ISOBMFF brands (the `ftyp` box) of HEIF and AVIF still images and sequences, and of Canon's CR3.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1",
                          b"mif2", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_CR3_BRANDS = frozenset({b"crx "})
_JXL_CODESTREAM = b"\xff\x0a"
_JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
# Camera RAW files that say so in their first bytes (most others are TIFF files, told by their extension).
_RAW_MAGIC = (b"FUJIFILMCCD-RAW", b"IIRO", b"IIRS", b"MMOR", b"IIU\x00")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def _ftyp_brands(data: bytes) -> frozenset[bytes]:
    """The major and compatible brands of an ISOBMFF file's leading `ftyp` box; empty for anything else."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return frozenset()
    end = min(len(data), max(16, int.from_bytes(data[:4], "big")))
    return frozenset({data[8:12], *(data[i:i + 4] for i in range(16, end - 3, 4))})


def sniff(data: bytes, suffix: str = "") -> str:
    """Which decoder a file's bytes go to: "heif", "avif", "jxl", "raw" or "basic" (OpenCV, then
    Pillow). The content decides (a JPEG named .heic is a JPEG); only a TIFF-like file named like a
    camera RAW (.dng, .nef, .cr2...) goes to LibRaw by its name."""
    brands = _ftyp_brands(data)
    if brands & _CR3_BRANDS:
        return "raw"
    if brands & _AVIF_BRANDS:
        return "avif"
    if brands & _HEIF_BRANDS:
        return "heif"
    if data.startswith((_JXL_CODESTREAM, _JXL_CONTAINER)):
        return "jxl"
    if data.startswith(_RAW_MAGIC) or (suffix.lower() in RAW_EXTENSIONS and data.startswith(_TIFF_MAGIC)):
        return "raw"
    return "basic"


def enable_pillow_for(data: bytes) -> None:
    """Let Pillow open this file's format (its HEIF, AVIF or JPEG XL plugin registered on first need), for
    other image modules that decode with Pillow (thumbnails). ImageError naming a missing package."""
    kind = sniff(data)
    if kind in ("heif", "avif", "jxl"):
        _require(kind)


def _isobmff_boxes(data: bytes, start: int, end: int, where: str) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body end) of each box in data[start:end]; ImageError for a box that runs past
    the end (a truncated file) or a malformed box header."""
    pos = start
    while pos + 8 <= end:
        size, kind, header = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8], 8
        if size == 1 and pos + 16 <= end:
            size, header = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:  # to the end of the enclosing box
            size = end - pos
        if size < header:
            raise ImageError(f"corrupt {where}: malformed box header at byte {pos}")
        if pos + size > end:
            kind_name = kind.decode("latin-1")
            raise ImageError(f"truncated {where}: data ends inside its '{kind_name}' box")
        yield kind, pos + header, pos + size
        pos += size
    if pos != end:
        raise ImageError(f"truncated {where}: data ends inside a box header")


def _isobmff_size(data: bytes, where: str) -> tuple[int, int] | None:
    """(width, height) of a HEIF/AVIF file's primary image from its `ispe` property, read from the
    `meta` box alone (nothing is decoded); None when it declares none. Every top-level box must be whole,
    so a truncated file is refused here with that reason. A HEIC grid's primary item is the whole
    picture: its `ispe` is the picture's size, not a tile's."""
    meta = None
    for kind, body, end in _isobmff_boxes(data, 0, len(data), where):
        if kind == b"meta":
            meta = (body + 4, end)  # a full box: version and flags first
    if meta is None:
        raise ImageError(f"corrupt {where}: no 'meta' box")
    primary, props, assoc = None, [], {}
    for kind, body, end in _isobmff_boxes(data, *meta, where):
        if kind == b"pitm" and end - body >= 6:
            primary = int.from_bytes(data[body + 4:body + (6 if data[body] == 0 else 8)], "big")
        elif kind == b"iprp":
            for sub, sbody, send in _isobmff_boxes(data, body, end, where):
                if sub == b"ipco":
                    props = [(k, b, e) for k, b, e in _isobmff_boxes(data, sbody, send, where)]
                elif sub == b"ipma":
                    assoc.update(_ipma(data, sbody, send))
    sizes = [(int.from_bytes(data[b + 4:b + 8], "big"), int.from_bytes(data[b + 8:b + 12], "big"))
             for k, b, e in props if k == b"ispe" and e - b >= 12]
    if primary is not None and primary in assoc:
        mine = [props[i - 1] for i in assoc[primary] if 0 < i <= len(props) and props[i - 1][0] == b"ispe"]
        if mine and mine[0][2] - mine[0][1] >= 12:
            b = mine[0][1]
            return int.from_bytes(data[b + 4:b + 8], "big"), int.from_bytes(data[b + 8:b + 12], "big")
    # No primary item's size: the largest any item declares, so that no item can pass the limit.
    return max(sizes, key=lambda wh: wh[0] * wh[1]) if sizes else None


def _ipma(data: bytes, body: int, end: int) -> dict[int, list[int]]:
    """Item id -> its property indices (1-based into ipco), from an `ipma` box."""
    version, flags = data[body], int.from_bytes(data[body + 1:body + 4], "big")
    pos, out = body + 8, {}
    count = int.from_bytes(data[body + 4:body + 8], "big")
    id_len, idx_len = (2 if version < 1 else 4), (2 if flags & 1 else 1)
    for _ in range(count):
        if pos + id_len + 1 > end:
            break
        item = int.from_bytes(data[pos:pos + id_len], "big")
        n = data[pos + id_len]
        pos += id_len + 1
        mask = 0x7FFF if idx_len == 2 else 0x7F
        out[item] = [int.from_bytes(data[pos + i * idx_len:pos + (i + 1) * idx_len], "big") & mask for i in range(n)]
        pos += n * idx_len
    return out


class _BitReader:
    """Bits of a JPEG XL codestream, least significant first within each byte."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def bits(self, n: int) -> int:
        value = 0
        for i in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ImageError("truncated JPEG XL: data ends inside its size header")
            value |= ((self.data[byte] >> (self.pos & 7)) & 1) << i
            self.pos += 1
        return value

    def dimension(self, div8: bool) -> int:
        if div8:
            return (self.bits(5) + 1) * 8
        return self.bits((9, 13, 18, 30)[self.bits(2)]) + 1


# JPEG XL's fixed aspect ratios (SizeHeader.ratio 1..7): width = height * num // den.
_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def _jxl_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG XL file's SizeHeader (bare codestream or inside the container's first
    `jxlc`/`jxlp` box), before anything is decoded: the plugin decodes the whole image when it opens it."""
    if data.startswith(_JXL_CONTAINER):
        stream = b""
        for kind, body, end in _jxl_container_boxes(data):
            if kind == b"jxlc":
                stream = data[body:end]
                break
            if kind == b"jxlp":
                stream = data[body + 4:end]
                break
        if not stream.startswith(_JXL_CODESTREAM):
            raise ImageError("corrupt JPEG XL: no codestream in its container")
    else:
        stream = data
    r = _BitReader(stream[2:2 + 16])
    div8 = bool(r.bits(1))
    height = r.dimension(div8)
    ratio = r.bits(3)
    if ratio:
        num, den = _JXL_RATIOS[ratio]
        return height * num // den, height
    return r.dimension(div8), height


def _jxl_container_boxes(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """The container's boxes, the last one allowed to be cut short (its codestream header is all we read)."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind, header = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8], 8
        if size == 1 and pos + 16 <= len(data):
            size, header = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if size < header:
            return
        yield kind, pos + header, min(pos + size, len(data))
        pos += size


_ready: set[str] = set()  # plugins registered in this process
_one_thread = False  # set in worker processes: parallelism comes from processes, not decoder threads


def _require(kind: str) -> None:
    """Make Pillow able to read `kind` ("heif", "avif", "jxl"), once per process; ImageError naming the
    package when its library is missing."""
    if kind in _ready:
        return
    try:
        if kind == "heif":
            import pillow_heif

            # thumbnails=True: a phone's HEIC carries a 320 px copy of itself, which `draft` decodes instead
            # of the 12 MP picture when it is large enough (~1 s less per photo).
            pillow_heif.register_heif_opener(thumbnails=True, depth_images=False, aux_images=False,
                                             **({"decode_threads": 1} if _one_thread else {}))
        elif kind == "avif":
            from PIL import AvifImagePlugin, features

            if not features.check("avif"):
                raise ImportError("Pillow was built without AVIF")
            if _one_thread:
                AvifImagePlugin.DEFAULT_MAX_THREADS = 1
        elif kind == "jxl":
            import pillow_jxl  # noqa: F401 - registers its Pillow plugin
            from pillow_jxl import JpegXLImagePlugin

            if _one_thread:
                JpegXLImagePlugin.DECODE_THREADS = 0
    except ImportError as exc:
        raise ImageError(formats.support(kind).missing_reason) from exc
    _ready.add(kind)





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
    _check_tiff_extent(data)
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            s = raw.sizes
            _check_dimensions(s.raw_width, s.raw_height, max_pixels)
            width, height = s.width, s.height
            preview = _raw_preview(raw, rawpy, max_dimension, max_pixels)
            if preview is not None:
                return preview[0], width, height, preview[1]
            rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8, gamma=(2.4, 12.92))
    except rawpy.LibRawFileUnsupportedError as exc:
        raise ImageError(f"not a camera RAW file LibRaw can read: {_detail(exc)}") from exc
    except rawpy.LibRawError as exc:
        raise ImageError(f"could not decode camera RAW data: {_detail(exc)}") from exc
    return np.ascontiguousarray(rgb[:, :, ::-1]), width, height, None


def _raw_preview(raw: Any, rawpy: Any, max_dimension: int,
                 max_pixels: int) -> tuple[np.ndarray, bytes | None] | None:
    """The embedded preview's pixels (BGR) and ICC profile when it is large enough, else None."""
    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:  # none, or of a kind LibRaw cannot give
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        size = _jpeg_dimensions(thumb.data)
        if size is None or max(size) < max_dimension:
            return None
        try:
            _check_dimensions(*size, max_pixels)
            return _opencv_pixels(thumb.data, "JPEG", "", size, max_dimension), _jpeg_icc(thumb.data)
        except ImageError:  # a damaged preview: the sensor data may still be whole
            return None
    bitmap = np.asarray(thumb.data)
    if bitmap.ndim != 3 or bitmap.shape[2] != 3 or max(bitmap.shape[:2]) < max_dimension:
        return None
    return np.ascontiguousarray(bitmap[:, :, ::-1]), None


def _check_tiff_extent(data: bytes) -> None:
    """A TIFF-based RAW (DNG, CR2, NEF, ARW, PEF...) whose strips or tiles run past the end of the data
    is truncated: LibRaw would still hand out its preview, and index a file cut short."""
    if not data.startswith(_TIFF_MAGIC):
        return
    order: Literal["little", "big"] = "little" if data[:2] == b"II" else "big"

    def u(pos: int, n: int) -> int:
        return int.from_bytes(data[pos:pos + n], order) if pos + n <= len(data) else -1

    sizes = {3: 2, 4: 4, 13: 4}  # SHORT, LONG, IFD
    todo, seen, extent = [u(4, 4)], set[int](), 0
    while todo and len(seen) < 64:
        ifd = todo.pop()
        if ifd <= 0 or ifd in seen:
            continue
        seen.add(ifd)
        count = u(ifd, 2)
        if count < 0 or ifd + 2 + count * 12 > len(data):
            raise ImageError("truncated camera RAW: data ends inside its image directory")
        tags: dict[int, list[int]] = {}
        for i in range(count):
            entry = ifd + 2 + i * 12
            tag, kind, n = u(entry, 2), u(entry + 2, 2), u(entry + 4, 4)
            if kind not in sizes or n <= 0 or n > 1 << 20:
                continue
            width = sizes[kind]
            at = entry + 8 if width * n <= 4 else u(entry + 8, 4)
            tags[tag] = [u(at + j * width, width) for j in range(min(n, 4096))]
        for off_tag, len_tag in ((273, 279), (324, 325), (513, 514)):
            for off, length in zip(tags.get(off_tag, []), tags.get(len_tag, []), strict=False):
                extent = max(extent, off + length)
        todo += tags.get(330, [])  # SubIFDs
        next_ifd = u(ifd + 2 + count * 12, 4)
        if next_ifd > 0:
            todo.append(next_ifd)
    if extent > len(data):
        raise ImageError(f"truncated camera RAW: its image data runs to byte {extent}, the file has {len(data)}")


def _pillow_only(data: bytes, kind: str, max_dimension: int,
                 max_pixels: int) -> tuple[np.ndarray, int, int, bytes | None]:
    """HEIF, AVIF and JPEG XL: the size from the container first, then Pillow's plugin decodes (once:
    the JPEG XL plugin decodes the whole image as it opens it, so it is opened only after the check)."""
    where = {"heif": "HEIF", "avif": "AVIF", "jxl": "JPEG XL"}[kind]
    size = _jxl_size(data) if kind == "jxl" else _isobmff_size(data, where)
    if size is not None:
        _check_dimensions(*size, max_pixels)
    _require(kind)
    with _decoder_messages() as said:
        try:
            pixels, (width, height), icc = _pillow_decode(data, where, max_dimension, "", max_pixels)
        except ImageError as exc:
            if kind == "jxl" and isinstance(exc.__cause__, RuntimeError):  # its words are about building libjxl
                raise ImageError("could not decode JPEG XL data: corrupt or truncated (libjxl gave no detail)") from exc
            raise ImageError(_with_messages(exc.reason, said)) from exc
    return pixels, width, height, icc


def _check_whole(data: bytes) -> None:
    """A WebP shorter than its RIFF header says is truncated (libwebp only says it cannot decode it), and
    so is a GIF without its trailer byte (the first frame of an animation may be whole: the file is not)."""
    if data.startswith((b"GIF87a", b"GIF89a")) and not data.rstrip(b"\0").endswith(b";"):
        raise ImageError("truncated GIF: data ends before its trailer")
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if len(data) < declared:
            raise ImageError(f"truncated WebP: data ends before the end of its RIFF container "
                             f"({len(data)} of {declared} bytes)")


def _opencv_pixels(data: bytes, fmt: str, mode: str, size: tuple[int, int], max_dimension: int) -> np.ndarray:
    """OpenCV's decode of a file whose header was checked (JPEG at reduced scale); what it cannot decode
    but Pillow identified goes to Pillow."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if fmt == "JPEG":
        if not _jpeg_scan_complete(data):
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
    jpeg_size = _jpeg_dimensions(data)
    if jpeg_size is not None:
        (width, height), fmt, mode = jpeg_size, "JPEG", ""
        _check_dimensions(width, height, max_pixels)
        icc = _jpeg_icc(data)
    else:
        png_icc = _png_icc(data)  # before its chunk is dropped for OpenCV
        data = _png_pixel_chunks(data)
        _check_whole(data)
        fmt, mode, width, height, icc = _probe(data, max_pixels)
        icc = png_icc or icc
    return _opencv_pixels(data, fmt, mode, (width, height), max_dimension), width, height, icc


# --- Colour: embedded ICC profiles other than sRGB are converted to sRGB before Lab ---

_ICC_MARKER = b"ICC_PROFILE\0"


def _jpeg_icc(data: bytes) -> bytes | None:
    """A JPEG's ICC profile, from its APP2 'ICC_PROFILE' segments (in their sequence order), or None.
    OpenCV's decode ignores it; the header walk finds it without decoding anything."""
    parts: dict[int, bytes] = {}
    for pos, marker in _jpeg_header_segments(data):
        if marker == 0xE2:
            length = int.from_bytes(data[pos + 2:pos + 4], "big")
            body = data[pos + 4:pos + 2 + length]
            if body.startswith(_ICC_MARKER) and len(body) > 14:
                parts[body[12]] = body[14:]
    return b"".join(parts[k] for k in sorted(parts)) if parts else None


def _png_icc(data: bytes) -> bytes | None:
    """A PNG's ICC profile from its iCCP chunk (name, NUL, method, zlib data), or None."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    for start, end, kind in _png_chunks(data):
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


def features(data: bytes, max_dimension: int, max_pixels: int = DEFAULT_MAX_PIXELS,
             content_hash: str | None = None, *, suffix: str = "") -> Features:
    """Histogram and content hash of one image file's bytes (pass the hash if already computed);
    `suffix` is the file's extension, for camera RAW files (see `decode`)."""
    decoded = decode(data, max_dimension, max_pixels, suffix=suffix)
    return features_of(decoded, content_hash if content_hash is not None else hash_bytes(data))


def features_of(decoded: Decoded, content_hash: str) -> Features:
    """The histogram of decoded pixels, with the file's content hash."""
    lab = histogram.srgb_to_lab(decoded.rgb)
    w = None if decoded.weights is None else decoded.weights.reshape(-1)
    try:
        hist = histogram.lab_histogram(lab, w)
    except ValueError as exc:
        raise ImageError(str(exc)) from exc
    return Features(histogram=hist, content_hash=content_hash, width=decoded.width, height=decoded.height)




def limit_decoder_threads() -> None:
    """One decoding thread per process: parallelism comes from worker processes (the HEIF, AVIF and
    JPEG XL plugins are set likewise when they are registered)."""
    global _one_thread
    cv2.setNumThreads(1)
    _one_thread = True
    if "rawpy" not in sys.modules:  # LibRaw's demosaic is OpenMP-parallel: one thread, read when it loads
        os.environ["OMP_NUM_THREADS"] = "1"


def decode_reduced_only(data: bytes, max_dimension: int) -> tuple[int, int]:
    """The decode-only limit for the benchmark: header probe (the same as decode's) and reduced-scale
    decode, nothing else."""
    size = _jpeg_dimensions(data)
    if size is None:
        raise ImageError("not a JPEG")
    width, height = size
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8),
                          _reduced_jpeg_flag(width, height, max_dimension) | _IGNORE_ORIENTATION)
    if pixels is None:
        raise ImageError("could not decode")
    return pixels.shape[1], pixels.shape[0]
