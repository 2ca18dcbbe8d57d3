"""What an image file is and how large, from its header alone: nothing here decodes a pixel.

The decoders ask this module first, so that a decompression bomb is refused by its pixel count before
anything is decoded, in every format: a JPEG's size by walking its marker segments to the start-of-frame,
a HEIF/AVIF file's from the ISOBMFF `ispe` property of its primary item, a JPEG XL file's from its
SizeHeader, anything else's (or an odd JPEG's) from Pillow's reading of the header (`probe`). `sniff`
tells which decoder a file's bytes go to, by their content. Also the checks that find a truncated file
whatever its decoder would do with it (a JPEG without its end-of-image, a PNG ending before IEND, a GIF
without its trailer, a WebP shorter than its RIFF header, a TIFF-based RAW whose strips run past the end).
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from typing import Literal

from PIL import Image, UnidentifiedImageError

from chromatica_watch.core.errors import ImageError
from chromatica_watch.core.filetypes import RAW_EXTENSIONS

# We enforce our own, configurable pixel limit right after reading the header (see probe); every module
# that opens images with Pillow imports this one.
Image.MAX_IMAGE_PIXELS = None


def probe(data: bytes, max_pixels: int) -> tuple[str, str, int, int, bytes | None]:
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
        raise ImageError(f"corrupt image header: {exception_detail(exc)}") from exc
    check_dimensions(width, height, max_pixels)
    return fmt, mode, width, height, icc


def exception_detail(exc: BaseException) -> str:
    """The last line of an exception's message (bytes from LibRaw decoded), else its type's name."""
    arg = exc.args[0] if len(exc.args) == 1 else None
    text = (arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(exc)).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def check_dimensions(width: int, height: int, max_pixels: int) -> None:
    """ImageError for a size no image has, or more pixels than the limit: refused before decoding."""
    if width <= 0 or height <= 0:
        raise ImageError(f"invalid dimensions {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            f"too many pixels: {width}x{height} = {width * height} exceeds the pixel limit "
            f"{max_pixels} (max_pixels); refused before decoding (possible decompression bomb)")


# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic coded).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment, or None when the header walk is not
    conclusive (not a JPEG, odd or broken header): then Pillow reads the header and judges it.

    ~20x cheaper than opening the file with Pillow, and it also takes camera MPO files (a JPEG with
    extra images after it, which Pillow calls "MPO") as the JPEGs they are, so they decode at reduced
    scale too.
    """
    if data[:3] != b"\xff\xd8\xff":
        return None
    size = None
    for pos, marker in jpeg_header_segments(data):
        if marker == 0xDA:
            return size
        if marker in _JPEG_SOF and pos + 9 <= len(data):  # FF Cn, length(2), precision(1), height(2), width(2)
            height, width = int.from_bytes(data[pos + 5: pos + 7], "big"), int.from_bytes(data[pos + 7: pos + 9], "big")
            size = (width, height) if width > 0 and height > 0 else None
    return None


def jpeg_header_segments(data: bytes) -> Iterator[tuple[int, int]]:
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


def jpeg_scan_complete(data: bytes) -> bool:
    """True when the JPEG's image data ends with an EOI marker after its first scan.

    Header segments (APPn, which may hold a whole thumbnail JPEG) are skipped by their lengths so a
    thumbnail's own EOI cannot pass for the main image's. Some decoders silently grey-fill a truncated
    file; this makes truncation an error whatever the decoder does.
    """
    for pos, marker in jpeg_header_segments(data):
        if marker == 0xDA:  # start of scan: entropy-coded data follows, never containing FF D9
            # Searched from the end, where a complete file has it: a forward search stops at every
            # FF byte of the entropy-coded data (FF 00 stuffing) and costs ~4 ms on a 12 MP photo.
            return data.rfind(b"\xff\xd9", pos) != -1
    return False


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The ancillary chunks OpenCV's pixels depend on: transparency, and APNG's animation chunks.
_PNG_PIXEL_ANCILLARY = frozenset({b"tRNS", b"acTL", b"fcTL", b"fdAT"})


def png_chunks(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, type) of each whole chunk of a PNG, up to and including IEND; stops early, without
    it, where a chunk header is malformed or a chunk runs past the end of the data."""
    pos, n = len(PNG_SIGNATURE), len(data)
    while pos + 12 <= n:
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length  # length, type, data, CRC
        if length > 0x7FFFFFFF or end > n or not kind.isalpha():
            return
        yield pos, end, kind
        if kind == b"IEND":
            return
        pos = end


def png_pixel_chunks(data: bytes) -> bytes:
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
    if not data.startswith(PNG_SIGNATURE):
        return data
    view = memoryview(data)
    parts, kept_from, dropped = [], 0, False
    end, kind = len(PNG_SIGNATURE), b""
    for start, end, kind in png_chunks(data):
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


def check_whole(data: bytes) -> None:
    """A WebP shorter than its RIFF header says is truncated (libwebp only says it cannot decode it), and
    so is a GIF without its trailer byte (the first frame of an animation may be whole: the file is not)."""
    if data.startswith((b"GIF87a", b"GIF89a")) and not data.rstrip(b"\0").endswith(b";"):
        raise ImageError("truncated GIF: data ends before its trailer")
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if len(data) < declared:
            raise ImageError(f"truncated WebP: data ends before the end of its RIFF container "
                             f"({len(data)} of {declared} bytes)")


# --- Which decoder: formats beyond OpenCV's are told apart by content (an extension only decides RAW) ---

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


def declared_size(data: bytes, suffix: str = "") -> tuple[int, int] | None:
    """(width, height) that an image's header declares, read as the decoders read it and nothing decoded
    (a PNG's by Pillow's header probe); None when the header does not say: a camera RAW (LibRaw's to
    read), bytes that are no image or a broken header (the decode then says why)."""
    try:
        kind = sniff(data, suffix)
        if kind == "raw":
            return None
        if kind == "jxl":
            return jxl_size(data)
        if kind != "basic":
            return isobmff_size(data, kind.upper())
        size = jpeg_dimensions(data)
        if size is not None:
            return size
        _, _, width, height, _ = probe(data, max_pixels=2**62)
        return width, height
    except ImageError:
        return None


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


def isobmff_size(data: bytes, where: str) -> tuple[int, int] | None:
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


def jxl_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG XL file's SizeHeader (bare codestream or inside the container's first
    `jxlc`/`jxlp` box), before anything is decoded: the plugin decodes the whole image when it opens it."""
    if data.startswith(_JXL_CONTAINER):
        stream = b""
        for kind, body, end in jxl_container_boxes(data):
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


def jxl_container_boxes(data: bytes) -> Iterator[tuple[bytes, int, int]]:
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


def check_tiff_extent(data: bytes) -> None:
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
