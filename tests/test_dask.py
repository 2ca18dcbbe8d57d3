"""`build --dask`: the histograms made on a real Dask cluster (LocalCluster worker processes), the
driver the only writer. No mocks: real clusters, real worker processes, a worker really killed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, LocalCluster
from distributed.utils import offload

from chromatica_watch.core.errors import ClusterError
from chromatica_watch.ingest.cluster import Identity, PathMap, mismatches
from chromatica_watch.offline.build import BuildOptions, build
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.index import load_checkpoint
from tests.conftest import CLI, PHOTO_NAMES, photo, solid, wait_until, write_rgb
from tests.test_build import WITHOUT_DAC_OVERRIDE

Row = tuple[bytes, str, bytes]  # path, content hash, histogram bytes


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    # Without CAP_DAC_OVERRIDE when root (as CI is), so that a chmod-000 file is unreadable, for the
    # driver and every Dask worker process it starts alike.
    prefix = WITHOUT_DAC_OVERRIDE if os.geteuid() == 0 else []
    return subprocess.run([*prefix, CLI, *map(str, args)], capture_output=True, text=True, timeout=120)


def catalog_rows(index_dir: Path) -> tuple[dict[Row, int], dict[bytes, str]]:
    """(path, content hash, histogram) -> id of every live row, and path -> reason of every failure."""
    with Catalog.open(index_dir, None, read_only=True) as cat:
        files = {lf.image_id: (path, lf.content_hash) for root in cat.roots()
                 for path, lf in cat.live_files(root).items()}
        hists = cat.histograms(files)
        failed = {path: f.reason for (_, path), f in cat.failed_files().items()}
    return {(*files[i], hists[i].tobytes()): i for i in files}, failed


def index_ids(index_dir: Path) -> list[int]:
    fp = json.loads((index_dir / "manifest.json").read_text())["fingerprint"]
    live, _ = load_checkpoint(index_dir, fp)
    return sorted(live.ids().tolist())


def small_dataset(root: Path) -> Path:
    """A dozen images in two folders, and one file that is not an image."""
    for i, name in enumerate(PHOTO_NAMES):
        write_rgb(root / ("trip" if i % 2 else "") / f"{name}.jpg", photo(name), IMWRITE_JPEG_QUALITY=90)
    for i in range(5):
        write_rgb(root / "flat" / f"solid-{i}.png", solid((50 * i, 220 - 40 * i, 90)))
    write_rgb(root / "camera.png", photo("camera"))
    (root / "notes.jpg").write_text("not a photo\n")
    return root


def unreadable(path: Path) -> Path:
    write_rgb(path, photo("rocket"))
    path.chmod(0o000)
    return path


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[LocalCluster, Client]]:
    """Two worker processes, one thread each, as `--dask local:2` makes; module-wide (its start-up
    costs ~1.5 s), and started before the per-test thread check, which it would otherwise trip."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
            Client(lc) as client:
        # Dask's one process-wide offload thread, started on first use (by a worker's death, say) and
        # never stopped: started here, it is part of the world each test starts from.
        client.sync(offload, int)
        yield lc, client


def test_a_local_cluster_build_is_the_local_build(tmp_path: Path) -> None:
    dataset = small_dataset(tmp_path / "photos")
    unreadable(dataset / "trip" / "secret.jpg")  # a file the workers cannot read: failed, its reason as locally
    local, dask = tmp_path / "local", tmp_path / "dask"
    run = run_cli("build", "--dataset", dataset, "--output", local, "--workers", "2", "--batch-size", "5", "-q")
    assert run.returncode == 0, run.stderr
    run = run_cli("build", "--dataset", dataset, "--output", dask, "--dask", "local:2", "--batch-size", "5", "-q")
    assert run.returncode == 0, run.stderr
    assert "indexed 12 new images" in run.stdout
    assert "distributed" not in run.stderr  # Dask's own INFO chatter is for --verbose only

    rows, failed = catalog_rows(dask)
    assert (rows, failed) == catalog_rows(local)  # same paths, hashes, histograms, ids, failure reasons
    assert len(rows) == 12 and set(failed) == {b"notes.jpg", b"trip/secret.jpg"}
    assert "permission denied" in failed[b"trip/secret.jpg"]
    assert index_ids(dask) == index_ids(local) == sorted(rows.values())
    report = json.loads((dask / "indexing_report.json").read_text())
    assert (report["cluster"], report["workers"], report["indexed"]) == ("local:2", 2, 12)
    assert "notes.jpg" in (dask / "failed_images_report.txt").read_text()


