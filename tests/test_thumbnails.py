"""Thumbnails in the freedesktop cache layout: made from real photos, cached, refreshed, and refused."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from chromatica_watch.imaging.thumbnails import Thumbnailer, file_uri
from chromatica_watch.ingest.pool import Indexed, Task, process
from tests.conftest import photo, write_rgb

MAX_PIXELS = 150_000_000
LOGGER = "chromatica_watch.imaging.thumbnails"


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "thumbnails"


@pytest.fixture
def thumbs(cache: Path) -> Thumbnailer:
    return Thumbnailer(cache, MAX_PIXELS)


def md5_png(uri: str) -> str:
    return hashlib.md5(uri.encode("ascii")).hexdigest() + ".png"


def plain_uri(path: Path) -> str:
    """The URI of a path made only of characters no encoder escapes (checked), spelled out by hand."""
    assert re.fullmatch(r"[A-Za-z0-9/_.-]+", str(path)), path
    return f"file://{path}"


def open_png(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    assert im.format == "PNG"
    im.load()
    return im


def text_of(data: bytes) -> dict[str, str]:
    """The PNG's text chunks, as Pillow reads them (not the module's own chunk walker)."""
    return dict(open_png(data).text)  # type: ignore[attr-defined]


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> Path:
    return write_rgb(path, rgb, IMWRITE_JPEG_QUALITY=quality)


def mtime_s(path: Path | bytes) -> str:
    return str(os.stat(path).st_mtime_ns // 1_000_000_000)


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height RGB pixels, with a few bytes of data behind it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def assert_close(actual: np.ndarray, expected: tuple[int, ...], tol: int = 40) -> None:
    assert np.abs(actual.astype(int) - np.array(expected)).max() <= tol, (actual, expected)


# --- the freedesktop layout -------------------------------------------------------------------------


def test_thumbnail_is_cached_at_the_freedesktop_path_with_its_text_chunks(tmp_path: Path, cache: Path,
                                                                         thumbs: Thumbnailer) -> None:
    folder = tmp_path / "my photos"
    folder.mkdir()
    name = b"caf\xe9 (1).jpg"  # Latin-1 e-acute: not valid UTF-8
    raw = os.fsencode(folder) + b"/" + name
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, write_jpeg(tmp_path / "src.jpg", photo("chelsea")).read_bytes())
    os.close(fd)
    path = os.fsdecode(raw)

    data = thumbs.get(path, "normal")

    assert data is not None
    # Spelled as GLib's g_filename_to_uri spells it (checked against `gio list -u`): space and the
    # non-UTF-8 byte escaped, parentheses not.
    uri = plain_uri(tmp_path) + "/my%20photos/caf%E9%20(1).jpg"
    assert file_uri(path) == uri
    cached = cache / "normal" / md5_png(uri)
    assert cached.read_bytes() == data
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE((cache / "normal").stat().st_mode) == 0o700
    text = text_of(data)
    assert text["Thumb::URI"] == uri
    assert text["Thumb::MTime"] == mtime_s(raw)
    assert text["Thumb::Size"] == str(os.stat(raw).st_size)
    assert (text["Thumb::Image::Width"], text["Thumb::Image::Height"]) == ("451", "300")
    assert text["Software"].startswith("chromatica-watch")
    assert open_png(data).size == (128, 85)
    assert [p.name for p in (cache / "normal").iterdir()] == [cached.name]  # no temporary file left


def test_uri_escapes_what_glib_escapes_and_nothing_else() -> None:
    # Expected strings from GLib (`gio list -u`), whose md5s GNOME file managers use for their names.
    assert file_uri("/p/a b(1)+c,d;e!$&=@:~*x.jpg") == "file:///p/a%20b(1)+c,d%3Be!$&=@:~*x.jpg"
    assert file_uri(os.fsdecode(b"/p/q'u\xe9\"#%?[]^{}|`<>")) == \
        "file:///p/q'u%E9%22%23%25%3F%5B%5D%5E%7B%7D%7C%60%3C%3E"
    assert file_uri("/p/\u00e9t\u00e9.jpg") == "file:///p/%C3%A9t%C3%A9.jpg"  # UTF-8 names: by their bytes


def test_each_size_bounds_the_longest_side_and_never_upscales(tmp_path: Path, cache: Path,
                                                              thumbs: Thumbnailer) -> None:
    path = write_jpeg(tmp_path / "astronaut.jpg", photo("astronaut"))  # 512 x 512
    sizes = {size: open_png(thumbs.get(str(path), size) or b"").size
             for size in ("normal", "large", "x-large", "xx-large")}
    assert sizes == {"normal": (128, 128), "large": (256, 256), "x-large": (512, 512),
                     "xx-large": (512, 512)}
    for size in sizes:
        assert (cache / size / md5_png(plain_uri(path))).is_file()


def test_a_12_megapixel_jpeg_gives_128_px_with_the_photo_s_colours(tmp_path: Path, thumbs: Thumbnailer) -> None:
    rgb = cv2.resize(photo("coffee"), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    path = write_jpeg(tmp_path / "camera.jpg", rgb)

    data = thumbs.get(str(path), "normal")

    assert data is not None
    im = open_png(data)
    assert im.size == (128, 96)
    assert im.mode == "RGB"
    expected = cv2.resize(rgb, (128, 96), interpolation=cv2.INTER_AREA)
    assert np.abs(np.asarray(im).astype(int) - expected).mean() < 6
    assert (text_of(data)["Thumb::Image::Width"], text_of(data)["Thumb::Image::Height"]) == ("4000", "3000")


def test_exif_orientation_is_applied(tmp_path: Path, thumbs: Thumbnailer) -> None:
    rgb = cv2.resize(photo("astronaut"), (400, 200))
    rgb[:40, :40] = (255, 0, 0)  # a red mark in the stored top-left corner
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90 degrees clockwise
    Image.fromarray(rgb).save(path, quality=95, exif=exif)

    data = thumbs.get(str(path), "normal")

    assert data is not None
    im = np.asarray(open_png(data))
    assert im.shape[:2] == (128, 64)  # 64 wide, 128 tall: the sides swapped
    assert_close(im[3, 60], (255, 0, 0))  # the stored top-left corner is now the top-right one
    assert np.abs(im[3, 3].astype(int) - (255, 0, 0)).max() > 80
    assert (text_of(data)["Thumb::Image::Width"], text_of(data)["Thumb::Image::Height"]) == ("200", "400")


def test_animated_gif_gives_its_first_frame(tmp_path: Path, thumbs: Thumbnailer) -> None:
    frames = [Image.new("RGB", (300, 200), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)

    im = np.asarray(open_png(thumbs.get(str(path), "normal") or b""))

    assert im.shape == (85, 128, 3)
    assert_close(im[40, 60], (255, 0, 0), tol=10)


def test_transparency_is_kept(tmp_path: Path, thumbs: Thumbnailer) -> None:
    rgba = np.dstack([photo("rocket"), np.full(photo("rocket").shape[:2], 255, np.uint8)])
    rgba[:, : rgba.shape[1] // 2, 3] = 0  # left half fully transparent
    path = write_rgb(tmp_path / "cut.png", rgba)

    im = open_png(thumbs.get(str(path), "normal") or b"")

    assert im.mode == "RGBA"
    alpha = np.asarray(im)[:, :, 3]
    assert alpha[:, :5].max() == 0 and alpha[:, -5:].min() == 255


def test_16_bit_gray_png_keeps_its_tones(tmp_path: Path, thumbs: Thumbnailer) -> None:
    gray16 = cv2.cvtColor(photo("camera"), cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), gray16)

    im = np.asarray(open_png(thumbs.get(str(path), "normal") or b"")).astype(int)

    expected = cv2.resize(gray16 // 257, (128, 128), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(im[:, :, 0] - expected).mean() < 6  # not clipped to white


# --- the cache ----------------------------------------------------------------------------------


def test_cached_thumbnail_is_served_while_the_file_keeps_its_mtime(tmp_path: Path, thumbs: Thumbnailer) -> None:
    path = write_jpeg(tmp_path / "coffee.jpg", photo("coffee"))
    first = thumbs.get(str(path), "large")
    assert first is not None
    st = path.stat()
    # Garbage of the same size with the same mtime: only a thumbnail from the cache can come back.
    path.write_bytes(b"\0" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    assert thumbs.get(str(path), "large") == first


def test_thumbnail_is_made_again_when_the_mtime_changes(tmp_path: Path, cache: Path, thumbs: Thumbnailer) -> None:
    path = write_jpeg(tmp_path / "photo.jpg", photo("coffee"))
    first = thumbs.get(str(path), "normal")
    assert first is not None
    old = path.stat()
    write_jpeg(path, cv2.resize(photo("chelsea"), (400, 300)))
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 7_000_000_000))

    second = thumbs.get(str(path), "normal")

    assert second is not None
    assert text_of(second)["Thumb::MTime"] == mtime_s(path) != text_of(first)["Thumb::MTime"]
    assert open_png(second).size == (128, 96) != open_png(first).size
    assert (cache / "normal" / md5_png(plain_uri(path))).read_bytes() == second


def test_same_second_rewrite_of_another_size_is_not_served_stale(tmp_path: Path, thumbs: Thumbnailer) -> None:
    path = write_jpeg(tmp_path / "photo.jpg", photo("coffee"))
    first = thumbs.get(str(path), "normal")
    st = path.stat()
    write_jpeg(path, cv2.resize(photo("chelsea"), (400, 300)), quality=70)
    assert path.stat().st_size != st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: Thumb::Size tells them apart

    second = thumbs.get(str(path), "normal")

    assert second is not None and first is not None
    assert open_png(second).size == (128, 96) != open_png(first).size


def test_damaged_or_foreign_cache_files_are_replaced(tmp_path: Path, cache: Path, thumbs: Thumbnailer) -> None:
    a = write_jpeg(tmp_path / "a.jpg", photo("coffee"))
    b = write_jpeg(tmp_path / "b.jpg", photo("chelsea"))
    good_a = thumbs.get(str(a), "normal")
    good_b = thumbs.get(str(b), "normal")
    assert good_a is not None and good_b is not None
    cached_a = cache / "normal" / md5_png(plain_uri(a))

    cached_a.write_bytes(good_a[: len(good_a) // 2])  # cut short, as by a crash
    assert thumbs.get(str(a), "normal") == good_a
    cached_a.write_bytes(good_b)  # another file's thumbnail: its Thumb::URI does not match
    assert thumbs.get(str(a), "normal") == good_a
    assert cached_a.read_bytes() == good_a


def test_concurrent_requests_for_one_thumbnail_all_get_it_whole(tmp_path: Path, cache: Path,
                                                                thumbs: Thumbnailer) -> None:
    rgb = cv2.resize(photo("astronaut"), (2000, 2000))
    path = write_jpeg(tmp_path / "big.jpg", rgb)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: thumbs.get(str(path), "x-large"), range(16)))

    assert all(r is not None and open_png(r).size == (512, 512) for r in results)
    assert len(set(results)) == 1
    assert [p.name for p in (cache / "x-large").iterdir()] == [md5_png(plain_uri(path))]


# --- refusals -----------------------------------------------------------------------------------


def _corrupt(path: Path) -> None:
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40)


def _truncated(path: Path) -> None:
    data = write_jpeg(path, photo("coffee")).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _not_an_image(path: Path) -> None:
    path.write_text("just some notes, not a picture\n" * 20)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _folder(path: Path) -> None:
    path.mkdir()


def _bomb(path: Path) -> None:
    path.write_bytes(bomb_png(50_000, 50_000))


# The reasons are the indexer's own (the thumbnail decodes as indexing does): one wording per problem.
BAD_FILES = {"corrupt": (_corrupt, "not an image"), "truncated": (_truncated, "truncated"),
             "zero-byte": (_zero_bytes, "empty file"), "not an image": (_not_an_image, "not an image"),
             "fifo": (_fifo, "named pipe"), "folder": (_folder, "a folder"), "bomb": (_bomb, "too many pixels")}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_file_gives_none_once_and_is_remembered_as_failed(kind: str, tmp_path: Path, cache: Path,
                                                               thumbs: Thumbnailer,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    make, reason = BAD_FILES[kind]
    path = tmp_path / "bad.jpg"
    make(path)
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    results = [thumbs.get(str(path), size) for size in ("normal", "large", "normal")]

    assert results == [None, None, None]
    said = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(said) == 1, said  # the failure record spares the second and third decode
    assert str(path) in said[0] and reason in said[0]
    failed = cache / "fail" / "chromatica-watch" / md5_png(plain_uri(path))
    text = text_of(failed.read_bytes())
    assert (text["Thumb::URI"], text["Thumb::MTime"]) == (plain_uri(path), mtime_s(path))
    assert stat.S_IMODE(failed.stat().st_mode) == 0o600
    assert not (cache / "normal").exists() and not (cache / "large").exists()


def test_a_failed_file_is_tried_again_once_it_changes(tmp_path: Path, thumbs: Thumbnailer) -> None:
    path = tmp_path / "later.jpg"
    _corrupt(path)
    assert thumbs.get(str(path), "normal") is None
    old = path.stat()
    write_jpeg(path, photo("coffee"))
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 3_000_000_000))

    data = thumbs.get(str(path), "normal")

    assert data is not None and open_png(data).size == (128, 85)


def test_pixel_limit_is_the_one_given(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_jpeg(tmp_path / "small.jpg", photo("coffee"))  # 600 x 400
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    assert Thumbnailer(tmp_path / "strict", 600 * 400 - 1).get(str(path), "normal") is None
    assert Thumbnailer(tmp_path / "enough", 600 * 400).get(str(path), "normal") is not None
    assert any("too many pixels" in r.getMessage() for r in caplog.records if r.name == LOGGER)


def test_missing_file_gives_none_and_writes_nothing(tmp_path: Path, cache: Path, thumbs: Thumbnailer) -> None:
    assert thumbs.get(str(tmp_path / "gone.jpg"), "normal") is None
    assert not cache.exists()


def test_callers_mistakes_raise(tmp_path: Path, thumbs: Thumbnailer) -> None:
    path = write_jpeg(tmp_path / "a.jpg", photo("coffee"))
    with pytest.raises(ValueError, match="unknown thumbnail size"):
        thumbs.get(str(path), "huge")
    with pytest.raises(ValueError, match="absolute"):
        thumbs.get("a.jpg", "normal")


def test_a_heic_from_a_phone_gets_a_thumbnail(tmp_path: Path) -> None:
    import pillow_heif


    heif = pillow_heif.from_bytes(mode="RGB", size=(320, 240), data=np.full((240, 320, 3), (0, 128, 128), np.uint8)
                                  .tobytes())
    path = tmp_path / "IMG_0001.HEIC"
    heif.save(str(path), quality=90)
    png = Thumbnailer(tmp_path / "cache", 10**8).get(str(path), "normal")
    assert png is not None
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (128, 96)
        r, g, b = im.convert("RGB").getpixel((64, 48))
        assert abs(r - 0) < 12 and abs(g - 128) < 12 and abs(b - 128) < 12


# -- made while indexing ----------------------------------------------------------------------------


def _index(path: Path, thumbs: Thumbnailer | None) -> object:
    return process(Task(str(path.parent), os.fsencode(path.name)), 256, 10**8, thumbs)


def test_indexing_caches_the_grid_thumbnail_turned_and_alike_to_one_made_on_demand(
        tmp_path: Path, cache: Path, thumbs: Thumbnailer) -> None:
    rgb = cv2.resize(photo("astronaut"), (1200, 600))
    rgb[:100, :100] = (255, 0, 0)  # a red mark in the stored top-left corner
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(path, quality=92, exif=exif)

    assert isinstance(_index(path, thumbs), Indexed)

    made = cache / "normal" / md5_png(plain_uri(path))
    data = made.read_bytes()
    assert (text_of(data)["Thumb::URI"], text_of(data)["Thumb::MTime"]) == (plain_uri(path), mtime_s(path))
    assert (text_of(data)["Thumb::Image::Width"], text_of(data)["Thumb::Image::Height"]) == ("600", "1200")
    im = np.asarray(open_png(data)).astype(int)
    assert im.shape == (128, 64, 3)
    assert thumbs.get(str(path), "normal") == data  # served as it is: the indexer's is valid
    made.unlink()
    on_demand = np.asarray(open_png(thumbs.get(str(path), "normal") or b"")).astype(int)
    assert np.abs(im - on_demand).mean() < 4  # from 256 px pixels or from the file: the same picture


def test_a_file_manager_s_thumbnail_is_kept_and_a_cache_that_cannot_be_written_costs_nothing(
        tmp_path: Path, cache: Path, thumbs: Thumbnailer) -> None:
    path = write_jpeg(tmp_path / "a.jpg", photo("coffee"))
    thumbs.get(str(path), "normal")  # as Nautilus would have made it
    before = (cache / "normal" / md5_png(plain_uri(path))).stat().st_mtime_ns

    assert isinstance(_index(path, thumbs), Indexed)
    assert (cache / "normal" / md5_png(plain_uri(path))).stat().st_mtime_ns == before

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    other = write_jpeg(tmp_path / "b.jpg", photo("rocket"))
    result = _index(other, Thumbnailer(blocked, 10**8))
    assert isinstance(result, Indexed) and result.histogram.sum() > 0
    assert isinstance(_index(other, None), Indexed)
