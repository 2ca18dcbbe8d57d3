"""Thumbnails for the web app, in the freedesktop thumbnail cache layout: an image module (it decodes).

The layout is the freedesktop Thumbnail Managing Standard's, so file managers and we share thumbnails:
`<cache_root>/<size>/<md5 of the file's URI>.png`, a PNG whose tEXt chunks say which file (Thumb::URI)
at which modification time (Thumb::MTime) it was made from. A cached thumbnail is served only while
both still match the file; a file that cannot be thumbnailed is remembered in
`<cache_root>/fail/chromatica-watch/` the same way, so it is not decoded again until it changes.

Safe to call from several threads: every file is written to a temporary file of its own and renamed
into place, so a reader sees a whole thumbnail or none, and two threads making the same thumbnail at
once just write the same thing twice. A cache that cannot be written (a full disk) is said once, not once
per thumbnail, by `health` (see thumbnail_cache); thumbnails are then made each time they are shown.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from chromatica_watch.core.errors import ImageError
from chromatica_watch.imaging.decoders import Decoded, decode, enable_pillow_for, shrink
from chromatica_watch.imaging.reading import read_file
from chromatica_watch.imaging.thumbnail_cache import CacheHealth, CacheWrite, write_problem

logger = logging.getLogger(__name__)

# The longest side of each size's thumbnails, by the folder the spec names for it.
SIZES: dict[str, int] = {"normal": 128, "large": 256, "x-large": 512, "xx-large": 1024}
FAIL_DIR = os.path.join("fail", "chromatica-watch")
THUMBNAIL_WHILE_INDEXING = "normal"  # the size of the web app's result grid

# What GLib's g_filename_to_uri leaves unescaped in a path besides letters, digits and "-._~": GNOME's
# file managers name their thumbnails by the md5 of that URI, so ours must be the same string byte for
# byte to be shared. With safe="/" alone, "photo (1).jpg" would get another md5 than Nautilus gives it.
_URI_PATH_SAFE = "/!$&'()*+,:=@"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# zlib level 1: a 128 px thumbnail compresses in well under a millisecond and is barely larger than
# at level 9, which costs ~10x the time (first thumbnails must take <= 40 ms).
_PNG_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class _Source:
    """What a thumbnail is valid for: the file's URI, and its mtime and size when it was read."""

    uri: str
    mtime: int  # integer seconds, as Thumb::MTime
    size: int


def file_uri(path: str) -> str:
    """The file:// URI of an absolute path, percent-encoded from the path's bytes (GLib's spelling)."""
    return "file://" + quote(os.fsencode(path), safe=_URI_PATH_SAFE)


def thumbnail_name(uri: str) -> str:
    """The spec's file name for the thumbnail of `uri`: the md5 of the URI, in hex, plus ".png"."""
    return hashlib.md5(uri.encode("ascii"), usedforsecurity=False).hexdigest() + ".png"


def _software() -> str:
    try:
        return f"chromatica-watch {metadata.version('chromatica-watch')}"
    except metadata.PackageNotFoundError:
        return "chromatica-watch"


