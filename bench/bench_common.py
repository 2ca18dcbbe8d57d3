"""What the benchmarks share: the camera-like JPEG corpus, outside-load accounting, and the summary of
figures with their targets (printed and written as JSON). Imported by bench_build.py, bench_daemon.py
and bench_search.py, which run as scripts from this folder.

Spawned worker processes re-import this module, so it imports only what the ingest workers import
anyway (numpy, OpenCV, the package's decoder), never DuckDB or FAISS.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
CLI = str(Path(sys.executable).parent / "chromatica-watch")
MAX_DIMENSION = 256

# Corpus: 4000x3000 JPEGs at quality 90 with sensor-like noise. Bump CORPUS_VERSION when the recipe
# changes so stale cached files are not reused.
CORPUS_VERSION = 1
WIDTH, HEIGHT = 4000, 3000
JPEG_QUALITY = 90
SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "motorcycle_right",
           "hubble_deep_field", "immunohistochemistry", "retina")


@dataclass(frozen=True)
class Check:
    figure: str
    value: float
    unit: str
    target: str
    passed: bool | None  # None: informational, no target


@dataclass
class Summary:
    checks: list[Check] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)

    def add(self, figure: str, value: float, unit: str, target: str = "", passed: bool | None = None) -> None:
        self.checks.append(Check(figure, round(value, 3), unit, target, passed))


def stop_daemon(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """SIGTERM (the daemon checkpoints and exits 0), and SIGKILL if it has not ended within `timeout`."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@functools.cache
def spawn_context() -> multiprocessing.context.SpawnContext:
    return multiprocessing.get_context("spawn")


@functools.cache
def source_photo(name: str) -> np.ndarray:
    """A real photo shipped with scikit-image, as BGR uint8."""
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        rgb = left if name.endswith("left") else right
    else:
        rgb = getattr(data, name)()
    return np.ascontiguousarray(rgb[:, :, 2::-1])


def random_crop(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random 4:3 crop covering 55-100% of the largest 4:3 window, flipped at random."""
    h, w = bgr.shape[:2]
    full_w = min(w, h * 4 // 3)
    cw = max(32, int(full_w * rng.uniform(0.55, 1.0)))
    ch = cw * 3 // 4
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = bgr[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.15:
        crop = crop[::-1]
    return np.ascontiguousarray(crop)


def shift_hue(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV_FULL)
    hsv[:, :, 0] += np.uint8(rng.integers(0, 256))  # uint8 wraps: hue is circular
    sat = hsv[:, :, 1].astype(np.float32) * np.float32(rng.uniform(0.8, 1.2))
    hsv[:, :, 1] = np.clip(sat, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR_FULL)


def add_sensor_noise(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Luma grain + chroma noise at pixel scale, and low-frequency 'texture' so JPEGs are 3-6 MB."""
    h, w = bgr.shape[:2]
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    luma = np.empty((h, w), np.int16)
    cv2.randn(luma, np.zeros(1), np.full(1, rng.uniform(5.0, 7.0)))
    texture = np.empty((h // 4, w // 4), np.float32)
    cv2.randn(texture, np.zeros(1), np.full(1, 8.0))
    luma += cv2.resize(texture, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    noisy = bgr.astype(np.int16)
    chroma = np.empty_like(noisy)
    cv2.randn(chroma, np.zeros(3), np.full(3, 3.0))
    noisy += chroma
    noisy += luma[:, :, None]
    return np.clip(noisy, 0, 255).astype(np.uint8)


def camera_like_jpeg(index: int) -> bytes:
    rng = np.random.default_rng(1_000 + index)
    src = source_photo(SOURCES[index % len(SOURCES)])
    small = shift_hue(random_crop(src, rng), rng)
    big = cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", add_sensor_noise(big, rng), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _make_corpus_file(job: tuple[int, str]) -> int:
    index, path = job
    data = camera_like_jpeg(index)
    write_atomic(Path(path), data)
    return len(data)


def corpus_dir(out: Path) -> Path:
    return out / f"corpus-{WIDTH}x{HEIGHT}-q{JPEG_QUALITY}-v{CORPUS_VERSION}"


def make_corpus(out: Path, count: int) -> list[Path]:
    """The first `count` corpus files, generating (on all cores) whichever are not cached yet."""
    folder = corpus_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"photo_{i:04d}.jpg" for i in range(count)]
    missing = [(i, str(p)) for i, p in enumerate(paths) if not p.exists()]
    if missing:
        started = time.monotonic()
        with ProcessPoolExecutor(len(os.sched_getaffinity(0)), mp_context=spawn_context()) as pool:
            list(pool.map(_make_corpus_file, missing, chunksize=2))
        print(f"  generated {len(missing)} JPEGs in {time.monotonic() - started:.1f} s")
    return paths


def linked_set(out: Path, paths: Sequence[Path]) -> Path:
    """A dataset folder holding exactly these files (hard links, so no copy)."""
    folder = out / "sets" / f"n{len(paths)}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for p in paths:
        os.link(p, folder / p.name)
    return folder


def warm_page_cache(paths: Sequence[Path]) -> None:
    """Read every file once so that no measurement pays for the disk and the first one is not penalised."""
    for p in paths:
        p.read_bytes()


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot."""
    import psutil

    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def busy_cores(seconds: float = 1.0) -> float:
    """How many cores other processes keep busy right now (this one is idle while measuring)."""
    import psutil

    return psutil.cpu_percent(interval=seconds) / 100 * (os.cpu_count() or 1)


def wait_until_quiet(max_wait: float) -> None:
    """On a shared machine: wait (at most max_wait s) until other processes leave the cores idle."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline and busy_cores(0.5) > 0.2:
        pass


def ratio_line(label: str, value: float, target: float | None = None) -> None:
    goal = f"  (target >= {target})" if target is not None else ""
    print(f"  {label:<58} = {value:5.2f}{goal}")


def verdict(check: Check) -> str:
    return "info" if check.passed is None else ("PASS" if check.passed else "FAIL")


def print_summary(summary: Summary) -> None:
    section("Summary")
    print(f"  {'figure':<46} {'value':>12} {'unit':<7} {'target':<10} result")
    for c in summary.checks:
        print(f"  {c.figure:<46} {c.value:>12,.2f} {c.unit:<7} {c.target:<10} {verdict(c)}")


def begin(name: str, environment: dict[str, object]) -> tuple[Summary, float]:
    """The start of every benchmark: the summary (with the environment it ran in, printed) and the clock."""
    summary = Summary(details={"environment": environment})
    print(f"{name}: {json.dumps(environment)}")
    warn_if_busy("at start", summary)
    return summary, time.monotonic()


def finish(out: Path, name: str, summary: Summary, started: float) -> int:
    """The end of every benchmark: total time, load at the end, the summary printed and written to
    OUT/<name>.json; the exit code (1 when a target was missed)."""
    summary.details["seconds_total"] = round(time.monotonic() - started, 1)
    summary.details["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    warn_if_busy("at the end", summary)
    print_summary(summary)
    path = out / f"{name}.json"
    doc = {"summary": [{**asdict(c), "result": verdict(c)} for c in summary.checks], **summary.details}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n  total {summary.details['seconds_total']} s; load average at end {summary.details['loadavg_end']}; "
          f"JSON: {path}")
    return 1 if any(c.passed is False for c in summary.checks) else 0


def warn_if_busy(when: str, summary: Summary) -> None:
    busy = busy_cores()
    summary.details[f"busy_cores_{when}"] = round(busy, 2)
    if busy > 0.2:
        print(f"  WARNING: other processes keep {busy:.1f} cores busy {when}; figures will be low and noisy")
