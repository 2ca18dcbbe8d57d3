"""Every format a real photo folder holds (HEIC, AVIF, JPEG XL, camera RAW, animated GIF/WebP/APNG): real
files written by the libraries themselves, decoded like the same picture as PNG, found by a colour search,
and every bad input (bomb, truncation, zero bytes, wrong extension, missing library) refused with its
reason. Nothing is skipped: the libraries come with the test extra."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from chromatica_watch.access.api import search
from chromatica_watch.core.errors import ImageError
from chromatica_watch.core.filetypes import IMAGE_EXTENSIONS, has_image_extension
from chromatica_watch.core.hashing import hash_bytes
from chromatica_watch.imaging import formats, headers
from chromatica_watch.imaging.decoders import decode
from chromatica_watch.imaging.features import features
from chromatica_watch.offline.build import BuildOptions, build
from tests import format_files as F
from tests.conftest import CLI, PHOTO_NAMES, photo, wait_until

MAXDIM = 256

# How far (L1 distance between the two 1152-bin histograms, each summing to 1; 2 = nothing shared) a
# file's histogram may be from the same picture saved as PNG. Lossy codecs move colours a little; GIF
# has 256 colours; a demosaic of the sensor data (half size, camera white balance, auto-brightened) is
# its own rendering of the scene. Measured here: heic 0.01, avif 0.07, jxl 0.02, dng 0.02, jpeg 0.02,
# gif 0.08, webp 0.03, apng 0, dng-demosaic 0.15.
TOLERANCE = {"heic": 0.05, "avif": 0.12, "jxl": 0.05, "dng": 0.05, "jpeg": 0.05, "dng-demosaic": 0.25,
             "gif": 0.15, "webp": 0.06, "apng": 0.001}


def picture(i: int) -> np.ndarray:
    """Nine different pictures: the six photos, and three with their channels swapped; even sides."""
    base = photo(PHOTO_NAMES[i % len(PHOTO_NAMES)])
    if i >= len(PHOTO_NAMES):
        base = base[:, :, [(2, 1, 0), (1, 2, 0), (2, 0, 1)][i - len(PHOTO_NAMES)]]
    h, w = base.shape[:2]
    return np.ascontiguousarray(base[: h - h % 2, : w - w % 2])


def file_of(kind: str, rgb: np.ndarray, second: np.ndarray | None = None) -> tuple[str, bytes]:
    """(extension, bytes) of `rgb` in that format; an animation gets `second` as its second frame."""
    if kind in F.ANIMATED:
        ext, write_frames = F.ANIMATED[kind]
        return ext, write_frames([rgb, second if second is not None else 255 - rgb])
    ext, write = F.STILL[kind]
    return ext, write(rgb)


def histogram_of(data: bytes, suffix: str = "", max_dimension: int = MAXDIM) -> np.ndarray:
    return features(data, max_dimension, suffix=suffix).histogram


def l1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).sum())


KINDS = sorted(TOLERANCE)


@pytest.mark.parametrize("kind", KINDS)
def test_each_format_decodes_like_the_same_picture_as_png(kind: str) -> None:
    rgb, other = picture(0), picture(6)  # astronaut, and astronaut with red and blue swapped
    ext, data = file_of(kind, rgb, other)
    feats = features(data, MAXDIM, suffix=ext)
    assert (feats.width, feats.height) == (rgb.shape[1], rgb.shape[0])
    expected = histogram_of(F.png(rgb))
    first = l1(feats.histogram, expected)
    assert first < TOLERANCE[kind]
    if kind in F.ANIMATED:  # the first frame, not the second (about 1.0 away)
        assert l1(feats.histogram, histogram_of(F.png(other))) > max(0.5, 5 * first)
    assert features(data, MAXDIM, suffix=ext).content_hash == hash_bytes(data)


def test_raw_uses_its_embedded_preview_only_when_it_is_large_enough() -> None:
    rgb = picture(1)  # coffee, 600 x 400
    sensor_only = histogram_of(F.dng(rgb, preview=False), ".dng")
    large = F.dng(rgb, preview=True)
    # The large preview is what is decoded: exactly the preview JPEG's histogram.
    assert np.array_equal(histogram_of(large, ".dng"), histogram_of(F.jpeg(rgb, 92)))
    assert not np.array_equal(histogram_of(large, ".dng"), sensor_only)
    # A preview smaller than max_dimension is passed over for a half-size demosaic of the sensor data.
    small = F.dng(rgb, preview=True, preview_side=MAXDIM // 2)
    assert np.array_equal(histogram_of(small, ".dng"), sensor_only)


def test_raw_sensor_data_compressed_as_most_dngs_are_decodes_alike() -> None:
    """Lossless-JPEG tiles (Adobe's converter, most camera DNGs) give the same demosaic as plain data."""
    rgb = picture(5)
    packed = F.dng(rgb, preview=False, lossless_jpeg=True)
    plain = F.dng(rgb, preview=False)
    assert len(packed) < 0.8 * len(plain)
    assert np.array_equal(decode(packed, MAXDIM, suffix=".dng").rgb,
                          decode(plain, MAXDIM, suffix=".dng").rgb)
    with pytest.raises(ImageError, match=r"^truncated camera RAW: its image data runs to byte"):
        features(packed[: len(packed) - 100], MAXDIM, suffix=".dng")


def test_a_colour_search_finds_each_format_first(tmp_path: Path) -> None:
    """One folder, one picture per format: searching by the PNG of each picture finds its file first."""
    dataset, queries = tmp_path / "photos", tmp_path / "queries"
    dataset.mkdir()
    queries.mkdir()
    expected = {}
    for i, kind in enumerate(KINDS):
        rgb = picture(i)
        ext, data = file_of(kind, rgb, 255 - rgb)
        name = f"{kind}{ext}"
        (dataset / name).write_bytes(data)
        (queries / f"{kind}.png").write_bytes(F.png(rgb))
        expected[kind] = name
    report = build(BuildOptions(dataset=dataset, output=tmp_path / "index", workers=1))
    assert report.failures == [] and report.indexed == len(KINDS)
    for kind, name in expected.items():
        matches = search(image=queries / f"{kind}.png", index_dir=tmp_path / "index", k=3)
        assert matches[0].relative_path == name, (kind, [m.relative_path for m in matches])


def test_the_scanner_sees_every_format() -> None:
    for ext in (".heic", ".HEIF", ".hif", ".avif", ".jxl", ".gif", ".apng", ".webp", ".dng", ".cr2", ".cr3",
                ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw"):
        assert has_image_extension(f"IMG_0001{ext}"), ext
    listed = {ext for f in formats.format_support() for ext in f.extensions}
    assert listed == IMAGE_EXTENSIONS
    assert not has_image_extension("notes.txt") and not has_image_extension("movie.mov")


# --- bombs: a header declaring 50000 x 50000 is refused before anything is decoded ---

BOMB = 50000


def patch_ispe(data: bytes) -> bytes:
    """Every `ispe` property (HEIF/AVIF image size) set to declare BOMB x BOMB."""
    out, at = bytearray(data), data.find(b"ispe")
    assert at > 0
    while at > 0:
        out[at + 8: at + 16] = struct.pack(">II", BOMB, BOMB)
        at = data.find(b"ispe", at + 4)
    return bytes(out)


def jxl_header(width: int, height: int) -> bytes:
    """A JPEG XL codestream signature and SizeHeader (explicit width and height, 30-bit fields)."""
    bits = [0]  # div8 = false

    def put(value: int, n: int) -> None:
        bits.extend((value >> i) & 1 for i in range(n))

    put(3, 2)
    put(height - 1, 30)
    put(0, 3)  # no fixed ratio: width follows
    put(3, 2)
    put(width - 1, 30)
    bits += [0] * (-len(bits) % 8)
    body = bytes(sum(b << i for i, b in enumerate(bits[k:k + 8])) for k in range(0, len(bits), 8))
    return b"\xff\x0a" + body + bytes(64)


def patch_gif(data: bytes) -> bytes:
    return data[:6] + struct.pack("<HH", BOMB, BOMB) + data[10:]


def patch_webp(data: bytes) -> bytes:
    assert data[12:16] == b"VP8X"  # an animation has the extended header: canvas size - 1, 24 bits each
    return data[:24] + (BOMB - 1).to_bytes(3, "little") * 2 + data[30:]


def patch_png(data: bytes) -> bytes:
    ihdr = bytearray(data[12:29])  # type + body of IHDR
    ihdr[4:12] = struct.pack(">II", BOMB, BOMB)
    return data[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + data[33:]


def patch_tiff_size(data: bytes) -> bytes:
    """The DNG's sensor image (IFD0, or the SubIFD under a preview) declaring BOMB x BOMB."""
    import tifffile

    out = bytearray(data)
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        if page.subifds:
            tif.filehandle.seek(page.subifds[0])
            page = tifffile.TiffPage(tif, index=(0, 0))
        assert page.photometric == 32803  # CFA
        for code in (256, 257):
            tag = page.tags[code]
            fmt = "<I" if tag.dtype == 4 else "<H"
            out[tag.valueoffset: tag.valueoffset + struct.calcsize(fmt)] = struct.pack(fmt, BOMB)
    return bytes(out)


BOMBS: dict[str, Callable[[bytes], bytes]] = {
    "heic": patch_ispe, "avif": patch_ispe, "jxl": lambda _: jxl_header(BOMB, BOMB), "gif": patch_gif,
    "webp": patch_webp, "apng": patch_png, "dng": patch_tiff_size, "dng-demosaic": patch_tiff_size,
}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_a_bomb_in_each_format_is_refused_before_decoding(kind: str) -> None:
    ext, data = file_of(kind, picture(0))
    bomb = BOMBS[kind](data)
    with pytest.raises(ImageError, match=rf"{BOMB}x{BOMB} = {BOMB * BOMB} exceeds the pixel limit"):
        features(bomb, MAXDIM, suffix=ext)
    # The limit is the configured one, whatever the format (512 x 512 here).
    with pytest.raises(ImageError, match=r"^too many pixels: 512x512 = 262144 exceeds the pixel limit 1000 "):
        features(data, MAXDIM, max_pixels=1000, suffix=ext)


def test_jpeg_xl_size_header_is_read_as_the_decoder_reads_it() -> None:
    """Explicit sizes, sizes in multiples of 8, and each fixed aspect ratio, against the plugin itself;
    and inside the container format."""
    rng = np.random.default_rng(3)
    for w, h in [(37, 23), (64, 64), (96, 80), (120, 90), (90, 60), (160, 90), (80, 64), (128, 64), (513, 9),
                 (8, 4096)]:
        data = F.jxl(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        assert headers.jxl_size(data) == (w, h)
        feats = features(data, MAXDIM, suffix=".jxl")
        assert (feats.width, feats.height) == (w, h)
    stream = F.jxl(picture(1))
    box = struct.pack(">I", 8 + len(stream)) + b"jxlc" + stream
    container = b"\x00\x00\x00\x0cJXL \r\n\x87\n" + struct.pack(">I", 20) + b"ftypjxl \x00\x00\x00\x00jxl " + box
    assert headers.jxl_size(container) == (600, 400)
    assert l1(histogram_of(container), histogram_of(stream)) < 1e-6


# --- truncated, zero-byte, wrong extension ---

TRUNCATED = {
    "heic": r"^truncated HEIF: data ends inside its 'mdat' box$",
    "avif": r"^truncated AVIF: data ends inside its 'mdat' box$",
    "jxl": r"^could not decode JPEG XL data: corrupt or truncated",
    "gif": r"^truncated GIF: data ends before its trailer$",
    "webp": r"^truncated WebP: data ends before the end of its RIFF container",
    "apng": r"^truncated PNG: data ends before the IEND chunk$",
    "dng": r"^truncated camera RAW: its image data runs to byte \d+, the file has \d+$",
    "dng-demosaic": r"^truncated camera RAW: its image data runs to byte \d+, the file has \d+$",
    "jpeg": r"^truncated JPEG",
}


@pytest.mark.parametrize("kind", sorted(TRUNCATED))
def test_a_truncated_file_in_each_format_gets_its_reason(kind: str) -> None:
    ext, data = file_of(kind, picture(0))
    for keep in (len(data) - 7, len(data) // 2):
        with pytest.raises(ImageError, match=TRUNCATED[kind]):
            features(data[:keep], MAXDIM, suffix=ext)


@pytest.mark.parametrize("ext", [".heic", ".avif", ".jxl", ".gif", ".webp", ".dng", ".nef", ".cr3", ".raf"])
def test_zero_bytes_and_wrong_content_under_each_extension(ext: str) -> None:
    with pytest.raises(ImageError, match=r"^empty file \(0 bytes\)$"):
        features(b"", MAXDIM, suffix=ext)
    with pytest.raises(ImageError, match=r"^not an image: unrecognized file format$"):
        features(b"a text file, not a photo\n" * 20, MAXDIM, suffix=ext)
    # The content decides: a JPEG or a HEIC under another name is read for what it is.
    jpeg = F.jpeg(picture(2))
    assert np.array_equal(histogram_of(jpeg, ext), histogram_of(jpeg))
    heic = F.heic(picture(2))
    assert np.array_equal(histogram_of(heic, ext if ext not in (".cr3",) else ".jpg"), histogram_of(heic))


def test_a_tiff_named_like_a_raw_that_libraw_cannot_read_says_so() -> None:
    tiff = io.BytesIO()
    from PIL import Image

    Image.fromarray(picture(3)).save(tiff, "TIFF")
    with pytest.raises(ImageError, match=r"^not a camera RAW file LibRaw can read: "):
        features(tiff.getvalue(), MAXDIM, suffix=".nef")
    assert features(tiff.getvalue(), MAXDIM, suffix=".tif").width == picture(3).shape[1]


def test_bad_files_of_every_format_are_each_recorded_once_with_their_reason(tmp_path: Path) -> None:
    dataset = tmp_path / "photos"
    dataset.mkdir()
    good = 0
    for i, kind in enumerate(KINDS):
        ext, data = file_of(kind, picture(i))
        (dataset / f"good-{kind}{ext}").write_bytes(data)
        (dataset / f"cut-{kind}{ext}").write_bytes(data[: len(data) // 2])
        (dataset / f"empty-{kind}{ext}").write_bytes(b"")
        good += 1
    (dataset / "text.heic").write_bytes(b"not a photo\n" * 10)
    (dataset / "bomb.avif").write_bytes(patch_ispe(F.avif(picture(0))))
    report = build(BuildOptions(dataset=dataset, output=tmp_path / "index", workers=2))
    reasons = {Path(f["path"]).name: f["reason"] for f in report.failures}
    assert report.indexed == good and report.failed == len(reasons) == 2 * len(KINDS) + 2
    assert len(report.failures) == len(reasons)  # once each
    for kind in KINDS:
        ext = file_of(kind, picture(0))[0]
        assert reasons[f"empty-{kind}{ext}"] == "empty file (0 bytes)"
        assert reasons[f"cut-{kind}{ext}"].startswith(("truncated", "could not decode")), reasons
    assert reasons["text.heic"] == "not an image: unrecognized file format"
    assert "exceeds the pixel limit" in reasons["bomb.avif"]


# --- a library that is missing ---

BLOCKER = """
import sys
for name in ("rawpy", "pillow_jxl"):
    sys.modules[name] = None  # as if not installed: import fails, find_spec finds nothing
"""


def blocked_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a process (and of the worker processes it spawns) without rawpy and
    pillow-jxl-plugin: a sitecustomize on PYTHONPATH makes their imports fail."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    return env


def test_formats_command_and_missing_libraries(tmp_path: Path) -> None:
    proc = subprocess.run([CLI, "formats", "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = {f["key"]: f for f in json.loads(proc.stdout)}
    assert set(listed) == {"basic", "heif", "avif", "jxl", "raw"}
    assert all(f["available"] for f in listed.values())  # a plain install brings every one
    assert listed["raw"]["package"] == "rawpy" and ".cr3" in listed["raw"]["extensions"]
    assert listed["heif"]["package"] == "pillow-heif" and listed["jxl"]["package"] == "pillow-jxl-plugin"
    text = subprocess.run([CLI, "formats"], capture_output=True, text=True, timeout=60).stdout
    assert "HEIC/HEIF" in text and "pillow-heif" in text and ".heic" in text and "MISSING" not in text
    assert formats.missing_format_support() == []

    env = blocked_env(tmp_path)
    dng, jxl = tmp_path / "a.dng", tmp_path / "b.jxl"
    dng.write_bytes(F.dng(picture(0)))
    jxl.write_bytes(F.jxl(picture(1)))
    proc = subprocess.run([CLI, "formats", "--json"], capture_output=True, text=True, timeout=60, env=env)
    listed = {f["key"]: f for f in json.loads(proc.stdout)}
    assert [k for k, f in listed.items() if not f["available"]] == ["jxl", "raw"]
    script = textwrap.dedent(f"""
        from chromatica_watch.core.errors import ImageError
        from chromatica_watch.imaging import formats
        from chromatica_watch.imaging.features import features
        print("\\n".join(formats.missing_format_support()))
        for path in ({str(dng)!r}, {str(jxl)!r}):
            try:
                features(open(path, "rb").read(), 256, suffix=path[-4:])
            except ImageError as exc:
                print("REASON", exc.reason)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    lines = out.stdout.splitlines()
    assert len([x for x in lines if x.startswith("REASON")]) == 2
    assert lines[0].startswith("JPEG XL files (.jxl) will not be indexed: the pillow-jxl-plugin package is missing")
    assert lines[1].startswith("camera RAW files (") and "the rawpy package is missing" in lines[1]
    assert lines[1].endswith("(pip install rawpy)")
    assert lines[2] == ("REASON camera RAW (" + ", ".join(listed["raw"]["extensions"]) + ") cannot be read: the "
                        "rawpy package is not installed (pip install rawpy)")
    assert lines[3].startswith("REASON JPEG XL (.jxl) cannot be read: the pillow-jxl-plugin package is not installed")


def test_daemon_reports_a_missing_library_once_per_start_and_each_file_names_it(
        daemon_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    for key, value in blocked_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    for i in range(3):
        (daemon_env.pictures / f"raw{i}.nef").write_bytes(F.dng(picture(i)))
    (daemon_env.pictures / "ok.heic").write_bytes(F.heic(picture(4)))
    daemon_env.start()
    wait_until(lambda: daemon_env.status().get("counts", {}).get("failed") == 3 and daemon_env.idle_with(1),
               timeout=60)
    warned = [line for line in daemon_env.log().splitlines() if "will not be indexed" in line]
    assert len(warned) == 2, warned  # rawpy and pillow-jxl-plugin: one line each, not one per file
    assert any("rawpy" in line for line in warned) and any("pillow-jxl-plugin" in line for line in warned)
    proc = daemon_env.cli("failed", "--json")
    reasons = {f["path"]: f["reason"] for f in json.loads(proc.stdout)}
    assert len(reasons) == 3
    assert all("the rawpy package is not installed" in r for r in reasons.values()), reasons
    assert daemon_env.stop() == 0


def test_daemon_indexes_a_folder_of_mixed_formats_and_finds_each(daemon_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """HEIC, AVIF, GIF, WebP, DNG and JPEG files dropped into a running daemon: all indexed, none failed,
    and a search by each picture finds its file first."""
    daemon_env.start()
    queries = tmp_path / "queries"
    queries.mkdir()
    kinds = ["heic", "avif", "gif", "webp", "dng", "dng-demosaic", "jpeg", "jxl", "apng"]
    names = {}
    drop = tmp_path / "drop"
    drop.mkdir()
    for i, kind in enumerate(kinds):
        rgb = picture(i)
        ext, data = file_of(kind, rgb, 255 - rgb)
        names[kind] = f"{kind}{ext}"
        (drop / names[kind]).write_bytes(data)
        (queries / f"{kind}.png").write_bytes(F.png(rgb))
    for name in names.values():  # written elsewhere, then moved in whole, as a copy tool would
        os.rename(drop / name, daemon_env.pictures / name)
    wait_until(lambda: daemon_env.idle_with(len(kinds)), timeout=90)
    counts = daemon_env.status()["counts"]
    assert counts["indexed"] == len(kinds) and counts["failed"] == 0, counts
    # A plain install reads every format: the start says nothing of a missing library, in the log or status.
    assert "will not be indexed" not in daemon_env.log() + daemon_env.stderr()
    assert "will not be indexed" not in json.dumps(daemon_env.status())
    for kind, name in names.items():
        proc = daemon_env.cli("search", "--image", str(queries / f"{kind}.png"), "--json", "-k", "3")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)[0]["relative_path"] == name, (kind, proc.stdout)
    assert daemon_env.stop() == 0


# --- colour: an embedded ICC profile other than sRGB is converted to sRGB before Lab ---

# Display P3's colorants as its ICC profile stores them (adapted to D50, as in Apple's profile).
P3_COLORANTS = ((0.515121, 0.241196, -0.001053), (0.291977, 0.692245, 0.041885), (0.157104, 0.066574, 0.784073))
D50 = (0.9642, 1.0, 0.8249)


def _s15(*values: float) -> bytes:
    return b"".join(struct.pack(">i", round(v * 65536)) for v in values)


def icc_profile(colorants: tuple[tuple[float, float, float], ...], name: str) -> bytes:
    """An ICC v2 RGB display profile (matrix and the sRGB tone curve), built here byte by byte: Pillow
    can only create sRGB, Lab and XYZ profiles."""
    ascii_name = name.encode() + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(ascii_name)) + ascii_name + bytes(4 + 4 + 2 + 1 + 67)
    v = np.arange(1024) / 1023
    curve = np.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)
    trc = b"curv" + bytes(4) + struct.pack(">I", 1024) + np.round(curve * 65535).astype(">u2").tobytes()
    tags = [(b"desc", desc), (b"wtpt", b"XYZ " + bytes(4) + _s15(*D50)),
            (b"rXYZ", b"XYZ " + bytes(4) + _s15(*colorants[0])), (b"gXYZ", b"XYZ " + bytes(4) + _s15(*colorants[1])),
            (b"bXYZ", b"XYZ " + bytes(4) + _s15(*colorants[2])), (b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc),
            (b"cprt", b"text" + bytes(4) + b"public domain\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += bytes(-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + bytes(4) + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + bytes(12) + b"acsp"
              + bytes(4 + 4 + 4 + 4 + 8 + 4) + _s15(*D50) + bytes(4 + 16))
    header += bytes(128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + body


def primaries_to_xyz(xy: tuple[tuple[float, float], ...], white: tuple[float, float]) -> np.ndarray:
    def xyz(x: float, y: float) -> np.ndarray:
        return np.array([x / y, 1.0, (1 - x - y) / y])

    m = np.stack([xyz(*p) for p in xy], axis=1)
    return m * np.linalg.solve(m, xyz(*white))


D65_XY = (0.3127, 0.3290)
P3_TO_LINEAR_SRGB = np.linalg.solve(primaries_to_xyz(((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), D65_XY),
                                    primaries_to_xyz(((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), D65_XY))


def p3_to_srgb_known(rgb: tuple[int, int, int]) -> np.ndarray:
    """The sRGB value of a Display P3 colour, from the two colour spaces' definitions (clipped to sRGB)."""
    v = np.asarray(rgb, dtype=np.float64) / 255
    linear = np.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)
    out = np.clip(P3_TO_LINEAR_SRGB @ linear, 0, 1)
    return np.where(out > 0.0031308, 1.055 * out ** (1 / 2.4) - 0.055, out * 12.92) * 255


P3_PATCHES = ((200, 120, 80), (90, 160, 210), (0, 255, 0), (128, 128, 128))


def p3_picture() -> np.ndarray:
    """Four 32 x 32 patches of Display P3 colours (P3 pure green is outside sRGB)."""
    rgb = np.zeros((64, 64, 3), np.uint8)
    for i, colour in enumerate(P3_PATCHES):
        rgb[(i // 2) * 32:(i // 2) * 32 + 32, (i % 2) * 32:(i % 2) * 32 + 32] = colour
    return rgb


def tagged(fmt: str, rgb: np.ndarray, icc: bytes) -> tuple[str, bytes]:
    """(extension, bytes) of `rgb` written with the profile embedded, by the format's own library."""
    from PIL import Image

    if fmt == "heic":
        import pillow_heif

        heif = pillow_heif.from_bytes("RGB", (rgb.shape[1], rgb.shape[0]), rgb.tobytes())
        heif.info["icc_profile"] = icc
        buf = io.BytesIO()
        heif.save(buf, quality=95)
        return ".heic", buf.getvalue()
    if fmt == "jxl":  # pillow-jxl-plugin writes no ICC profile, but keeps a JPEG's when it transcodes it
        import tempfile
        import warnings

        import pillow_jxl  # noqa: F401 - registers the plugin

        buf = io.BytesIO()
        with tempfile.NamedTemporaryFile(suffix=".jpg") as f:  # it transcodes only a JPEG read from a file
            f.write(tagged("jpeg", rgb, icc)[1])
            f.flush()
            with Image.open(f.name) as jpeg, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Using JPEG reconstruction...": what is wanted here
                jpeg.save(buf, "JXL")
        return ".jxl", buf.getvalue()
    if fmt == "dng":
        buf = io.BytesIO()
        big = np.kron(rgb, np.ones((8, 8, 1), np.uint8))  # a preview of at least max_dimension
        Image.fromarray(big).save(buf, "JPEG", quality=95, icc_profile=icc)
        return ".dng", F.dng(big, preview=True, preview_jpeg=buf.getvalue())
    params: dict[str, object] = {"icc_profile": icc}
    name, ext = {"png": ("PNG", ".png"), "jpeg": ("JPEG", ".jpg"), "tiff": ("TIFF", ".tif"),
                 "webp": ("WEBP", ".webp"), "avif": ("AVIF", ".avif")}[fmt]
    if fmt == "jpeg":
        params["quality"] = 95
    if fmt == "webp":
        params["lossless"] = True
    if fmt == "avif":
        params["quality"] = 95
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, name, **params)
    return ext, buf.getvalue()


def test_display_p3_colours_come_out_as_their_known_srgb_values() -> None:
    p3 = icc_profile(P3_COLORANTS, "Display P3 (test)")
    ext, data = tagged("png", p3_picture(), p3)
    got = decode(data, MAXDIM, suffix=ext).rgb
    for i, colour in enumerate(P3_PATCHES):
        pixel = got[(i // 2) * 32 + 16, (i % 2) * 32 + 16].astype(float)
        assert np.abs(pixel - p3_to_srgb_known(colour)).max() <= 2.0, (colour, pixel, p3_to_srgb_known(colour))
    # Pure P3 green is beyond sRGB: it comes out as sRGB's own pure green (clipped); a grey stays grey.
    green = got[32 + 16, 16].astype(int)
    assert green[1] == 255 and green[0] <= 2 and green[2] <= 2, green
    assert np.abs(got[48, 48].astype(int) - 128).max() <= 1


@pytest.mark.parametrize("fmt", ["png", "tiff", "webp", "jpeg", "heic", "avif", "jxl", "dng"])
def test_an_embedded_p3_profile_is_converted_to_srgb_in_every_format(fmt: str) -> None:
    """Against ImageCms.profileToProfile of the same pixels: equal for lossless formats, and within the
    codec's own error for lossy ones; and far from the histogram of the same numbers taken as sRGB."""
    from PIL import Image, ImageCms

    rgb = p3_picture()
    p3 = icc_profile(P3_COLORANTS, "Display P3 (test)")
    reference = np.asarray(ImageCms.profileToProfile(Image.fromarray(rgb), ImageCms.ImageCmsProfile(io.BytesIO(p3)),
                                                     ImageCms.createProfile("sRGB")))
    ext, data = tagged(fmt, rgb, p3)
    decoded = decode(data, 64, suffix=ext).rgb
    got = features(data, 64, suffix=ext).histogram
    expected, untagged = histogram_of(F.png(reference), max_dimension=64), histogram_of(F.png(rgb), max_dimension=64)
    if fmt in ("png", "tiff", "webp"):
        assert np.array_equal(decoded, reference)
        assert np.allclose(got, expected, atol=1e-6)
    else:
        assert np.median(np.abs(decoded.astype(int) - reference.astype(int))) <= 2
        assert l1(got, expected) < 0.15
    assert l1(got, untagged) > 0.3
    assert l1(got, expected) < l1(got, untagged) / 3


def test_srgb_and_odd_profiles_leave_the_pixels_as_decoded() -> None:
    from PIL import ImageCms

    rgb = p3_picture()
    plain = decode(F.png(rgb), MAXDIM).rgb
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert np.array_equal(decode(tagged("png", rgb, srgb)[1], MAXDIM).rgb, plain)
    srgb_named = icc_profile(((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)),
                             "sRGB IEC61966-2.1")
    assert np.array_equal(decode(tagged("jpeg", rgb, srgb_named)[1], MAXDIM).rgb,
                          decode(F.jpeg(rgb, 95), MAXDIM).rgb)
    broken = icc_profile(P3_COLORANTS, "Display P3 (test)")[:200]  # cut: does not parse
    assert np.array_equal(decode(tagged("png", rgb, broken)[1], MAXDIM).rgb, plain)


def test_a_heic_with_a_large_enough_embedded_thumbnail_is_read_from_it() -> None:
    """As phones write them: a 320 px copy beside the full picture. The histogram (256 px) comes from the
    copy, alike to the full decode's, in a fraction of its time; a copy smaller than needed is not used."""
    import time

    rgb = cv2.resize(photo("astronaut"), (1200, 900), interpolation=cv2.INTER_CUBIC)
    with_copy, without = F.heic(rgb, thumbnail=320), F.heic(rgb)

    def timed(data: bytes, max_dimension: int = 256) -> tuple[float, np.ndarray]:
        best, hist = float("inf"), None
        for _ in range(2):
            started = time.perf_counter()
            hist = features(data, max_dimension).histogram
            best = min(best, time.perf_counter() - started)
        assert hist is not None
        return best, hist

    fast, from_copy = timed(with_copy)
    slow, from_full = timed(without)
    assert 0.5 * np.abs(from_copy - from_full).sum() < 0.05  # the same colours (L1/2 of the histograms)
    assert fast * 4 < slow, (fast, slow)
    too_small, _ = timed(with_copy, max_dimension=512)  # a 320 px copy cannot give 512 px: the full decode
    assert too_small > 2 * fast, (too_small, fast)
    assert features(with_copy, 256).width == 1200  # the picture's own size is recorded
