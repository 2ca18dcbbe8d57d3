"""`build` and `validate` end to end, through the real CLI in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import psutil

from chromatica_watch.colour import histogram as H
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.index import load_checkpoint
from tests.conftest import CLI, PHOTO_NAMES, photo, solid, wait_until, write_rgb
from tests.test_image import png_declaring

# Root reads chmod-000 files through CAP_DAC_OVERRIDE; without it (and DAC_READ_SEARCH) it gets
# EACCES like any user. setpriv ships with util-linux, part of every Debian base system.
WITHOUT_DAC_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def run_cli(*args: str, unprivileged: bool = False, check: bool = False) -> subprocess.CompletedProcess[str]:
    prefix = WITHOUT_DAC_OVERRIDE if unprivileged and os.geteuid() == 0 else []
    proc = subprocess.run([*prefix, CLI, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def live_paths(index_dir: Path) -> set[bytes]:
    fp = json.loads((index_dir / "manifest.json").read_text())["fingerprint"]
    cat = Catalog.open(index_dir, fp, read_only=True)
    try:
        return {p for root in cat.roots() for p in cat.live_files(root)}
    finally:
        cat.close()


def make_dataset_with_bad_inputs(root: Path) -> tuple[set[bytes], dict[str, str]]:
    """Real photos plus every kind of bad input; returns (good relative paths, bad path -> reason pattern)."""
    good: set[bytes] = set()
    for i, name in enumerate(PHOTO_NAMES):
        rel = f"{'trips/' if i % 2 else ''}{name}.jpg"
        write_rgb(root / rel, photo(name), IMWRITE_JPEG_QUALITY=90)
        good.add(rel.encode())
    write_rgb(root / "pixel.png", solid((0, 200, 0), (1, 1)))
    good.add(b"pixel.png")
    write_rgb(root / "with space\nand newline.png", solid((0, 0, 250)))
    good.add(b"with space\nand newline.png")
    odd = os.fsencode(str(root)) + b"/caf\xe9-latin1.png"
    with open(odd, "wb") as f:
        f.write((root / "pixel.png").read_bytes())
    good.add(b"caf\xe9-latin1.png")
    jpeg = write_rgb(root / "tmp-full.jpg", photo("coffee"), IMWRITE_JPEG_QUALITY=90).read_bytes()
    (root / "tmp-full.jpg").unlink()
    bad = {
        "truncated.jpg": "truncated",
        "zero.jpg": "empty file",
        "notes.jpg": "not an image",
        "bomb.png": "pixel limit",
        "secret.jpg": "permission denied",
        "loop.jpg": "symlink loop",
        "trips/back": "symbolic link not followed",  # a link to the folder above: never walked twice
        "alias.jpg": "symbolic link not followed",  # a link to a photo already indexed under its own name
        "pipe.jpg": "not a regular file: a named pipe (FIFO)",  # never opened (opening one blocks)
    }
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "zero.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("shopping list: milk, eggs\n" * 20)
    (root / "bomb.png").write_bytes(png_declaring(50000, 50000))
    write_rgb(root / "secret.jpg", photo("rocket"))
    (root / "secret.jpg").chmod(0o000)
    (root / "loop.jpg").symlink_to("loop.jpg")
    (root / "trips" / "back").symlink_to("..")  # a folder loop
    (root / "alias.jpg").symlink_to(root / "secret.jpg")
    os.mkfifo(root / "pipe.jpg")
    return good, bad


def test_build_and_validate_with_bad_inputs(tmp_path: Path) -> None:
    dataset, out = tmp_path / "dataset", tmp_path / "index"
    dataset.mkdir()
    good, bad = make_dataset_with_bad_inputs(dataset)
    proc = run_cli("build", "--dataset", str(dataset), "--output", str(out), "--batch-size", "3", "-q",
                   unprivileged=True)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(good)} in the index" in proc.stdout
    report = (out / "failed_images_report.txt").read_text()
    lines = [line for line in report.splitlines() if line and not line.startswith("#")]
    assert len(lines) == len(bad), report
    for name, reason in bad.items():
        assert any(line.startswith(f"{dataset}/{name}\t") and reason in line for line in lines), (name, report)
    assert f"{dataset}/with space\\nand newline.png" not in report  # good files are not failures
    stats = json.loads((out / "indexing_report.json").read_text())
    assert stats["indexed"] == len(good) and stats["images_per_second"] > 0
    assert live_paths(out) == good
    proc = run_cli("validate", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[FAIL]" not in proc.stdout and "[ok] counts agree" in proc.stdout


def test_build_refuses_with_one_line_reason(tmp_path: Path) -> None:
    proc = run_cli("build", "--dataset", str(tmp_path / "nope"), "--output", str(tmp_path / "o"))
    assert proc.returncode == 1 and "does not exist" in proc.stderr and len(proc.stderr.splitlines()) == 1
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    proc = run_cli("build", "--dataset", str(tmp_path / "empty"), "--output", str(tmp_path / "o"))
    assert proc.returncode == 1 and "no images found" in proc.stderr
    (tmp_path / "file").write_text("x")
    write_rgb(tmp_path / "one" / "a.png", solid((1, 2, 3)))
    proc = run_cli("build", "--dataset", str(tmp_path / "one"), "--output", str(tmp_path / "file" / "o"))
    assert proc.returncode == 1 and "index dir" in proc.stderr and "Traceback" not in proc.stderr


def test_validate_fails_on_corrupted_index(tmp_path: Path, photos_dir: Path) -> None:
    run_cli("build", "--dataset", str(photos_dir), "--output", str(tmp_path / "i"), "-q", check=True)
    index_file = tmp_path / "i" / "chromatica_index.faiss"
    index_file.write_bytes(index_file.read_bytes()[:-100])
    proc = run_cli("validate", str(tmp_path / "i"))
    assert proc.returncode == 1 and "[FAIL] index checksum" in proc.stdout


def test_validate_reports_a_checkpoint_of_other_histogram_settings(tmp_path: Path, photos_dir: Path) -> None:
    run_cli("build", "--dataset", str(photos_dir), "--output", str(tmp_path / "i"), "-q", check=True)
    manifest = tmp_path / "i" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["fingerprint"] = "0123456789abcdef"  # a checkpoint written with other histogram settings
    manifest.write_text(json.dumps(data))
    proc = run_cli("validate", str(tmp_path / "i"))
    assert proc.returncode == 1
    assert "[ok] catalog opens" in proc.stdout and "[FAIL] fingerprint" in proc.stdout, proc.stdout


def test_second_build_is_a_delta_and_recognises_moves(tmp_path: Path, photos_dir: Path) -> None:
    out = tmp_path / "i"
    run_cli("build", "--dataset", str(photos_dir), "--output", str(out), "-q", check=True)
    before = snapshot(out)
    (photos_dir / "trip" / "astronaut.jpg").rename(photos_dir / "moved-astronaut.jpg")
    (photos_dir / "camera.png").unlink()
    write_rgb(photos_dir / "new.png", solid((250, 250, 0)))
    run_cli("build", "--dataset", str(photos_dir), "--output", str(out), "-q", check=True)
    stats = json.loads((out / "indexing_report.json").read_text())
    assert (stats["indexed"], stats["moved"], stats["tombstoned"]) == (1, 1, 1)
    after = snapshot(out)
    moved_id = next(i for i, row in before["rows"].items() if row[0].endswith(b"trip/astronaut.jpg"))
    assert after["rows"][moved_id][0].endswith(b"moved-astronaut.jpg")  # same id, new path
    assert run_cli("validate", str(out)).returncode == 0


def snapshot(index_dir: Path) -> dict[str, dict[int, tuple[bytes, str, bytes]]]:
    """Catalog live rows (id -> path, hash, histogram bytes) and index vectors (id -> bytes)."""
    fp = H.fingerprint(256)
    cat = Catalog.open(index_dir, fp, read_only=True)
    try:
        rows = {}
        for root in cat.roots():
            for path, lf in cat.live_files(root).items():
                rows[lf.image_id] = (path, lf.content_hash, cat.histograms([lf.image_id])[lf.image_id].tobytes())
        failures = {f"{k[1]!r}": f.reason for k, f in cat.failed_files().items()}
    finally:
        cat.close()
    live, _ = load_checkpoint(index_dir, fp)
    vectors = {int(i): np.round(live.reconstruct(int(i)), 6).tobytes() for i in live.ids()}
    return {"rows": rows, "vectors": vectors, "failures": failures}  # type: ignore[dict-item]


def cropped_photos(dataset: Path, count: int = 160) -> Path:
    """`count` distinct JPEG crops of the real photos in four folders, and one file that is not an image."""
    rng = np.random.default_rng(3)
    base = [photo(n) for n in PHOTO_NAMES]
    for i in range(count):
        img = base[i % len(base)]
        y, x = rng.integers(0, 100, 2)
        crop = np.ascontiguousarray(img[y:y + 200, x:x + 260])
        write_rgb(dataset / f"d{i % 4}" / f"img{i:03d}.jpg", crop, IMWRITE_JPEG_QUALITY=85)
    (dataset / "broken.jpg").write_text("not an image")
    return dataset


def test_kill_9_during_build_then_resume_gives_the_same_index(tmp_path: Path) -> None:
    dataset = cropped_photos(tmp_path / "dataset")
    reference = tmp_path / "reference"
    run_cli("build", "--dataset", str(dataset), "--output", str(reference), "--batch-size", "10", "-q",
            check=True)

    out = tmp_path / "killed"
    wal = out / "chromatica_metadata.db.wal"
    kills = 0
    for min_wal in (1, 200_000, 600_000):
        proc = subprocess.Popen([CLI, "build", "--dataset", str(dataset), "--output", str(out),
                                 "--batch-size", "10", "--workers", "1", "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda m=min_wal: (wal.exists() and wal.stat().st_size >= m) or proc.poll() is not None,
                   timeout=120, interval=0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    assert kills >= 1
    run_cli("build", "--dataset", str(dataset), "--output", str(out), "--batch-size", "10", "-q", check=True)
    assert run_cli("validate", str(out)).returncode == 0
    got, want = snapshot(out), snapshot(reference)
    assert len(want["rows"]) == 160
    assert got["rows"] == want["rows"]
    assert got["vectors"] == want["vectors"]
    assert got["failures"] == want["failures"]


def ended(p: psutil.Process) -> bool:
    """The process is gone, or a zombie (it has exited; its new parent has not reaped it yet)."""
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_build_killed_with_sigkill_leaves_no_process_behind(tmp_path: Path) -> None:
    """Its workers are forked from a fork server that the build started: with the build gone, the server
    and the workers see their pipes close and exit by themselves."""
    dataset = tmp_path / "dataset"
    for i in range(300):
        write_rgb(dataset / f"img{i:03d}.png", solid(((i * 37) % 256, (i * 91) % 256, 120), (64, 64)))
    proc = subprocess.Popen([CLI, "build", "--dataset", str(dataset), "--output", str(tmp_path / "out"),
                             "--workers", "2", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    build = psutil.Process(proc.pid)
    started: list[psutil.Process] = []

    def workers_up() -> bool:  # the fork server, its two workers, and the resource tracker
        started[:] = build.children(recursive=True)
        return len(started) >= 4 or proc.poll() is not None

    wait_until(workers_up, timeout=60, interval=0.005)
    assert proc.poll() is None, "the build ended before its workers were seen"
    assert sum(1 for p in started if p.ppid() != proc.pid) == 2  # the workers: children of the server
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    wait_until(lambda: all(ended(p) for p in started), timeout=30)

