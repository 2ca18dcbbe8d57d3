#!/usr/bin/env python3
"""Write the reference files of chromatica_watch/data/probes/ (run once; they are committed).

Small crops of a real photo in every format and decoding path the indexer has, written by the libraries the
tests write with (tests/format_files.py). Sizes are chosen so that decoding them at
decoder_stamp.PROBE_MAX_DIMENSION resizes nothing (a change of OpenCV's resize is not a decoder's change),
except that the large JPEG and the DNG sensor image exercise libjpeg's and LibRaw's own reductions."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import format_files as F  # noqa: E402
from tests.test_formats import P3_COLORANTS, icc_profile, tagged  # noqa: E402

OUT = ROOT / "chromatica_watch" / "data" / "probes"


def crop(w: int, h: int) -> np.ndarray:
    photo = data.astronaut()[40:360, 100:420]  # face, suit, flag: skin, saturated and neutral colours
    return np.asarray(Image.fromarray(photo).resize((w, h), Image.Resampling.LANCZOS))


def pillow(fmt: str, rgb: np.ndarray, **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **params)
    return buf.getvalue()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    small = crop(48, 36)
    rgba = np.dstack([small, np.tile(np.linspace(0, 255, 48).astype(np.uint8), (36, 1))])
    files = {
        "basic-reduced.jpg": F.jpeg(crop(256, 192), 85),  # decoded at 1/4 scale by libjpeg
        "basic.jpg": F.jpeg(small, 90),
        "basic-16bit.png": cv2.imencode(".png", small[:, :, ::-1].astype(np.uint16) * 257)[1].tobytes(),
        "basic-alpha.png": F.png(rgba),
        "basic.webp": pillow("WEBP", small, quality=80),
        "basic.gif": F.gif([small]),
        "basic.tif": pillow("TIFF", small),
        "basic.bmp": pillow("BMP", small),
        "heif.heic": F.heic(small, 80),
        "avif.avif": F.avif(small, 80),
        "jxl.jxl": F.jxl(small, 80),
        "raw-preview.dng": F.dng(crop(128, 96), preview_side=64),
        "raw-sensor.dng": F.dng(crop(128, 96), preview=False),  # a half-size demosaic by LibRaw
        "icc-p3.jpg": tagged("jpeg", small, icc_profile(P3_COLORANTS, "Display P3"))[1],
    }
    for name, blob in files.items():
        (OUT / name).write_bytes(blob)
        print(f"{name}: {len(blob)} bytes")


if __name__ == "__main__":
    main()
