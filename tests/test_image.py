"""Decoding every supported kind of image, and refusing bad input with a clear reason."""

from __future__ import annotations

import functools
import io
import os
import socket
import stat
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.errors import ImageError
from chromatica_watch.core.filetypes import SYMLINK_NOT_FOLLOWED, special_file_reason
from chromatica_watch.core.hashing import hash_bytes
from chromatica_watch.imaging import decoders, headers
from chromatica_watch.imaging.decoders import decode
from chromatica_watch.imaging.features import Features, features
from chromatica_watch.imaging.lab import srgb_to_lab
from chromatica_watch.imaging.reading import read_file
from tests.conftest import photo, solid, write_rgb

RED = (255, 0, 0)


def dominant_bin(rgb: tuple[int, int, int]) -> int:
    return int(H.lab_histogram(srgb_to_lab(np.array([[rgb]], dtype=np.uint8))).argmax())


def feats(path: Path, max_dimension: int = 256) -> Features:
    return features(path.read_bytes(), max_dimension)


def test_large_jpeg_is_decoded_at_reduced_scale_then_shrunk(tmp_path: Path) -> None:
    big = np.kron(photo("coffee"), np.ones((8, 8, 1), dtype=np.uint8))  # 3200 x 4800
    data = write_rgb(tmp_path / "big.jpg", big, IMWRITE_JPEG_QUALITY=90).read_bytes()
    decoded = decode(data, 256)
    assert (decoded.width, decoded.height) == (4800, 3200)
    assert max(decoded.rgb.shape[:2]) == 256
    assert decoders._reduced_jpeg_flag(4800, 3200, 256) == cv2.IMREAD_REDUCED_COLOR_8
    small = features(write_rgb(tmp_path / "small.jpg", photo("coffee"), IMWRITE_JPEG_QUALITY=90)
                           .read_bytes(), 256)
    big_h = features(data, 256).histogram
    # Same picture at two scales: nearly the same colours.
    assert 0.5 * np.abs(big_h - small.histogram).sum() < 0.1


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp", ".jpg"])
def test_formats_decode_to_the_right_colour(tmp_path: Path, suffix: str) -> None:
    f = feats(write_rgb(tmp_path / f"red{suffix}", solid(RED)))
    assert f.histogram.argmax() == dominant_bin(RED)
    assert (f.width, f.height) == (64, 48)


def test_png_16_bit_with_alpha_ignores_transparent_pixels(tmp_path: Path) -> None:
    rgba = np.zeros((40, 40, 4), dtype=np.uint16)
    rgba[:, :20] = (65535, 0, 0, 65535)  # opaque red
    rgba[:, 20:] = (0, 0, 65535, 0)  # fully transparent blue
    f = feats(write_rgb(tmp_path / "rgba16.png", rgba))
    assert f.histogram.argmax() == dominant_bin(RED)
    assert f.histogram[dominant_bin((0, 0, 255))] < 1e-6


def test_png_8_bit_with_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., :3] = (0, 0, 255)
    rgba[:5, :, 3] = 255
    f = feats(write_rgb(tmp_path / "a.png", rgba))
    assert f.histogram.argmax() == dominant_bin((0, 0, 255))


def test_fully_transparent_image_is_refused(tmp_path: Path) -> None:
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    with pytest.raises(ImageError, match="transparent"):
        feats(write_rgb(tmp_path / "clear.png", rgba))


def test_grayscale_and_cmyk(tmp_path: Path) -> None:
    gray = tmp_path / "gray.png"
    write_rgb(gray, photo("camera")[:, :, 0])
    h = feats(gray).histogram
    centres = H.bin_centers_lab()
    assert np.all(np.abs(centres[h > 0.01][:, 1:]) < 20)  # neutral: a*, b* near zero
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(cmyk, quality=95)  # C=0 M=Y=100%: red
    assert Image.open(cmyk).mode == "CMYK"
    f = feats(cmyk)
    lab_of_peak = centres[f.histogram.argmax()]
    assert lab_of_peak[1] > 40  # strongly red (a* high)


def test_one_by_one_image_is_indexed(tmp_path: Path) -> None:
    f = feats(write_rgb(tmp_path / "pixel.png", solid(RED, (1, 1))))
    assert (f.width, f.height) == (1, 1)
    assert f.histogram.argmax() == dominant_bin(RED)


