"""Shared fixtures: real photos from scikit-image, image writers, and a guard against leaked threads."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

pytest_plugins = ["tests.daemon_harness"]  # the daemon_env fixture

PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "chromatica-watch")


def photo(name: str) -> np.ndarray:
    """A real RGB photo shipped with scikit-image."""
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def write_rgb(path: Path, rgb: np.ndarray, **params: int) -> Path:
    """Write an RGB (or RGBA) uint8/uint16 array with OpenCV; format from the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rgb[:, :, ::-1] if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        arr = rgb[:, :, [2, 1, 0, 3]]
    flags: list[int] = []
    for key, value in params.items():
        flags += [getattr(cv2, key), value]
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(arr), flags)
    assert ok, path
    path.write_bytes(buf.tobytes())
    return path


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.full((*size, 3), rgb, dtype=np.uint8)


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05) -> object:
    """Bounded polling for integration tests: the predicate's truthy value, or a failed test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test must stop the threads it started (pool helper threads get a moment to finish)."""
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads leaked by the test: {[t.name for t in leaked]}"


@pytest.fixture
def photos_dir(tmp_path: Path) -> Path:
    """A folder of real photos (JPEG and PNG), some in sub-folders."""
    root = tmp_path / "photos"
    for i, name in enumerate(PHOTO_NAMES):
        sub = root / ("" if i % 2 else "trip")
        write_rgb(sub / f"{name}.jpg", photo(name), IMWRITE_JPEG_QUALITY=90)
    write_rgb(root / "camera.png", photo("camera"))
    return root


@contextlib.contextmanager
def mounted_tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A real small tmpfs at `mnt` (CI runs as root), for a disk that fills up. Never skipped: if it
    cannot be mounted the test fails; never left mounted, even when a test left a file open on it."""
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True,
                   capture_output=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)
            pytest.fail(f"{mnt} was still busy at teardown (a file left open on it?)")


@contextlib.contextmanager
def mounted_bindfs(source: Path, mnt: Path) -> Iterator[Path]:
    """`source` seen through a real FUSE mount at `mnt` (bindfs, a Debian package .ci/run installs), as a
    network share behaves: a file written into `source` (the other side) sends no inotify event on `mnt`.
    Never skipped: without bindfs the test fails; never left mounted."""
    source.mkdir(parents=True, exist_ok=True)
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bindfs", "--no-allow-other", str(source), str(mnt)], check=True, capture_output=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["fusermount", "-u", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)


def env_without_threads() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