def slow_dataset(root: Path, count: int) -> Path:
    """`count` 2400x1800 PNGs: no reduced-scale decode for PNG, so each costs a worker ~0.1 s and a
    chunk of 8 is long enough to be caught in the middle. One file written, copied (cheap to make)."""
    rng = np.random.default_rng(7)
    big = np.repeat(np.repeat(rng.integers(0, 255, (180, 240, 3), dtype=np.uint8), 10, axis=0), 10, axis=1)
    data = write_rgb(root / "p000.png", big).read_bytes()
    for i in range(1, count):
        (root / f"p{i:03d}.png").write_bytes(data)
    return root


def test_a_worker_killed_mid_build_loses_nothing(tmp_path: Path, cluster: tuple[LocalCluster, Client]) -> None:
    lc, client = cluster
    count = 64
    dataset = slow_dataset(tmp_path / "photos", count)
    out = tmp_path / "index"
    proc = subprocess.Popen([CLI, "build", "--dataset", str(dataset), "--output", str(out), "--dask",
                             lc.scheduler_address, "--batch-size", "10", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # A worker busy with a chunk of this build (the scheduler's view), then its process killed.
        busy = wait_until(lambda: [w for w, keys in client.processing().items() if keys], timeout=60, interval=0.01)
        pids = client.run(os.getpid)
        assert proc.poll() is None  # the build is still running: the kill lands mid-build
        os.kill(pids[busy[0]], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    rows, failed = catalog_rows(out)
    paths = sorted(path for path, _, _ in rows)
    assert paths == [f"p{i:03d}.png".encode() for i in range(count)]  # every file once: none lost, none twice
    assert failed == {}
    assert index_ids(out) == sorted(rows.values()) == list(range(1, count + 1))
    assert f"indexed {count} new images" in stdout
    wait_until(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=30)  # the nanny restarted it


def test_the_driver_killed_mid_build_resumes_from_the_catalog(tmp_path: Path,
                                                              cluster: tuple[LocalCluster, Client]) -> None:
    lc, _ = cluster
    dataset = slow_dataset(tmp_path / "photos", 96)
    reference = tmp_path / "reference"
    assert run_cli("build", "--dataset", dataset, "--output", reference, "--batch-size", "8", "-q").returncode == 0
    out = tmp_path / "index"
    wal = out / "chromatica_metadata.db.wal"
    proc = subprocess.Popen([CLI, "build", "--dataset", str(dataset), "--output", str(out), "--dask",
                             lc.scheduler_address, "--batch-size", "8", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # killed once a few batches are committed (8 histograms are ~37 KB of WAL), and before the end
        wait_until(lambda: (wal.exists() and wal.stat().st_size > 100_000) or proc.poll() is not None,
                   timeout=60, interval=0.01)
        assert proc.poll() is None, "the build ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    run = run_cli("build", "--dataset", dataset, "--output", out, "--dask", lc.scheduler_address, "--batch-size",
                  "8", "-q")
    assert run.returncode == 0, run.stderr
    resumed = re.search(r"indexed (\d+) new images \((\d+) already indexed", run.stdout)
    assert resumed is not None and int(resumed[2]) > 0  # it resumed: what was committed was not read again
    assert int(resumed[1]) + int(resumed[2]) == 96
    assert catalog_rows(out) == catalog_rows(reference)  # same paths, hashes, histograms and ids
    assert index_ids(out) == index_ids(reference)


def test_dask_is_imported_only_with_dask() -> None:
    code = ("import sys; from chromatica_watch.cli import main as cli; "
            "from chromatica_watch.offline import build; from chromatica_watch.ingest import pipeline, pool; "
            "from chromatica_watch.daemon import daemon; "
            "cli.build_parser().parse_args(['build', '--dataset', 'd', '--output', 'o']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_identities_compared_one_line_naming_both() -> None:
    driver = Identity("0.1.0", "aaaa")
    assert mismatches(driver, {"tcp://a:1": driver, "tcp://b:2": driver}) is None
    line = mismatches(driver, {"tcp://a:1": driver, "tcp://b:2": Identity("0.2.0", "bbbb"),
                               "tcp://c:3": Identity("0.1.0", "cccc")})
    assert line is not None and "\n" not in line
    assert "tcp://b:2 runs chromatica-watch 0.2.0, fingerprint bbbb" in line
    assert "this driver runs chromatica-watch 0.1.0, fingerprint aaaa" in line
    assert "1 other worker" in line


def test_a_worker_of_another_version_is_refused_before_any_work(
        tmp_path: Path, cluster: tuple[LocalCluster, Client]) -> None:  # its threads are Dask's, not this test's
    preload = tmp_path / "other_version.py"
    preload.write_text("import chromatica_watch\nchromatica_watch.__version__ = '0.0.0-other'\n")
    dataset = small_dataset(tmp_path / "photos")
    out = tmp_path / "index"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      preload=[str(preload)]) as lc, pytest.raises(ClusterError) as refused:
        build(BuildOptions(dataset=dataset, output=out, dask=lc.scheduler_address))
    message = str(refused.value)
    assert "runs chromatica-watch 0.0.0-other" in message and "this driver runs chromatica-watch 0.1.0" in message
    assert not out.exists()  # refused before the catalog was opened, nothing read, no empty folder left


def test_an_unreachable_scheduler_is_one_line_exit_1(tmp_path: Path) -> None:
    dataset = small_dataset(tmp_path / "photos")
    run = run_cli("build", "--dataset", dataset, "--output", tmp_path / "index", "--dask", "tcp://127.0.0.1:9",
                  "--dask-timeout", "1")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]
    assert run.stderr.startswith("chromatica-watch: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert not (tmp_path / "index").exists()  # the folder it made for the index is not left behind, empty


def test_path_map_rewrites_roots_under_the_source_only() -> None:
    pm = PathMap([("/mnt/photos", "/data/photos")])
    assert pm.to_worker("/mnt/photos") == "/data/photos"
    assert pm.to_worker("/mnt/photos/2024") == "/data/photos/2024"
    assert pm.to_worker("/mnt/photos-old") == "/mnt/photos-old"


def test_a_path_map_sends_the_workers_to_their_mount_and_records_the_drivers_paths(
        tmp_path: Path, cluster: tuple[LocalCluster, Client]) -> None:
    lc, _ = cluster
    workers_mount = tmp_path / "workers-mount"
    write_rgb(workers_mount / "a" / "x.png", solid((200, 0, 0)))
    driver_mount = tmp_path / "driver-mount"
    write_rgb(driver_mount / "a" / "x.png", solid((0, 0, 200)))  # the same name, other content: who read it?
    out = tmp_path / "index"
    report = build(BuildOptions(dataset=driver_mount, output=out, dask=lc.scheduler_address,
                                dask_path_map=((str(driver_mount.resolve()), str(workers_mount.resolve())),)))
    assert report.indexed == 1
    rows, _ = catalog_rows(out)
    ((path, _, hist),) = rows
    assert path == b"a/x.png"
    with Catalog.open(out, None, read_only=True) as cat:
        assert cat.roots() == [os.fsdecode(driver_mount.resolve())]  # recorded under the driver's root...
    red = np.frombuffer(hist, dtype=np.float32)
    assert red.argmax() == _histogram_of(workers_mount / "a" / "x.png").argmax()  # ...read from the workers' mount


def _histogram_of(path: Path) -> np.ndarray:
    from chromatica_watch.ingest.pool import Indexed, Task, process

    result = process(Task(os.fsdecode(path.parent), os.fsencode(path.name)), 256, 10**9)
    assert isinstance(result, Indexed)
    return result.histogram
