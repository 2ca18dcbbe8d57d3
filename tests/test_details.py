"""photo_details: the date taken, camera and orientation from real files' headers, written by the libraries
themselves (Pillow, pillow-heif, pillow-jxl-plugin, tifffile), and no exception for any bytes at all."""

from __future__ import annotations

import io
import logging
import os
import warnings
import zlib
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin, TiffImagePlugin

from chromatica_watch.core.records import PhotoDetails
from chromatica_watch.imaging.details import photo_details
from tests import format_files

MTIME_NS = 1_600_000_000_123_456_789
MTIME = datetime.fromtimestamp(1_600_000_000) + timedelta(microseconds=123_456)  # local wall clock, naive
TAKEN = datetime(2021, 6, 5, 14, 3, 22)
EXIF_IFD = 0x8769


def pixels(width: int = 400, height: int = 300) -> np.ndarray:
    rng = np.random.default_rng(width * height)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def exif(make: str | None = "Canon", model: str | None = "Canon EOS R5", orientation: int | None = None,
         original: str | None = "2021:06:05 14:03:22", digitized: str | None = None,
         changed: str | None = None) -> Image.Exif:
    """EXIF as a camera writes it: Make, Model, Orientation, DateTime in IFD0, the other dates in the Exif IFD."""
    out = Image.Exif()
    for tag, value in ((271, make), (272, model), (274, orientation), (306, changed)):
        if value is not None:
            out[tag] = value
    for tag, value in ((36867, original), (36868, digitized)):
        if value is not None:
            out.get_ifd(EXIF_IFD)[tag] = value
    return out


def saved(fmt: str, rgb: np.ndarray | None = None, **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels() if rgb is None else rgb).save(buf, fmt, **params)
    return buf.getvalue()


def details(data: bytes, suffix: str = ".jpg", **size: int) -> PhotoDetails:
    return photo_details(data, suffix, MTIME_NS, **size)


def xmp_packet(body: str) -> bytes:
    return (f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            f'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">{body}</rdf:RDF></x:xmpmeta>'
            f'<?xpacket end="w"?>').encode()


def png_with_text(keyword: str, text: str, itxt: bool = False) -> bytes:
    info = PngImagePlugin.PngInfo()
    if itxt:
        info.add_itxt(keyword, text)
    else:
        info.add_text(keyword, text)
    return saved("PNG", pnginfo=info)


# --- JPEG -----------------------------------------------------------------------------------------------------

def test_jpeg_exif_date_camera_and_size_from_the_header() -> None:
    assert details(saved("JPEG", exif=exif())) == PhotoDetails(TAKEN, "exif", "Canon EOS R5", "landscape")


@pytest.mark.parametrize(("dates", "taken"), [
    ({"original": None, "digitized": "2021:06:05 14:03:23", "changed": "2022:01:01 00:00:00"},
     datetime(2021, 6, 5, 14, 3, 23)),
    ({"original": None, "changed": "2022:01:01 10:11:12"}, datetime(2022, 1, 1, 10, 11, 12)),
    ({"original": "2021:06:05 14:03:22\x00\x00", "changed": "2022:01:01 00:00:00"}, TAKEN),
])
def test_exif_dates_in_order(dates: dict[str, str | None], taken: datetime) -> None:
    assert details(saved("JPEG", exif=exif(**dates))).taken == taken


@pytest.mark.parametrize("bad", ["0000:00:00 00:00:00", "    :  :     ", "2021:13:05 14:03:22", "", "yesterday",
                                 "2021:02:30 10:00:00", "0001:01:01 00:00:00"])
def test_impossible_exif_dates_fall_through(bad: str) -> None:
    assert details(saved("JPEG", exif=exif(original=bad))) == PhotoDetails(MTIME, "mtime", "Canon EOS R5", "landscape")
    both = exif(original=bad, digitized=bad, changed="2020:02:29 23:59:59")
    assert details(saved("JPEG", exif=both)).taken == datetime(2020, 2, 29, 23, 59, 59)