def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    data = write_rgb(tmp_path / "p.jpg", photo("astronaut"), IMWRITE_JPEG_QUALITY=90).read_bytes()
    for cut in (2, 1000, len(data) // 2):
        with pytest.raises(ImageError, match=r"truncated|could not decode"):
            features(data[:-cut], 256)


def test_truncated_or_damaged_png_is_refused_without_a_word_on_stderr(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    data = write_rgb(tmp_path / "p.png", photo("coffee")).read_bytes()
    capfd.readouterr()
    # Cut in the IEND chunk, in the last image data chunk's CRC (all pixels there), deep in the data.
    for cut in (4, 12, 14, 20, 1000, len(data) // 2, len(data) - 20):
        with pytest.raises(ImageError, match=r"^truncated PNG: data ends before the IEND chunk$"):
            features(data[:-cut], 256)
    damaged = bytearray(data)
    damaged[37] ^= 0xFF  # the type of the chunk after IHDR
    with pytest.raises(ImageError, match=r"^corrupt PNG: malformed chunk header at byte 33$"):
        features(bytes(damaged), 256)
    assert capfd.readouterr().err == ""  # libpng's 'PNG input buffer is incomplete' never printed
    whole = features(data, 256)
    assert np.array_equal(features(data + b"trailing junk", 256).histogram, whole.histogram)


def test_truncation_check_skips_an_embedded_thumbnail() -> None:
    """A complete thumbnail inside APP1 must not make a truncated main image look complete."""
    thumb = io.BytesIO()
    Image.new("RGB", (8, 8), RED).save(thumb, "JPEG")
    main = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 0, 255)).save(main, "JPEG")
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumb.getvalue()) + 2) + thumb.getvalue()
    full = main.getvalue()[:2] + app1 + main.getvalue()[2:]
    assert headers.jpeg_scan_complete(full)
    assert not headers.jpeg_scan_complete(full[:-50])


def test_empty_and_non_image_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="empty file"):
        features(b"", 256)
    with pytest.raises(ImageError, match="not an image"):
        features(b"this is a text file, not a JPEG\n" * 10, 256)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) \
        + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = png_declaring(50000, 50000)
    assert len(bomb) < 200
    with pytest.raises(ImageError, match=r"50000x50000.*pixel limit"):
        features(bomb, 256)
    with pytest.raises(ImageError, match="pixel limit 1000"):
        features(png_declaring(40, 40), 256, max_pixels=1000)


def test_bomb_with_a_huge_text_chunk_is_still_refused_before_decoding() -> None:
    bomb = png_declaring(50000, 50000)
    text = chunk(b"tEXt", b"Comment\0" + b"x" * 9_000_000)
    with pytest.raises(ImageError, match=r"50000x50000.*pixel limit"):
        features(bomb[:33] + text + bomb[33:], 256)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_of(rgb: np.ndarray, info: PngImagePlugin.PngInfo | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def with_metadata(kind: str, pixels: np.ndarray) -> bytes:
    """A valid PNG of `pixels` carrying a large (or odd) metadata chunk of the given kind."""
    info = PngImagePlugin.PngInfo()
    text = "chromatica " * 3_000_000  # 33 MB
    if kind == "tEXt":
        info.add_text("Comment", text)
    elif kind == "zTXt":
        info.add_text("Comment", text, zip=True)
    elif kind == "iTXt":
        info.add_itxt("Comment", text)
    plain = png_of(pixels, info)
    if kind == "private":  # a 9 MB private chunk before the image data
        return plain[:33] + chunk(b"prVt", bytes(9_000_000)) + plain[33:]
    if kind == "iCCP":  # a legal Lab profile, which libpng finds odd for an RGB image
        profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
        return plain[:33] + chunk(b"iCCP", b"lab\0\0" + zlib.compress(profile)) + plain[33:]
    return plain


@pytest.mark.parametrize("kind", ["tEXt", "zTXt", "iTXt", "private", "iCCP"])
def test_png_with_large_or_odd_metadata_decodes_silently_like_the_same_pixels(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], kind: str) -> None:
    pixels = photo("coffee")
    path = tmp_path / f"{kind}.png"
    path.write_bytes(with_metadata(kind, pixels))
    assert path.stat().st_size > 8_000_000 or kind in ("zTXt", "iCCP")
    expected = features(png_of(pixels), 256)
    capfd.readouterr()
    got = features(read_file(str(path)).data, 256)
    assert capfd.readouterr().err == ""  # neither OpenCV's log nor libpng's own warnings
    assert (got.width, got.height) == (600, 400)
    assert np.allclose(got.histogram, expected.histogram, rtol=0, atol=1e-7)
    assert got.content_hash == hash_bytes(path.read_bytes())  # of the file as it is


