"""The reference for `build`'s start-up: a plain process pool decoding files at reduced scale, and
nothing else. Run as a process of its own, as `build` is:

    python bench/plain_pool.py FOLDER [WORKERS]

A spawn pool of WORKERS processes (default: one per core), each with one OpenCV thread, reads every
file of FOLDER and decodes it at the JPEG scale that keeps its longest side >= 256 pixels (what
`build`'s decoder does, without the histogram). It imports only OpenCV and numpy: no part of
chromatica-watch, so its start-up is what any pool of decoders costs.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

MAX_DIMENSION = 256


def _init() -> None:
    import cv2

    cv2.setNumThreads(1)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header (SOFn), read without decoding anything."""
    i = 2
    while i + 9 < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    raise ValueError("no JPEG frame header")


def decode(path: str) -> tuple[int, int]:
    import cv2
    import numpy as np

    with open(path, "rb") as f:
        data = f.read()
    longest = max(jpeg_size(data))
    flags = cv2.IMREAD_COLOR
    for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                         (2, cv2.IMREAD_REDUCED_COLOR_2)):
        if longest >= factor * MAX_DIMENSION:
            flags = flag
            break
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    return pixels.shape[1], pixels.shape[0]


def main(folder: str, workers: int) -> int:
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init) as pool:
        done = sum(1 for _ in pool.map(decode, paths, chunksize=2))
    return 0 if done == len(paths) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else len(os.sched_getaffinity(0))))