def test_zero_exif_date_from_a_real_file_gives_its_mtime(tmp_path: Path) -> None:
    path = tmp_path / "zero.jpg"
    path.write_bytes(saved("JPEG", exif=exif(original="0000:00:00 00:00:00")))
    os.utime(path, ns=(MTIME_NS, MTIME_NS))
    got = photo_details(path.read_bytes(), ".jpg", path.stat().st_mtime_ns)
    assert (got.taken, got.taken_source) == (MTIME, "mtime")


@pytest.mark.parametrize(("make", "model", "camera"), [
    ("Canon", "Canon EOS R5", "Canon EOS R5"),
    ("NIKON CORPORATION", "NIKON D850", "NIKON D850"),
    ("Apple", "iPhone 12", "Apple iPhone 12"),
    ("SONY\x00\x00", "  ILCE-7M3 ", "SONY ILCE-7M3"),
    ("LG", "LGE Nexus 5", "LG LGE Nexus 5"),
    ("canon", "Canon EOS 5D", "Canon EOS 5D"),
    (None, "DMC-GX8", "DMC-GX8"),
    ("FUJIFILM", None, "FUJIFILM"),
    (None, None, None),
    ("   ", "\x00", None),
])
def test_camera(make: str | None, model: str | None, camera: str | None) -> None:
    assert details(saved("JPEG", exif=exif(make=make, model=model))).camera == camera


@pytest.mark.parametrize(("size", "orientation", "shown"), [
    ((400, 300), 6, "portrait"), ((400, 300), 8, "portrait"), ((400, 300), 5, "portrait"),
    ((400, 300), 7, "portrait"), ((400, 300), 3, "landscape"), ((400, 300), 1, "landscape"),
    ((300, 400), None, "portrait"), ((300, 400), 6, "landscape"), ((300, 303), None, "square"),
    ((303, 300), 6, "square"), ((300, 304), None, "portrait"), ((256, 256), 8, "square"),
])
def test_orientation(size: tuple[int, int], orientation: int | None, shown: str) -> None:
    data = saved("JPEG", pixels(*size), exif=exif(orientation=orientation))
    assert details(data).orientation == shown
    assert details(data, width=size[0], height=size[1]).orientation == shown


def test_the_callers_size_is_believed_over_the_header() -> None:
    data = saved("JPEG", exif=exif(orientation=6))
    assert details(data, width=300, height=400).orientation == "landscape"
    assert details(data, width=0, height=0).orientation == "portrait"  # not known: the header's


def test_jpeg_xmp_when_exif_has_no_date() -> None:
    packet = xmp_packet('<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" '
                        'exif:DateTimeOriginal="2021-06-05T14:03:22.50+02:00"/>')
    got = details(saved("JPEG", exif=exif(original=None), xmp=packet))
    assert got == PhotoDetails(TAKEN, "xmp", "Canon EOS R5", "landscape")
    assert details(saved("JPEG", exif=exif(), xmp=packet)).taken_source == "exif"


def test_jpeg_whose_image_data_is_garbage_still_gives_its_header() -> None:
    """Nothing is decoded: the entropy-coded data after the start of scan is random bytes without an end,
    or missing altogether (which no decoder gets a pixel from)."""
    data = saved("JPEG", exif=exif(orientation=6))
    scan = data.index(b"\xff\xda")
    headers = data[:scan + 2 + int.from_bytes(data[scan + 2:scan + 4], "big")]
    with pytest.raises(OSError, match="truncated"), Image.open(io.BytesIO(headers)) as im:
        im.load()
    noise = np.random.default_rng(1).integers(0, 255, 200_000, dtype=np.uint8).tobytes()  # no FF: no marker
    for garbage in (headers, headers + noise):
        assert details(garbage) == PhotoDetails(TAKEN, "exif", "Canon EOS R5", "portrait")


# --- PNG ------------------------------------------------------------------------------------------------------

def test_png_exif_chunk() -> None:
    data = saved("PNG", pixels(300, 400), exif=exif(make="NIKON CORPORATION", model="NIKON Z 6"))
    assert b"eXIf" in data
    assert details(data, ".png") == PhotoDetails(TAKEN, "exif", "NIKON Z 6", "portrait")