def tiff_of(pixels: np.ndarray, mode: str | None = None, **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, "TIFF", **params)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["rgb", "rgba", "gray16"])
def test_what_opencv_cannot_decode_pillow_does_with_the_same_output(
        capfd: pytest.CaptureFixture[str], kind: str) -> None:
    rgb = photo("astronaut")
    if kind == "rgba":  # the right half fully transparent
        pixels = np.dstack([rgb, np.where(np.arange(rgb.shape[1]) < rgb.shape[1] // 2, 255, 0)
                            .astype(np.uint8)[None, :].repeat(rgb.shape[0], 0)])
    elif kind == "gray16":
        pixels = (rgb[:, :, 1].astype(np.uint16) * 257) ^ 0x55
    else:
        pixels = rgb
    zstd = tiff_of(pixels, compression="zstd")  # OpenCV's libtiff has no ZSTD codec
    capfd.readouterr()
    assert cv2.imdecode(np.frombuffer(zstd, np.uint8), cv2.IMREAD_UNCHANGED) is None, \
        "OpenCV reads ZSTD TIFFs now: this test no longer reaches the Pillow decoder"
    got = decode(zstd, 256)
    assert capfd.readouterr().err == ""  # OpenCV's libtiff errors are not logged
    expected = decode(tiff_of(pixels), 256)  # uncompressed: OpenCV decodes it
    assert (got.width, got.height) == (expected.width, expected.height) == (512, 512)
    assert got.rgb.dtype == expected.rgb.dtype and got.rgb.shape == expected.rgb.shape
    assert (got.weights is None) == (expected.weights is None) == (kind != "rgba")
    counted = np.ones(got.rgb.shape[:2], bool)
    if got.weights is not None and expected.weights is not None:
        assert np.array_equal(got.weights, expected.weights) and 0 < got.weights.mean() < 1
        counted = got.weights > 0  # OpenCV blackens fully transparent TIFF pixels; they do not count
    assert np.allclose(got.rgb[counted], expected.rgb[counted], rtol=0, atol=1e-6)
    assert np.allclose(features(zstd, 256).histogram, features(tiff_of(pixels), 256).histogram,
                       rtol=0, atol=1e-7)


def test_pillow_decoding_keeps_the_pixel_limit_and_reports_what_it_cannot_decode() -> None:
    zstd = tiff_of(photo("coffee"), compression="zstd")
    with pytest.raises(ImageError, match=r"600x400 = 240000 exceeds the pixel limit 1000"):
        features(zstd, 256, max_pixels=1000)
    half = len(zstd) // 2
    damaged = zstd[:8] + bytes(half) + zstd[8 + half:]  # image data zeroed, the directory intact
    with pytest.raises(ImageError, match=r"^could not decode TIFF data \(corrupt, truncated or unsupported\): \S"):
        features(damaged, 256)


def test_read_file_reports_unreadable_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot open"):
        read_file(str(tmp_path / "missing.jpg"))
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(tmp_path / "loop.jpg")
    with pytest.raises(ImageError, match="symlink loop"):
        read_file(str(loop))
    with pytest.raises(ImageError, match="not a regular file"):
        read_file(str(tmp_path))


def run_bounded(read: Callable[[], object], fifo: Path | None = None, timeout: float = 5.0) -> object:
    """`read()`'s result or the exception it raised, in a thread given `timeout` seconds: a read that
    blocks fails the test instead of hanging it (the blocked open of `fifo` is released first)."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(read())
        except Exception as exc:  # handed to the test, which checks what it is
            outcome.append(exc)

    thread = threading.Thread(target=target, name="bounded-read")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if fifo is not None:  # a writer lets the blocked open return, so the thread can end
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout)
        pytest.fail(f"read blocked for more than {timeout} s")
    return outcome[0]


def refusal(path: Path, *, follow_symlinks: bool = True) -> str:
    with pytest.raises(ImageError) as info:
        read_file(str(path), follow_symlinks=follow_symlinks)
    return info.value.reason


def test_fifo_named_like_a_photo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    for follow in (True, False):
        outcome = run_bounded(functools.partial(read_file, str(fifo), follow_symlinks=follow), fifo)
        assert isinstance(outcome, ImageError), outcome
        assert outcome.reason == "not a regular file: a named pipe (FIFO)"


def test_socket_named_like_a_photo_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a short relative name: socket paths are limited to ~108 bytes
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind("x.png")
        assert stat.S_ISSOCK(os.lstat("x.png").st_mode)
        assert refusal(tmp_path / "x.png") == "not a regular file: a socket"
        assert refusal(tmp_path / "x.png", follow_symlinks=False) == "not a regular file: a socket"


def test_device_folder_and_symlinks_are_refused_with_what_they_are(tmp_path: Path) -> None:
    (tmp_path / "null.jpg").symlink_to("/dev/null")
    assert refusal(tmp_path / "null.jpg") == "not a regular file: a character device"
    (tmp_path / "y.jpg").mkdir()
    assert refusal(tmp_path / "y.jpg") == "not a regular file: a folder"
    assert refusal(tmp_path / "y.jpg", follow_symlinks=False) == "not a regular file: a folder"
    photo_file = write_rgb(tmp_path / "real.png", solid(RED))
    (tmp_path / "link.png").symlink_to("real.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    (tmp_path / "dangling.png").symlink_to("gone.png")
    # Followed (a query image): the link reads its target; loops and dangling links say so.
    assert read_file(str(tmp_path / "link.png")).data == photo_file.read_bytes()
    assert refusal(tmp_path / "loop.png") == "symlink loop"
    assert refusal(tmp_path / "dangling.png") == "broken symlink"
    # Not followed (inside a watched folder).
    assert refusal(tmp_path / "link.png", follow_symlinks=False) == SYMLINK_NOT_FOLLOWED
    assert "symbolic link not followed" in SYMLINK_NOT_FOLLOWED
    assert refusal(tmp_path / "null.jpg", follow_symlinks=False) == SYMLINK_NOT_FOLLOWED
    assert refusal(tmp_path / "loop.png", follow_symlinks=False) == "symlink loop"
    assert refusal(tmp_path / "dangling.png", follow_symlinks=False) == "broken symlink"
    assert read_file(str(photo_file), follow_symlinks=False).data == photo_file.read_bytes()


def test_special_file_reason_names_every_kind(tmp_path: Path) -> None:
    expected = {stat.S_IFIFO: "not a regular file: a named pipe (FIFO)",
                stat.S_IFSOCK: "not a regular file: a socket",
                stat.S_IFCHR: "not a regular file: a character device",
                stat.S_IFBLK: "not a regular file: a block device",
                stat.S_IFDIR: "not a regular file: a folder",
                stat.S_IFLNK: SYMLINK_NOT_FOLLOWED}
    for kind, reason in expected.items():
        assert special_file_reason(kind | 0o644) == reason
    assert special_file_reason(stat.S_IFREG | 0o644) is None
    assert special_file_reason(os.stat(write_rgb(tmp_path / "p.png", solid(RED))).st_mode) is None
    assert special_file_reason(os.stat("/dev/null").st_mode) == expected[stat.S_IFCHR]


def test_read_file_reads_every_byte_of_a_large_file(tmp_path: Path) -> None:
    payload = np.random.default_rng(1).integers(0, 256, 9_000_000, dtype=np.uint8).tobytes()
    (tmp_path / "big.tif").write_bytes(payload)
    for follow in (True, False):
        read = read_file(str(tmp_path / "big.tif"), follow_symlinks=follow)
        assert read.data == payload and read.size == len(payload)


def test_content_hash_is_of_the_bytes() -> None:
    assert hash_bytes(b"abc") == hash_bytes(b"abc") != hash_bytes(b"abd")


def test_jpeg_header_walk_agrees_with_pillow(tmp_path: Path) -> None:
    thumb = io.BytesIO()
    Image.new("RGB", (8, 8), RED).save(thumb, "JPEG")
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumb.getvalue()) + 2) + thumb.getvalue()
    progressive = io.BytesIO()
    Image.fromarray(photo("coffee")).save(progressive, "JPEG", progressive=True)
    baseline = write_rgb(tmp_path / "p.jpg", photo("chelsea"), IMWRITE_JPEG_QUALITY=90).read_bytes()
    for data in (baseline, baseline[:2] + app1 + baseline[2:], progressive.getvalue(),
                 baseline + baseline):  # a second image after the first, as in camera MPO files
        with Image.open(io.BytesIO(data)) as im:
            assert headers.jpeg_dimensions(data) == im.size
    for other in (b"", b"\xff\xd8\xff", png_declaring(10, 10), b"not a jpeg" * 10, baseline[:300]):
        assert headers.jpeg_dimensions(other) is None  # left to Pillow to judge


def test_jpeg_declaring_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    data = bytearray(write_rgb(tmp_path / "p.jpg", solid(RED), IMWRITE_JPEG_QUALITY=90).read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", 60000, 60000)
    with pytest.raises(ImageError, match=r"60000x60000.*pixel limit"):
        features(bytes(data), 256)


def test_what_a_decoder_prints_goes_into_the_reason_not_onto_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    """libpng writes 'libpng error: IDAT: CRC error' to stderr for a PNG whose image data is damaged; in
    the daemon that line would land in the log without the file's name. It belongs in the reason."""
    ok, buf = cv2.imencode(".png", (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    start = data.find(b"IDAT") + 20
    data[start:start + 40] = bytes(b ^ 0x5A for b in data[start:start + 40])
    capfd.readouterr()
    with pytest.raises(ImageError) as caught:
        features(bytes(data), 256)
    assert "the decoder said: libpng error" in caught.value.reason and "CRC" in caught.value.reason
    assert capfd.readouterr().err == ""
