"""What a photo's headers say (when it was taken, the camera, its orientation as shown), read from the bytes
already in memory without decoding a pixel, so that indexing records it at almost no cost.

Metadata is found where each format keeps it: a JPEG's APP1 segments (EXIF, XMP), a PNG's chunks (eXIf, text,
also after the image data, which Pillow reads only by decoding) and a JPEG XL container's Exif and xml boxes
(its plugin decodes as it opens) are walked here; TIFF and TIFF-based RAW files (DNG, NEF, CR2, ARW, PEF, ORF,
RW2...) go to Pillow's EXIF reader as they are; WebP, HEIF, AVIF and the rest to Pillow's lazy `Image.open`.
The date taken is EXIF's, else XMP's, else a PNG "Creation Time", else the mtime; a date that does not parse or
cannot be real falls through. XMP is read by a narrow pattern for three properties, not by an XML parser:
defusedxml is not installed and the standard library's are not safe against hostile XML. Nothing raises.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import TypeVar

from PIL import Image, TiffImagePlugin

from chromatica_watch.core.records import PhotoDetails
from chromatica_watch.imaging.decoders import enable_pillow_for
from chromatica_watch.imaging.headers import (
    PNG_SIGNATURE,
    jpeg_dimensions,
    jpeg_header_segments,
    jxl_container_boxes,
    jxl_size,
    png_chunks,
)
from chromatica_watch.imaging.headers import sniff as sniff_kind

logger = logging.getLogger(__name__)
T = TypeVar("T")

_EXIF_IFD = 0x8769
# (IFD, tag) in the order they are believed: DateTimeOriginal, DateTimeDigitized (in the Exif IFD, or in
# IFD0 as TIFF/EP RAW files put them), then IFD0's DateTime (the last edit, as a last resort).
_DATE_TAGS = ((_EXIF_IFD, 36867), (0, 36867), (_EXIF_IFD, 36868), (0, 36868), (0, 306))
_MAKE, _MODEL, _ORIENTATION, _XMP_PACKET = 271, 272, 274, 700
_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_EARLIEST_YEAR = 1800  # no photograph is older: an earlier date is a camera's placeholder
_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_II, _MM = b"II*\x00", b"MM\x00*"
_TIFF_MAGIC = (_II, _MM, b"IIRO", b"IIRS", b"MMOR", b"IIU\x00")  # TIFF's, and Olympus ORF's and Panasonic RW2's
_XMP_LIMIT = 1 << 20  # bytes of an XMP packet searched, and of a PNG text chunk inflated
# The date properties, as an attribute (`exif:DateTimeOriginal="..."`) or an element's text, best first.
_XMP_DATES = tuple(
    re.compile(rb"(?<![\w:.-])" + name + rb"""\s*=\s*(?:"([^"<]*)"|'([^'<]*)')|<""" + name + rb"(?:\s[^>]*)?>([^<]*)<")
    for name in (rb"exif:DateTimeOriginal", rb"photoshop:DateCreated", rb"xmp:CreateDate"))
# EXIF's "YYYY:MM:DD HH:MM:SS" and ISO 8601 (date only, minutes, fractions, offsets): the wall clock as written.
_DATE = re.compile(r"(\d{4})[:-](\d\d)[:-](\d\d)(?:[ T](\d\d):(\d\d)(?::(\d\d))?)?")


@dataclass
class _Found:
    """What a format's reader found in the headers; each part None when absent."""

    exif: Image.Exif | None = None
    xmp: bytes | None = None
    png_time: bytes | None = None
    size: tuple[int, int] | None = None  # as stored
    turns: bool = True  # whether the EXIF orientation applies (not in JPEG XL: its codestream's one does)


def photo_details(data: bytes, suffix: str, mtime_ns: int, width: int | None = None,
                  height: int | None = None) -> PhotoDetails:
    """When the photo was taken (and where that is known from), its camera and its orientation as shown,
    from the headers of the file's bytes. `width`/`height`: the stored (not rotated) pixel size when known,
    else it is read from the header. Never raises: what cannot be read is unknown, the date the mtime."""
    found = _safely("headers", lambda: _read(data, suffix)) or _Found()
    dated = _safely("date", partial(_taken, found))
    taken, source = dated if dated else (_safely("mtime", partial(_mtime, mtime_ns)), "mtime")
    size = (width, height) if width and height and min(width, height) > 0 else found.size
    camera = _safely("camera", partial(_camera, found.exif)) if found.exif else None
    orientation = _safely("orientation", lambda: _orientation(size, found.exif if found.turns else None))
    return PhotoDetails(taken=taken, taken_source=source, camera=camera, orientation=orientation)