def test_png_exif_after_the_image_data_is_read_without_decoding() -> None:
    """Pillow only reads chunks after IDAT by decoding; the chunks are walked here instead."""
    data = saved("PNG")
    body = exif().tobytes().removeprefix(b"Exif\x00\x00")  # eXIf holds the TIFF header on
    chunk = len(body).to_bytes(4, "big") + b"eXIf" + body + zlib.crc32(b"eXIf" + body).to_bytes(4, "big")
    iend = data.index(b"IEND") - 4
    assert details(data[:iend] + chunk + data[iend:], ".png").taken == TAKEN


@pytest.mark.parametrize(("text", "itxt"), [
    ("Sat, 05 Jun 2021 14:03:22 GMT", False), ("Sat, 05 Jun 2021 14:03:22 +0200", False),
    ("2021-06-05T14:03:22", False), ("2021-06-05 14:03:22+02:00", True), ("2021:06:05 14:03:22", True),
])
def test_png_creation_time(text: str, itxt: bool) -> None:
    assert details(png_with_text("Creation Time", text, itxt), ".png") == PhotoDetails(TAKEN, "png", None, "landscape")


def test_png_creation_time_that_is_no_date_gives_the_mtime() -> None:
    got = details(png_with_text("Creation Time", "last summer"), ".png")
    assert (got.taken, got.taken_source) == (MTIME, "mtime")


@pytest.mark.parametrize(("body", "taken"), [
    ('<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreateDate="2021-06-05T14:03:22Z"/>', TAKEN),
    ('<rdf:Description><photoshop:DateCreated>2021-06-05</photoshop:DateCreated>'
     '<xmp:CreateDate>2022-01-01T10:00:00</xmp:CreateDate></rdf:Description>', datetime(2021, 6, 5)),
    ('<rdf:Description xmp:CreateDate="2021-06-05T14:03" exif:DateTimeOriginal="0000-00-00T00:00:00"/>',
     datetime(2021, 6, 5, 14, 3)),
    ("<rdf:Description xmp:CreateDate='2021-06-05T14:03:22-07:00'/>", TAKEN),
])
def test_png_xmp(body: str, taken: datetime) -> None:
    data = png_with_text("XML:com.adobe.xmp", xmp_packet(body).decode(), itxt=True)
    assert details(data, ".png") == PhotoDetails(taken, "xmp", None, "landscape")


def test_xmp_is_preferred_to_png_creation_time() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Creation Time", "2020-01-01T00:00:00")
    info.add_itxt("XML:com.adobe.xmp", xmp_packet('<rdf:Description xmp:CreateDate="2021-06-05T14:03:22"/>').decode(),
                  zip=True)
    got = details(saved("PNG", pnginfo=info), ".png")
    assert (got.taken, got.taken_source) == (TAKEN, "xmp")


# --- Other formats --------------------------------------------------------------------------------------------

def test_webp_exif() -> None:
    assert details(saved("WEBP", exif=exif(orientation=6)), ".webp") == PhotoDetails(TAKEN, "exif", "Canon EOS R5",
                                                                                     "portrait")


def tiff_with_exif(orientation: int = 1) -> bytes:
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[271], tags[272], tags[274], tags[306] = "NIKON CORPORATION", "NIKON D850", orientation, "2022:01:01 00:00:00"
    tags[EXIF_IFD] = {36867: "2021:06:05 14:03:22"}
    return saved("TIFF", tiffinfo=tags)


@pytest.mark.parametrize("suffix", [".tif", ".nef", ".arw", ".cr2"])
def test_tiff_and_tiff_based_raw(suffix: str) -> None:
    assert details(tiff_with_exif(6), suffix) == PhotoDetails(TAKEN, "exif", "NIKON D850", "portrait")