class Thumbnailer:
    """Makes and caches thumbnails of image files under `cache_root` (e.g. ~/.cache/thumbnails).

    `max_pixels` is the decompression-bomb guard: images of more pixels are refused from their header,
    before any pixel is decoded.
    """

    def __init__(self, cache_root: Path, max_pixels: int) -> None:
        self.cache_root = Path(cache_root)
        self.max_pixels = max_pixels
        self.software = _software()
        self.health = CacheHealth(self.cache_root)  # what this process's writes found (see store_decoded)

    def __getstate__(self) -> dict[str, object]:
        """As handed to an indexing worker: its writes are reported back (store_decoded), not kept there."""
        return {k: v for k, v in self.__dict__.items() if k != "health"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.health = CacheHealth(self.cache_root)

    def path_for(self, path: str, size: str) -> Path:
        """Where the thumbnail of `path` at `size` is cached."""
        return self.cache_root / size / thumbnail_name(file_uri(path))

    def fail_path_for(self, path: str) -> Path:
        """Where a failure to thumbnail `path` is remembered (for every size)."""
        return self.cache_root / FAIL_DIR / thumbnail_name(file_uri(path))

    def get(self, path: str, size: str) -> bytes | None:
        """PNG bytes of the thumbnail of the image file at `path` (absolute), no larger than `size`
        ("normal", "large", "x-large" or "xx-large"; never upscaled), or None when the file cannot be
        thumbnailed (missing, unreadable, not a regular file, not an image, corrupt, over max_pixels).

        Never raises for a bad file: the reason is logged once, at debug level. Raises ValueError for a
        relative path or an unknown size, which are the caller's mistakes.
        """
        longest = _check_request(path, size)
        source = self._stat(path)
        if source is None:
            return None
        thumb_path = self.cache_root / size / thumbnail_name(source.uri)
        fail_path = self.cache_root / FAIL_DIR / thumbnail_name(source.uri)
        cached = _read_valid(thumb_path, source)
        if cached is not None:
            return cached
        if _read_valid(fail_path, source) is not None:
            return None  # failed before, and the file has not changed since: not decoded again
        return self._generate(path, source, longest, thumb_path, fail_path)

    def _stat(self, path: str) -> _Source | None:
        try:
            st = os.stat(path)
        except OSError as exc:
            logger.debug("no thumbnail for %s: %s", path, exc.strerror)
            return None
        return _Source(file_uri(path), st.st_mtime_ns // 1_000_000_000, st.st_size)

    def _generate(self, path: str, seen: _Source, longest: int, thumb_path: Path, fail_path: Path) -> bytes | None:
        try:
            data = read_file(path)
        except ImageError as exc:
            logger.debug("no thumbnail for %s: %s", path, exc.reason)
            if _is_lasting(exc.reason):  # a FIFO, say: remembered as the stat saw it
                self.health.wrote(self._write(fail_path, _failure_png(seen, self.software)))
            return None
        # What is recorded is the mtime and size of the bytes actually read (fstat of the open file).
        source = _Source(seen.uri, data.mtime_ns // 1_000_000_000, data.size)
        try:
            png = _make_thumbnail(data.data, longest, self.max_pixels, source, self.software,
                                  os.path.splitext(path)[1])
        except MemoryError:  # the machine's state, not the file's: not remembered as a failure
            logger.debug("no thumbnail for %s: out of memory while decoding", path)
            return None
        except ImageError as exc:
            logger.debug("no thumbnail for %s: %s", path, exc.reason)
            self.health.wrote(self._write(fail_path, _failure_png(source, self.software)))
            return None
        self.health.wrote(self._write(thumb_path, png))  # served whether it could be kept or not
        return png

    def store_decoded(self, path: str, data: bytes, mtime_ns: int, size: int, decoded: Decoded) -> CacheWrite | None:
        """While indexing: cache the "normal" thumbnail of a file from the pixels its histogram was just made
        of (the indexer decodes at max_dimension, 256 by default, twice the 128 px of "normal"), so the web
        app's grid never waits for a decode. `data`, `mtime_ns` and `size` are the bytes read and their stat.
        A thumbnail already valid for this mtime (a file manager's) is kept. Never raises: a thumbnail that
        cannot be cached is made when first asked for. Returns what the write met, for the daemon's `health`
        (this runs in a worker process), or None when nothing was written."""
        try:
            source = _Source(file_uri(path), mtime_ns // 1_000_000_000, size)
            target = self.cache_root / THUMBNAIL_WHILE_INDEXING / thumbnail_name(source.uri)
            if _read_valid(target, source) is None:
                return self._write(target, _from_decoded(decoded, data, SIZES[THUMBNAIL_WHILE_INDEXING], source,
                                                         self.software))
        except Exception as exc:  # a thumbnail is a convenience: indexing goes on whatever happens here
            logger.debug("no thumbnail cached for %s while indexing: %s", path, exc)
        return None

    def _write(self, target: Path, data: bytes) -> CacheWrite:
        """Cache `data` at `target`; the thumbnail is served anyway when the cache cannot be written."""
        try:
            _write_private(target, data)
        except OSError as exc:
            logger.debug("cannot cache the thumbnail %s: %s", target, exc)
            return CacheWrite(write_problem(exc))
        return CacheWrite()


def _check_request(path: str, size: str) -> int:
    if size not in SIZES:
        raise ValueError(f"unknown thumbnail size {size!r}: one of {', '.join(SIZES)}")
    if not os.path.isabs(path):
        raise ValueError(f"thumbnails are made of absolute paths only, not {path!r}")
    return SIZES[size]


# A file that cannot be opened or read now (permissions, I/O error) may be readable later without its
# mtime changing (a chmod changes only ctime), so that failure is not remembered; a special file or
# bad content is, until the file changes.
_TRANSIENT_PREFIXES = ("unreadable", "cannot open", "read error", "broken symlink", "symlink loop")


def _is_lasting(reason: str) -> bool:
    return not reason.startswith(_TRANSIENT_PREFIXES)


# --- decoding -----------------------------------------------------------------------------------


def _make_thumbnail(data: bytes, longest: int, max_pixels: int, source: _Source, software: str,
                    suffix: str) -> bytes:
    """The thumbnail PNG of an image file's bytes; ImageError with the reason when it cannot be made.

    The pixels are indexing's own decode (`decoders.decode`): every format it reads, the pixel limit checked
    from the header before any pixel is decoded, a JPEG decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
    scaling: a 12 MP photo decodes as ~0.2 MP), an area-averaging downscale, and colours in sRGB (a
    Display P3 or Adobe RGB photo is converted, as browsers show untagged PNGs as sRGB). Only the EXIF
    orientation is added here: the histogram needs none, a person does.
    """
    try:
        decoded = decode(data, longest, max_pixels, suffix=suffix)
    except (ImageError, MemoryError):
        raise
    except Exception as exc:  # a decoder's surprise on bad data is still just a reason, never a traceback
        raise ImageError(f"cannot decode: {type(exc).__name__}: {exc}".strip()) from exc
    return _from_decoded(decoded, data, longest, source, software)


def _from_decoded(decoded: Decoded, data: bytes, longest: int, source: _Source, software: str) -> bytes:
    """The thumbnail PNG of decoded pixels, shrunk to `longest` if larger, turned as the file's EXIF says."""
    frame = Image.fromarray(shrink(_display_pixels(decoded.rgb, decoded.alpha), longest))
    orientation = _orientation(data)
    # Turned after the downscale, so only the thumbnail's pixels move.
    if orientation in _ORIENTATION_TRANSPOSE:
        frame = frame.transpose(_ORIENTATION_TRANSPOSE[orientation])
    shown = (decoded.height, decoded.width) if orientation in _ORIENTATION_SWAPS_SIDES \
        else (decoded.width, decoded.height)
    return _png(frame, _text_chunks(source, shown, software))


def _display_pixels(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """8-bit RGB, or RGBA when the image has transparency (deeper samples are scaled, not clipped)."""
    channels = [rgb] if alpha is None else [rgb, alpha[:, :, None]]
    pixels = np.concatenate(channels, axis=2) if len(channels) > 1 else rgb
    if pixels.dtype != np.uint8:
        pixels = np.round(np.clip(pixels.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(pixels)


# EXIF orientation -> the transpose that displays the image upright (as ImageOps.exif_transpose does).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_SWAPS_SIDES = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112


def _orientation(data: bytes) -> int:
    """The EXIF orientation (1 = upright), from the header alone (Pillow reads no pixel for it). A file
    Pillow cannot open (a camera RAW LibRaw reads) or a damaged EXIF block shows as stored."""
    try:
        enable_pillow_for(data)  # a phone's HEIC keeps its EXIF where Pillow's HEIF plugin finds it
        with Image.open(io.BytesIO(data)) as im:
            value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # Pillow's openers and EXIF parser raise many kinds on data they do not like
        return 1
    return value if isinstance(value, int) else 1


def _text_chunks(source: _Source, image_size: tuple[int, int] | None, software: str) -> dict[str, str]:
    """The spec's keys; Thumb::Image::Width/Height are the original's, as displayed (EXIF applied)."""
    chunks = {"Thumb::URI": source.uri, "Thumb::MTime": str(source.mtime), "Thumb::Size": str(source.size)}
    if image_size is not None:
        chunks["Thumb::Image::Width"], chunks["Thumb::Image::Height"] = map(str, image_size)
    chunks["Software"] = software
    return chunks


def _png(im: Image.Image, text: dict[str, str]) -> bytes:
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    out = io.BytesIO()
    im.save(out, "PNG", pnginfo=info, compress_level=_PNG_COMPRESS_LEVEL)
    return out.getvalue()


def _failure_png(source: _Source, software: str) -> bytes:
    """The spec's failure record: a 1x1 PNG saying which file, at which mtime, could not be done."""
    return _png(Image.new("RGBA", (1, 1)), _text_chunks(source, None, software))


# --- the cache ----------------------------------------------------------------------------------


def _read_valid(cache_file: Path, source: _Source) -> bytes | None:
    """The cached PNG when it is whole and made from the file as it is now, else None."""
    try:
        with open(cache_file, "rb") as f:
            data = f.read()
    except OSError:
        return None
    text = png_text_chunks(data)
    if text is None or text.get("Thumb::URI") != source.uri or text.get("Thumb::MTime") != str(source.mtime):
        return None
    # Optional in the spec, but when it is there a same-second rewrite of another size is caught too.
    if "Thumb::Size" in text and text["Thumb::Size"] != str(source.size):
        return None
    return data


def png_text_chunks(data: bytes) -> dict[str, str] | None:
    """The tEXt chunks of a PNG, or None when `data` is not a whole PNG (up to IEND, CRCs right).

    Walks the chunks without decoding any pixel: a cached thumbnail is checked in microseconds.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return None
    text: dict[str, str] = {}
    pos, n = len(_PNG_SIGNATURE), len(data)
    while pos + 12 <= n:
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > n:
            return None
        if kind == b"IEND":
            return text
        if kind == b"tEXt":
            body = data[pos + 8: end - 4]
            if zlib.crc32(data[pos + 4: end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
                return None
            key, _, value = body.partition(b"\0")
            text[key.decode("latin-1")] = value.decode("latin-1")
        pos = end
    return None  # cut short before IEND: a partial file


def _write_private(target: Path, data: bytes) -> None:
    """Write `data` to `target` atomically, readable by its owner only (the spec's 0600 in 0700 folders).

    The temporary file has a unique name (mkstemp, created 0600), so threads and processes writing the
    same thumbnail never share one; no fsync: a thumbnail lost in a power cut is made again, and a
    partial one fails the chunk walk in `png_text_chunks`.
    """
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