def _safely(what: str, read: Callable[[], T]) -> T | None:
    """`read()`, or None when the metadata it reads is damaged (Pillow's warnings about it silenced)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read()
    except Exception as exc:  # any bytes at all: Pillow and struct raise many kinds on damaged metadata
        logger.debug("unreadable %s metadata: %r", what, exc)
        return None


def _read(data: bytes, suffix: str) -> _Found:
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg(data)
    if data.startswith(PNG_SIGNATURE):
        return _png(data)
    if data[:4] in _TIFF_MAGIC:
        return _tiff(data)
    kind = sniff_kind(data, suffix)
    if kind == "raw":  # CR3, RAF...: not TIFF-based
        return _Found()
    return _jxl(data) if kind == "jxl" else _pillow(data, kind)


def _exif(tiff: bytes) -> Image.Exif | None:
    """EXIF from a TIFF header (or a RAW's own magic) and what follows; None if there is none or it is damaged."""
    tiff = tiff.removeprefix(b"Exif\x00\x00")
    return _safely("EXIF", partial(_loaded, tiff)) if tiff[:4] in _TIFF_MAGIC else None


def _loaded(tiff: bytes) -> Image.Exif:
    """IFD0 read where the header points, whatever its magic, without copying (the Exif IFD is read when asked)."""
    exif = Image.Exif()
    exif.endian = "<" if tiff[:2] == b"II" else ">"
    exif.load_from_fp(io.BytesIO(tiff), int.from_bytes(tiff[4:8], "little" if exif.endian == "<" else "big"))
    return exif


def _jpeg(data: bytes) -> _Found:
    found = _Found(size=jpeg_dimensions(data))
    for pos, marker in jpeg_header_segments(data):
        if marker != 0xE1:  # APP1
            continue
        body = data[pos + 4:pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")]
        if found.exif is None and body.startswith(b"Exif\x00"):
            found.exif = _exif(body[6:])
        elif found.xmp is None and body.startswith(_JPEG_XMP):
            found.xmp = body[len(_JPEG_XMP):]
    return found


def _png(data: bytes) -> _Found:
    """All chunks are looked at: eXIf and text may come after the image data."""
    found = _Found()
    for start, end, kind in png_chunks(data):
        if kind == b"IHDR" and end - start >= 20:
            found.size = (int.from_bytes(data[start + 8:start + 12], "big"),
                          int.from_bytes(data[start + 12:start + 16], "big"))
        elif kind == b"eXIf" and found.exif is None:
            found.exif = _exif(data[start + 8:end - 4])
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword, text = _png_text(kind, data[start + 8:end - 4])
            if keyword == b"Creation Time" and found.png_time is None:
                found.png_time = text
            elif keyword == b"XML:com.adobe.xmp" and found.xmp is None:
                found.xmp = text
    return found


def _png_text(kind: bytes, body: bytes) -> tuple[bytes, bytes]:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk, the text inflated (at most _XMP_LIMIT bytes)."""
    keyword, _, rest = body.partition(b"\x00")
    compressed = kind == b"zTXt" or (kind == b"iTXt" and rest[:1] == b"\x01")
    if kind != b"tEXt":  # past the compression method; in iTXt its flag, language tag and translated keyword
        rest = rest[1:] if kind == b"zTXt" else rest[2:].split(b"\x00", 2)[-1]
    if compressed:
        rest = zlib.decompressobj().decompress(rest, _XMP_LIMIT)
    return keyword, rest


def _tiff(data: bytes) -> _Found:
    """A TIFF or TIFF-based RAW; the size is IFD0's image's (in a RAW, a preview with the picture's proportions)."""
    exif = _exif(data)
    if exif is None:
        return _Found()
    width, height, xmp = exif.get(256), exif.get(257), exif.get(_XMP_PACKET)
    size = (width, height) if isinstance(width, int) and isinstance(height, int) else None
    return _Found(exif=exif, xmp=xmp if isinstance(xmp, bytes) else None, size=size)


def _jxl(data: bytes) -> _Found:
    """A JPEG XL container's Exif box (a 4-byte offset to the TIFF header first, which pillow-jxl-plugin
    leaves out) and xml box (XMP); a bare codestream has neither."""
    found = _Found(size=_safely("JPEG XL size", lambda: jxl_size(data)), turns=False)
    for kind, body, end in jxl_container_boxes(data):
        if kind == b"Exif" and found.exif is None and end - body > 4:
            skip = 0 if data[body:body + 4] in (_II, _MM) else 4 + int.from_bytes(data[body:body + 4], "big")
            found.exif = _exif(data[body + skip:end])
        elif kind == b"xml " and found.xmp is None:
            found.xmp = data[body:end]
    return found


def _pillow(data: bytes, kind: str) -> _Found:
    """WebP, HEIF, AVIF, BigTIFF and anything else Pillow opens lazily (GIF and BMP have no EXIF)."""
    if kind in ("heif", "avif"):
        enable_pillow_for(data)
    with Image.open(io.BytesIO(data)) as im:
        xmp = im.info.get("xmp")
        return _Found(exif=im.getexif(), xmp=xmp if isinstance(xmp, bytes) else None, size=im.size)


def _taken(found: _Found) -> tuple[datetime, str] | None:
    """The date taken and its source: the first of EXIF, XMP and a PNG's Creation Time to give a real one."""
    if found.exif is not None and (taken := _exif_date(found.exif)):
        return taken, "exif"
    if found.xmp and (taken := _safely("XMP", partial(_xmp_date, found.xmp))):
        return taken, "xmp"
    if found.png_time and (taken := _date(found.png_time.decode("latin-1"))):
        return taken, "png"
    return None


def _exif_date(exif: Image.Exif) -> datetime | None:
    ifds = {0: exif, _EXIF_IFD: _safely("Exif IFD", partial(_exif_ifd, exif)) or {}}
    for ifd, tag in _DATE_TAGS:
        text = _text(_safely("EXIF date", partial(ifds[ifd].get, tag)))
        if text and (taken := _date(text)):
            return taken
    return None


def _exif_ifd(exif: Image.Exif) -> Mapping[int, object]:
    """The Exif IFD, a value unpacked only when asked for (`get_ifd` unpacks them all: twice the time)."""
    if _EXIF_IFD not in exif:
        return {}
    ifd = TiffImagePlugin.ImageFileDirectory_v2(exif.head, group=_EXIF_IFD)
    exif.fp.seek(exif[_EXIF_IFD])
    ifd.load(exif.fp)
    return ifd


def _xmp_date(xmp: bytes) -> datetime | None:
    packet = xmp[:_XMP_LIMIT]
    for pattern in _XMP_DATES:
        for match in pattern.finditer(packet):
            value = next(group for group in match.groups() if group is not None)
            if taken := _date(value.decode("utf-8", "replace")):
                return taken
    return None


def _date(text: str) -> datetime | None:
    """The wall-clock time a date string says (EXIF, ISO 8601 or RFC 1123), naive; None when it does not
    parse or cannot be a photo's date (year 0000, month 13, blanks)."""
    text = text.strip()
    try:
        match = _DATE.match(text)
        if match:
            year, month, day, hour, minute, second = (int(part or 0) for part in match.groups())
            taken = datetime(year, month, day, hour, minute, second)
        else:
            taken = parsedate_to_datetime(text).replace(tzinfo=None)
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    return taken if taken.year >= _EARLIEST_YEAR else None


def _mtime(mtime_ns: int) -> datetime:
    """The mtime as local wall-clock time, naive, to the microsecond."""
    return datetime.fromtimestamp(mtime_ns // 10**9) + timedelta(microseconds=mtime_ns % 10**9 // 1000)


def _text(value: object) -> str | None:
    """An EXIF ASCII value up to its first NUL, stripped; None when empty or not text."""
    value = value.decode("latin-1") if isinstance(value, bytes) else value
    if not isinstance(value, str):
        return None
    return value.split("\x00", 1)[0].strip() or None


def _camera(exif: Image.Exif) -> str | None:
    """"Make Model", the make left out when the model already starts with it or with its first word
    ("Canon" + "Canon EOS R5", "NIKON CORPORATION" + "NIKON D850"; not "LG" + "LGE Nexus 5")."""
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    if not make or not model:
        return model or make
    for prefix in (make, make.split()[0]):
        if model.casefold().startswith(prefix.casefold()) and not model[len(prefix):][:1].isalnum():
            return model
    return f"{make} {model}"


def _orientation(size: tuple[int, int] | None, exif: Image.Exif | None) -> str | None:
    """"landscape", "portrait" or "square" (sides within 1% of the longer one) as shown: the stored size
    turned by a quarter when the EXIF orientation says so."""
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    width, height = size
    if exif is not None and exif.get(_ORIENTATION) in _TURNED:
        width, height = height, width
    if abs(width - height) <= 0.01 * max(width, height):
        return "square"
    return "landscape" if width > height else "portrait"