@pytest.mark.parametrize(("magic", "suffix"), [(b"IIRO", ".orf"), (b"IIRS", ".orf"), (b"IIU\x00", ".rw2")])
def test_olympus_and_panasonic_raw_magic(magic: bytes, suffix: str) -> None:
    data = tiff_with_exif()
    assert details(magic + data[4:], suffix) == PhotoDetails(TAKEN, "exif", "NIKON D850", "landscape")


def test_dng_with_camera_tags_in_ifd0() -> None:
    """A DNG as tifffile writes it: DateTimeOriginal in IFD0 (TIFF/EP), the size the preview's."""
    import tifffile

    tags = [(271, "s", 0, "Canon", True), (272, "s", 0, "Canon EOS R5", True), (274, "H", 1, 8, True),
            (306, "s", 0, "2022:01:01 00:00:00", True), (36867, "s", 0, "2021:06:05 14:03:22", True),
            (50706, "B", 4, (1, 4, 0, 0), True)]
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        tif.write(np.zeros((300, 400), np.uint16), photometric=32803, subfiletype=0, extratags=tags, metadata=None)
    assert details(buf.getvalue(), ".dng") == PhotoDetails(TAKEN, "exif", "Canon EOS R5", "portrait")


def test_dng_xmp_packet_tag() -> None:
    import tifffile

    packet = xmp_packet('<rdf:Description photoshop:DateCreated="2021-06-05T14:03:22+09:00"/>')
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((400, 300), np.uint16), photometric=32803, metadata=None,
                     extratags=[(271, "s", 0, "PENTAX Corporation", True), (272, "s", 0, "PENTAX K-1", True),
                                (700, "B", len(packet), packet, True), (50706, "B", 4, (1, 4, 0, 0), True)])
    assert details(buf.getvalue(), ".dng") == PhotoDetails(TAKEN, "xmp", "PENTAX K-1", "portrait")


@pytest.mark.parametrize(("fmt", "suffix"), [("WEBP", ".webp"), ("AVIF", ".avif"), ("JPEG", ".jpg")])
def test_xmp_through_pillow(fmt: str, suffix: str) -> None:
    packet = xmp_packet('<rdf:Description><exif:DateTimeOriginal>2021-06-05T14:03:22</exif:DateTimeOriginal>'
                        '</rdf:Description>')
    assert details(saved(fmt, xmp=packet), suffix) == PhotoDetails(TAKEN, "xmp", None, "landscape")


def test_dng_from_format_files() -> None:
    got = details(format_files.dng(pixels()), ".dng")
    assert got == PhotoDetails(MTIME, "mtime", "chromatica test camera", "landscape")


def test_heic_exif() -> None:
    import pillow_heif

    heif = pillow_heif.from_bytes("RGB", (400, 300), pixels().tobytes())
    buf = io.BytesIO()
    heif.save(buf, quality=60, exif=exif(make="Apple", model="iPhone 12").tobytes())
    assert details(buf.getvalue(), ".heic") == PhotoDetails(TAKEN, "exif", "Apple iPhone 12", "landscape")


def test_heic_without_exif() -> None:
    data = format_files.heic(pixels(300, 400), quality=60)
    assert details(data, ".heic") == PhotoDetails(MTIME, "mtime", None, "portrait")


def test_avif_exif() -> None:
    assert details(saved("AVIF", exif=exif(), quality=50), ".avif") == PhotoDetails(TAKEN, "exif", "Canon EOS R5",
                                                                                   "landscape")


def test_jxl_exif_and_xmp() -> None:
    import pillow_jxl  # noqa: F401 - registers the plugin, for writing

    data = saved("JXL", exif=exif().tobytes(), quality=60)
    assert details(data, ".jxl") == PhotoDetails(TAKEN, "exif", "Canon EOS R5", "landscape")
    packet = xmp_packet('<rdf:Description xmp:CreateDate="2021-06-05T14:03:22"/>')
    data = saved("JXL", pixels(300, 400), exif=exif(original=None).tobytes(), xmp=packet, quality=60)
    assert details(data, ".jxl") == PhotoDetails(TAKEN, "xmp", "Canon EOS R5", "portrait")


def test_bare_jxl_codestream_gives_its_size() -> None:
    data = format_files.jxl(pixels(300, 300), quality=60)
    assert details(data, ".jxl") == PhotoDetails(MTIME, "mtime", None, "square")


@pytest.mark.parametrize(("fmt", "suffix"), [("GIF", ".gif"), ("BMP", ".bmp")])
def test_formats_without_metadata_give_the_mtime(fmt: str, suffix: str) -> None:
    assert details(saved(fmt), suffix) == PhotoDetails(MTIME, "mtime", None, "landscape")


# --- Damage ---------------------------------------------------------------------------------------------------

def every_format() -> dict[str, bytes]:
    import pillow_jxl  # noqa: F401

    packet = xmp_packet('<rdf:Description xmp:CreateDate="2021-06-05T14:03:22"/>')
    info = PngImagePlugin.PngInfo()
    info.add_text("Creation Time", "2021-06-05T14:03:22")
    info.add_itxt("XML:com.adobe.xmp", packet.decode(), zip=True)
    return {".jpg": saved("JPEG", exif=exif(), xmp=packet), ".png": saved("PNG", exif=exif(), pnginfo=info),
            ".webp": saved("WEBP", exif=exif(), xmp=packet), ".tif": tiff_with_exif(),
            ".dng": format_files.dng(pixels(64, 48)), ".jxl": saved("JXL", exif=exif().tobytes(), xmp=packet),
            ".heic": format_files.heic(pixels(64, 48)), ".avif": saved("AVIF", exif=exif(), xmp=packet),
            ".gif": saved("GIF")}


def test_truncated_and_garbled_files_never_raise_nor_make_noise(caplog: pytest.LogCaptureFixture,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    rng = np.random.default_rng(7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would fail the test
        for suffix, data in every_format().items():
            for cut in [*range(0, 400, 7), *range(400, len(data), max(1, len(data) // 40))]:
                assert details(data[:cut], suffix).taken_source in ("exif", "xmp", "png", "mtime")
            for _ in range(40):
                garbled = np.frombuffer(data, np.uint8).copy()
                garbled[rng.integers(0, min(len(data), 600), 8)] = rng.integers(0, 256, 8, dtype=np.uint8)
                assert details(garbled.tobytes(), suffix).taken_source in ("exif", "xmp", "png", "mtime")
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []
    assert capfd.readouterr() == ("", "")


def test_whole_files_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for suffix, data in every_format().items():
        details(data, suffix)
    assert [r for r in caplog.records if r.name.startswith("chromatica_watch") or r.levelno > logging.DEBUG] == []


def test_corrupt_exif_segment() -> None:
    data = saved("JPEG", exif=exif())
    start = data.index(b"Exif\x00\x00") + 6
    broken = data[:start + 4] + b"\xff\xff\xff\x7f" + data[start + 8:]  # IFD0 far past the end
    assert details(broken) == PhotoDetails(MTIME, "mtime", None, "landscape")
    looping = exif()
    looping[EXIF_IFD] = 8  # the Exif IFD pointer back at IFD0
    assert details(saved("JPEG", exif=looping)).camera == "Canon EOS R5"


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*\xff\xff",
                                  b"IIU\x00\x08\x00\x00\x00", b"\x00\x00\x00\x0cJXL \r\n\x87\n",
                                  np.random.default_rng(3).integers(0, 256, 100_000, dtype=np.uint8).tobytes()])
@pytest.mark.parametrize("suffix", [".jpg", ".png", ".nef", ".heic", ".jxl", ".gif"])
def test_random_and_empty_bytes(data: bytes, suffix: str) -> None:
    assert details(data, suffix) == PhotoDetails(MTIME, "mtime", None, None)
    assert details(data, suffix, width=10, height=20) == PhotoDetails(MTIME, "mtime", None, "portrait")


def test_an_mtime_beyond_any_calendar_gives_no_date() -> None:
    assert photo_details(b"", ".jpg", 10**30) == PhotoDetails(None, "mtime", None, None)
