"""Daemon benchmark: drop-to-indexed latency, a burst vs `build`, startup reconcile of 100k files, idle cost,
restart (start-to-ready after a clean stop, kill -9, a compaction).

    flock /tmp/chromatica-bench.lock .venv/bin/python bench/bench_daemon.py [--drops 20] [--cold-drops 2]
        [--burst 1000] [--repeat 3] [--tree 100000] [--idle-seconds 60] [--workers 0] [--poll 0.02] [--sources 100]
        [--sections latency,burst,reconcile,idle,restart] [--out bench/out]

A full run takes about 20 minutes the first time (corpus, ~4.6 GB of burst files and the 100k-file
index are generated once and cached in OUT; the index alone ~6 minutes on 2 cores) and about 15 minutes
afterwards (`--sections restart` alone: ~4.5 minutes, two of them the compaction). Smaller, quicker
runs: `--burst 200 --tree 10000 --idle-seconds 20 --drops 10`.

Not a pytest test. Every figure comes from the real `chromatica-watch run --config FILE` in a subprocess,
with a temp config that sets only paths, `workers` and `log_level`: settle_seconds, max_batch_delay,
batch_size, status_interval... are the built-in defaults, read back with the config loader (never typed
here). Prints figures, ratios and PASS/FAIL per target, writes OUT/bench_daemon.json, exits 1 when a
target is missed. The machine may be shared: every section prints how many cores other processes kept
busy meanwhile ("others"), so noisy figures can be recognised. Run it under the flock above so that no
two benchmarks overlap.

1. Drop-to-indexed latency (target p95 - settle_seconds <= 1.5 s). A daemon watches an empty folder;
   N distinct camera-like 12 MP JPEGs (bench_build's corpus, each with a unique trailer after the EOI
   marker so every file is new content) are dropped one at a time, each after the previous one was
   indexed and a random 0.3-1 s pause. A drop is a hard link made in a staging folder outside the root
   on the same file system, then one rename(2) into the root: the file appears atomically, complete.
   The clock starts just before the rename and stops when the daemon reports one more indexed image:
   over its socket (`{"op": "status"}`, counts from the committed catalog), polled every --poll s.
   status.json (what `chromatica-watch status` reads) is polled in the same loop and reported beside.
   Then as many other photos copied in with `shutil.copyfile` (what `cp` does: create, write, close) into
   the warm daemon, timed from the copy's return: ready at the close, no settle time (targets p50 <=
   0.15 s, p95 <= 0.3 s). Then --cold-drops more, each once the daemon has stopped its idle worker
   processes (it starts them again when a file is queued, during the settle time): the max of those is
   checked too.
2. Burst (target daemon / build <= 1.15). `chromatica-watch build --workers W` on the burst folder
   into a fresh index (wall time of the CLI, interpreter and worker start-up included), then the same
   files dropped at once (one rename each, as fast as the loop goes) into a freshly started, idle
   daemon on an empty folder with the same W workers: time from the first rename until the socket
   reports all indexed and nothing queued (settle_seconds included). --repeat times interleaved; the
   best of each is compared, every run is printed with its outside load.
3. Startup reconcile of an unchanged tree of --tree files (target <= 3 s, and no image opened). Tiny
   distinct JPEGs in folders of 100, generated and built once with `chromatica-watch build` (cached
   in OUT/daemon). The daemon is started on that index: the reconcile time is the daemon's own log
   line ("reconciled N files in S s": scan + catalog query + diff), checked against the state changes
   seen in status.json. The daemon is then started again under `strace -f -e trace=open,openat,openat2`
   (all its processes, workers included) and every open of a path under the root is counted; an open
   of a file with an image extension is an image open (target 0). Without strace (`apt-get install -y
   strace`) that check is skipped and says so. Positive control in the same trace: once started, one
   new image is dropped in (and deleted again); its opens are counted apart and must be >= 1, or the
   check fails. The dentry/inode cache is warm (the tree was just
   walked); a first start after boot walks a cold cache.
4. Idle daemon (targets: CPU ~0, i.e. <= 0.6 s per minute = 1% of a core; RSS <= index + 200 MB).
   (a) the daemon of section 3 (its index holds --tree vectors) once idle after its start, and (b) the
   daemon of the last burst after its work, once that work is checkpointed and its workers stopped (both
   bounded waits; the RSS right after the work is printed too). CPU = utime + stime from /proc of the
   daemon and all its child processes over --idle-seconds; peak RSS sampled every second, main process
   and all processes, against the size of the FAISS index file (chromatica_index.faiss) + 200 MB.
5. Restart (target: start-to-ready <= 5 s at 100k, the median of --repeat starts of each kind; and a start
   after a compaction rebuilds nothing). Section 3's tree and index (cached), on a private copy of the
   index (copied each run, deleted at the end), in the page cache (a warm restart; the first start after
   a boot reads ~1 GB more from disk). "Ready" = the daemon's socket has answered a search with results
   (catalog and index loaded) AND its status over the socket says idle (startup reconcile done); the clock
   starts just before the Popen of `chromatica-watch run` (interpreter and imports included), the socket
   and status are polled every --poll s, and both moments are printed, "socket up" and "idle", beside
   "status.json" (written once the new process has its imports, config and locks). The daemon logs at
   INFO, the default (at DEBUG watchdog logs each inotify event, ~16,000 lines per start at 100k from the
   daemon's own walks of the tree, which slows the start); each start's log is kept in
   OUT/daemon/runs/restart/logs. After a first start on the copy (not counted), --repeat times: (a) a
   start after a clean stop (SIGTERM, exit 0 checked); kill -9 of that daemon once it has been ready and
   idle for max(3 s, status_interval) + 1 s (the process alone, as the OOM killer would; children it
   leaves behind then by pid); (b) the start after that kill -9; a clean stop. One more start under
   cProfile (main thread, its overhead included) prints where a start's time goes. (c) 15% of the folders
   (15% of the photos) are moved out of the root while a daemon runs (a deletion for the daemon; a rename
   keeps size and mtime, so they are put back afterwards, by a later run too if this one is interrupted);
   once the daemon has logged "rebuilding the live index" and written the checkpoint after it, a clean
   stop, then --repeat starts, each after a clean stop, on the compacted index. Each start's log, up to
   ready + max(3 s, status_interval) (the first turns of its loop, where a compaction would begin), must
   hold no "rebuilding the live index" and no "checkpoint unusable" line: PASS/FAIL "restart costs a
   load, not a rebuild" (starts (a) and (b) are checked the same way). A rebuild there starts after
   "idle", so start-to-ready alone would not show it; the daemon of 0a2609b^ fails this check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bench_common as bb
import cv2
import numpy as np

from chromatica_watch.access.remote import request
from chromatica_watch.core import config as config_mod
from chromatica_watch.core.errors import ChromaticaError, DaemonNotRunning
from chromatica_watch.core.filetypes import has_image_extension
from chromatica_watch.search.query import color_query_histogram, parse_colors

BENCH_DIR = Path(__file__).resolve().parent
CLI = bb.CLI

TARGET_LATENCY_P95_S = 1.5
TARGET_CP_P50_S, TARGET_CP_P95_S = 0.15, 0.3  # a copied photo, from the copy's return to searchable
TARGET_BURST_RATIO = 1.15
TARGET_RECONCILE_S = 3.0
TARGET_IMAGE_OPENS = 0
TARGET_IDLE_CPU_S_PER_MIN = 0.6  # "~0": at most 1% of one core
TARGET_RSS_MARGIN_MB = 200.0
TARGET_RESTART_S = 5.0  # start-to-ready at 100k, median of --repeat, after a clean stop / kill -9 / compaction
TREE_VERSION = 1
MB = 1024 * 1024


Summary = bb.Summary
section = bb.section


def own_cpu() -> float:
    return bb.cpu_seconds(resource.RUSAGE_SELF) + bb.cpu_seconds(resource.RUSAGE_CHILDREN)


class OutsideLoad:
    """Cores kept busy by processes other than ours (this one, its children, and `tree_cpu`) meanwhile."""

    def __init__(self, tree_cpu: Callable[[], float] = lambda: 0.0) -> None:
        self.tree_cpu = tree_cpu
        self.busy0, self.ours0, self.tree0 = bb.busy_cpu_seconds(), own_cpu(), tree_cpu()
        self.started = time.perf_counter()

    def cores(self) -> float:
        seconds = time.perf_counter() - self.started
        ours = own_cpu() - self.ours0 + self.tree_cpu() - self.tree0
        return round(max(0.0, bb.busy_cpu_seconds() - self.busy0 - ours) / max(seconds, 1e-9), 2)


def process_tree_cpu(pid: int) -> Callable[[], float]:
    """user+sys seconds of a process and its descendants (/proc/PID/stat via psutil); remembers the
    last value of processes that have exited so the total never goes backwards."""
    import psutil

    seen: dict[int, float] = {}
    main = psutil.Process(pid)

    def total() -> float:
        try:
            procs = [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            try:
                t = p.cpu_times()
                seen[p.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return sum(seen.values())

    return total


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# ---------------------------------------------------------------------------------------------------
# A daemon in a subprocess
# ---------------------------------------------------------------------------------------------------
def clean_env() -> dict[str, str]:
    """The daemon's environment without CHROMATICA_WATCH_* overrides, so its config is the file's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CHROMATICA_WATCH_")}


@dataclass
class DaemonRun:
    name: str
    roots: list[Path]
    index_dir: Path
    workdir: Path  # state dir, config and stderr log live here
    workers: int
    runtime_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cwb-", dir="/tmp")))
    proc: subprocess.Popen[bytes] | None = None
    popen_at: float = 0.0  # time.perf_counter() just before the last start's Popen

    def __post_init__(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        values = {"roots": [str(r) for r in self.roots], "index_dir": str(self.index_dir),
                  "state_dir": str(self.state_dir), "runtime_dir": str(self.runtime_dir),
                  "workers": self.workers, "log_level": "INFO"}
        self.config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
        self.cfg = config_mod.load(self.config)  # defaults filled in by the daemon's own loader

    @property
    def config(self) -> Path:
        return self.workdir / "cw.toml"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def log_file(self) -> Path:
        return self.cfg.log_path

    def start(self, prefix: Sequence[str] = ()) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)  # a fresh log and status.json per start
        with (self.workdir / "stderr.log").open("ab") as log:
            self.popen_at = time.perf_counter()
            self.proc = subprocess.Popen([*prefix, CLI, "run", "--config", str(self.config)], stdout=log,
                                         stderr=log, env=clean_env())

    def status_json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.cfg.status_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def socket_status(self) -> dict[str, Any]:
        return dict(request(self.cfg.socket_path, {"op": "status"}, timeout=10.0)["status"])

    @property
    def pid(self) -> int:
        """The daemon's own pid (under strace, Popen's pid is strace's)."""
        return int(self.status_json().get("pid", 0))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_idle(self, timeout: float, queued_zero: bool = True) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name}: daemon exited; see {self.workdir / 'stderr.log'}")
            s = self.status_json()
            if s.get("state") == "idle" and (not queued_zero or s.get("counts", {}).get("queued") == 0):
                return s
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: not idle within {timeout} s; see {self.workdir / 'stderr.log'}")

    def stop(self, timeout: float = 120.0) -> None:
        if not self.alive():
            return
        pid = self.pid
        assert self.proc is not None
        try:
            os.kill(pid if pid > 0 else self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------
def unique_photos(out: Path, sources: Sequence[Path], count: int, tag: str) -> Path:
    """`count` distinct camera-like 12 MP JPEGs: corpus photos cycled, each with a unique trailer after
    the JPEG EOI marker (distinct content hashes, same decode work). Cached."""
    folder = out / "daemon" / f"{tag}-{count}-v{bb.CORPUS_VERSION}"
    marker = out / "daemon" / f".{tag}-{count}-v{bb.CORPUS_VERSION}.complete"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.monotonic()
    blobs = [p.read_bytes() for p in sources]
    for i in range(count):
        trailer = tag.encode() + i.to_bytes(8, "little") + os.urandom(8)
        (folder / f"{tag}_{i:05d}.jpg").write_bytes(blobs[i % len(blobs)] + trailer)
    marker.write_text(f"{count}\n")
    print(f"  wrote {count} {tag} files in {time.monotonic() - started:.1f} s (cached for later runs)")
    return folder


def staged(files: Sequence[Path], staging: Path) -> list[Path]:
    """Hard links to the files in a staging folder (outside the root, same file system)."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    links = []
    for f in files:
        link = staging / f.name
        os.link(f, link)
        links.append(link)
    return links


def tiny_tree(out: Path, count: int) -> Path:
    """`count` distinct tiny JPEGs (16x16 noise) in folders of 100. Cached."""
    folder = out / "daemon" / f"tree-{count}-v{TREE_VERSION}"
    marker = out / "daemon" / f".tree-{count}-v{TREE_VERSION}.complete"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    started = time.monotonic()
    rng = np.random.default_rng(12345)
    for i in range(count):
        sub = folder / f"d_{i // 100:04d}"
        if i % 100 == 0:
            sub.mkdir(parents=True)
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        ok, buf = cv2.imencode(".jpg", cv2.resize(small, (16, 16), interpolation=cv2.INTER_LINEAR),
                               [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        (sub / f"img_{i:06d}.jpg").write_bytes(buf.tobytes())
    marker.write_text(f"{count}\n")
    print(f"  wrote {count} tiny JPEGs in {count // 100} folders in {time.monotonic() - started:.1f} s")
    return folder


def run_build(dataset: Path, output: Path, workers: int, log: Path,
              fresh: bool = True) -> tuple[float, float, dict[str, Any]]:
    """`chromatica-watch build` as a CLI: (wall seconds, outside load in cores, indexing report)."""
    if fresh:
        shutil.rmtree(output, ignore_errors=True)
    load = OutsideLoad()
    started = time.perf_counter()
    with log.open("wb") as sink:
        rc = subprocess.call([CLI, "build", "--dataset", str(dataset), "--output", str(output), "-q",
                              "--workers", str(workers)], stdout=sink, stderr=subprocess.STDOUT, env=clean_env())
    seconds = time.perf_counter() - started
    if rc != 0:
        raise RuntimeError(f"chromatica-watch build exited {rc}; see {log}")
    return seconds, load.cores(), json.loads((output / "indexing_report.json").read_text())


# ---------------------------------------------------------------------------------------------------
# 1. Latency
# ---------------------------------------------------------------------------------------------------
@dataclass
class Drop:
    socket_s: float
    status_json_s: float | None


def drop_and_wait(daemon: DaemonRun, link: Path, dest: Path, before: int, poll: float,
                  timeout: float = 60.0, copy: bool = False) -> Drop:
    """Rename `link` to `dest` (or, with `copy`, copy it there as `cp` does: create, write, close) and time
    from the moment that returns until the daemon (socket) and status.json count one more photo."""
    t_socket: float | None = None
    t_json: float | None = None
    if copy:
        shutil.copyfile(link, dest)
    else:
        os.rename(link, dest)
    started = time.perf_counter()
    while t_socket is None or t_json is None:
        now = time.perf_counter()
        if now - started > timeout:
            if t_socket is None:
                raise RuntimeError(f"{dest.name} not indexed within {timeout} s")
            break  # status.json lagging is reported as missing, the socket figure stands
        if t_socket is None:
            s = daemon.socket_status()
            if s["counts"]["failed"]:
                raise RuntimeError(f"the daemon failed to index a file: {s['recent_failures']}")
            if s["counts"]["indexed"] > before:
                t_socket = time.perf_counter() - started
        if t_json is None and daemon.status_json().get("counts", {}).get("indexed", 0) > before:
            t_json = time.perf_counter() - started
        time.sleep(poll)
    assert t_socket is not None
    return Drop(t_socket, t_json)


def copy_drops(daemon: DaemonRun, files: Sequence[Path], target_dir: Path, poll: float,
               rng: random.Random) -> list[Drop]:
    """Each file copied into the watched folder while the daemon is warm (its workers running)."""
    bb.warm_page_cache(files)
    drops = []
    for f in files:
        daemon.wait_idle(60)
        before = int(daemon.socket_status()["counts"]["indexed"])
        drops.append(drop_and_wait(daemon, f, target_dir / f"cp_{f.name}", before, poll, copy=True))
        time.sleep(rng.uniform(0.3, 1.0))  # not in phase with the daemon's loop; workers stay warm (30 s)
    return drops


def bench_latency(daemon: DaemonRun, files: Sequence[Path], cold: int, staging: Path, poll: float,
                  summary: Summary, cp_files: Sequence[Path] = ()) -> None:
    settle = daemon.cfg.settle_seconds
    print(f"  daemon defaults: settle_seconds {settle}, max_batch_delay {daemon.cfg.max_batch_delay}, "
          f"batch_size {daemon.cfg.batch_size}, status_interval {daemon.cfg.status_interval}, "
          f"workers {daemon.cfg.worker_count}; polling every {poll * 1000:.0f} ms")
    links = staged(files, staging)
    bb.warm_page_cache(files)
    target_dir = daemon.roots[0] / "drops"
    target_dir.mkdir(exist_ok=True)
    time.sleep(daemon.cfg.settle_seconds + 1)  # the new folder's own event passes first
    daemon.wait_idle(60)
    rng = random.Random(3)
    drops: list[Drop] = []
    load = OutsideLoad(process_tree_cpu(daemon.pid))
    for link in links[:len(links) - cold]:
        before = int(daemon.socket_status()["counts"]["indexed"])
        drops.append(drop_and_wait(daemon, link, target_dir / link.name, before, poll))
        time.sleep(rng.uniform(0.3, 1.0))  # not in phase with the daemon's loop
    others = load.cores()
    copies = copy_drops(daemon, cp_files, target_dir, poll, rng)  # warm: before the workers may stop
    cold_drops: list[Drop] = []
    for link in links[len(links) - cold:]:
        deadline = time.monotonic() + 180
        while workers_alive(daemon.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(rng.uniform(0.3, 1.0))
        before = int(daemon.socket_status()["counts"]["indexed"])
        cold_drops.append(drop_and_wait(daemon, link, target_dir / link.name, before, poll))
    sock = [d.socket_s - settle for d in drops]
    js = [d.status_json_s - settle for d in drops if d.status_json_s is not None]
    print(f"  {len(drops)} drops, seconds after the rename minus settle_seconds ({settle}); others {others} cores")
    print(f"    socket status      : p50 {percentile(sock, 50):5.2f}  p95 {percentile(sock, 95):5.2f}  "
          f"min {min(sock):5.2f}  max {max(sock):5.2f}")
    if js:
        print(f"    status.json        : p50 {percentile(js, 50):5.2f}  p95 {percentile(js, 95):5.2f}  "
              f"min {min(js):5.2f}  max {max(js):5.2f}  ({len(js)} of {len(drops)} seen)")
    p95 = percentile(sock, 95)
    summary.add("drop-to-indexed p50 - settle (socket)", percentile(sock, 50), "s")
    summary.add("drop-to-indexed p95 - settle (socket)", p95, "s", f"<= {TARGET_LATENCY_P95_S}",
                p95 <= TARGET_LATENCY_P95_S)
    if js:
        summary.add("drop-to-indexed p95 - settle (status.json)", percentile(js, 95), "s")
    cold_s = [d.socket_s - settle for d in cold_drops]
    if cold_s:
        print(f"  {len(cold_s)} drops into the idle daemon once its workers had stopped (they start while the "
              f"file settles): minus settle {', '.join(f'{x:.2f}' for x in cold_s)}")
        summary.add("drop into idle daemon, workers stopped: max - settle", max(cold_s), "s",
                    f"<= {TARGET_LATENCY_P95_S}", max(cold_s) <= TARGET_LATENCY_P95_S)
    cp = [d.socket_s for d in copies]
    print(f"  {len(cp)} photos copied in with cp (create, write, close: ready at the close, no settle time), "
          f"seconds after the copy returned: p50 {percentile(cp, 50):5.3f}  p95 {percentile(cp, 95):5.3f}  "
          f"max {max(cp):5.3f}")
    summary.add("cp drop to searchable p50 (socket)", percentile(cp, 50), "s", f"<= {TARGET_CP_P50_S}",
                percentile(cp, 50) <= TARGET_CP_P50_S)
    summary.add("cp drop to searchable p95 (socket)", percentile(cp, 95), "s", f"<= {TARGET_CP_P95_S}",
                percentile(cp, 95) <= TARGET_CP_P95_S)
    summary.details["latency"] = {"settle_seconds": settle, "max_batch_delay": daemon.cfg.max_batch_delay,
                                  "cp_s": [round(x, 4) for x in cp],
                                  "poll_s": poll, "outside_load": others,
                                  "socket_minus_settle_s": [round(x, 4) for x in sock],
                                  "status_json_minus_settle_s": [round(x, 4) for x in js],
                                  "after_workers_stopped_minus_settle_s": [round(x, 4) for x in cold_s]}


# ---------------------------------------------------------------------------------------------------
# 2. Burst vs build
# ---------------------------------------------------------------------------------------------------
def daemon_burst(runs: Path, r: int, files: Sequence[Path], workers: int, poll: float,
                 limit_s: float) -> tuple[DaemonRun, float, float, float]:
    """A fresh daemon on an empty folder; the files renamed in at once. Returns the daemon (running),
    seconds from the first rename until all are indexed with nothing queued, rename time, outside load."""
    base = runs / f"burst-{r}"
    shutil.rmtree(base, ignore_errors=True)
    pictures = base / "Pictures"
    pictures.mkdir(parents=True)
    daemon = DaemonRun(f"burst-{r}", [pictures], base / "index", base / "work", workers)
    try:
        links = staged(files, runs / "staging")
        bb.warm_page_cache(files)
        daemon.start()
        daemon.wait_idle(120)
        time.sleep(1.0)
        load = OutsideLoad(process_tree_cpu(daemon.pid))
        started = time.perf_counter()
        for link in links:
            os.rename(link, pictures / link.name)
        dropped = time.perf_counter() - started
        while True:
            s = daemon.socket_status()
            if s["counts"]["failed"]:
                raise RuntimeError(f"the daemon failed to index files: {s['recent_failures']}")
            if s["counts"]["indexed"] >= len(files) and s["counts"]["queued"] == 0:
                break
            if time.perf_counter() - started > limit_s:
                raise RuntimeError(f"burst not indexed in time: {s['counts']}")
            time.sleep(poll)
        return daemon, time.perf_counter() - started, dropped, load.cores()
    except BaseException:
        daemon.cleanup()
        raise


def bench_burst(out: Path, burst_dir: Path, workers: int, repeat: int, poll: float,
                summary: Summary) -> DaemonRun:
    """Build and daemon, `repeat` times interleaved (so a burst of outside load cannot hit every run of
    one of them); the best of each is compared. Returns the last burst's daemon, still running."""
    files = sorted(burst_dir.iterdir())
    n = len(files)
    runs = out / "daemon" / "runs"
    builds: list[tuple[float, float, float]] = []
    bursts: list[tuple[float, float, float]] = []
    daemon: DaemonRun | None = None
    for r in range(repeat):
        bb.warm_page_cache(files)
        build_s, build_others, report = run_build(burst_dir, runs / "build-burst", workers,
                                                  out / "daemon" / "build-burst.log")
        if report["indexed"] != n:
            raise RuntimeError(f"build indexed {report['indexed']} of {n}")
        builds.append((build_s, float(report["seconds"]), build_others))
        print(f"  run {r + 1}: chromatica-watch build --workers {workers}: {n} files in {build_s:.2f} s wall = "
              f"{n / build_s:.1f} img/s (its own report: {report['seconds']:.2f} s); others {build_others} cores",
              flush=True)
        if daemon is not None:
            daemon.cleanup()
        daemon, daemon_s, dropped, others = daemon_burst(runs, r, files, workers, poll, max(600.0, 20 * build_s))
        bursts.append((daemon_s, dropped, others))
        print(f"  run {r + 1}: daemon, the {n} files renamed in at once ({dropped:.2f} s to rename them all): "
              f"all indexed after {daemon_s:.2f} s = {n / daemon_s:.1f} img/s; others {others} cores", flush=True)
    assert daemon is not None
    build_s = min(b[0] for b in builds)
    daemon_s = min(b[0] for b in bursts)
    ratio = daemon_s / build_s
    bb.ratio_line(f"burst: daemon / build, best of {repeat} each (same files, workers)", ratio)
    summary.add(f"build, {n} x 12 MP JPEGs, {workers} workers (best)", build_s, "s")
    summary.add(f"daemon burst, {n} x 12 MP JPEGs (best)", daemon_s, "s")
    summary.add("burst: daemon / build", ratio, "ratio", f"<= {TARGET_BURST_RATIO}", ratio <= TARGET_BURST_RATIO)
    summary.details["burst"] = {
        "files": n, "workers": workers, "repeat": repeat, "ratio": round(ratio, 4),
        "build_runs": [{"wall_s": round(w, 3), "report_s": rs, "outside_load": o} for w, rs, o in builds],
        "daemon_runs": [{"s": round(d, 3), "rename_s": round(rn, 3), "outside_load": o} for d, rn, o in bursts]}
    return daemon


# ---------------------------------------------------------------------------------------------------
# 3. Startup reconcile of an unchanged tree
# ---------------------------------------------------------------------------------------------------
RECONCILED = re.compile(r"reconciled (\d+) files in ([0-9.]+) s \((\d+) unchanged, (\d+) read, (\d+) gone\)")


def built_tree(out: Path, count: int, workers: int) -> tuple[Path, Path]:
    tree = tiny_tree(out, count)
    index = out / "daemon" / f"tree-{count}-v{TREE_VERSION}.index"
    marker = out / "daemon" / f".tree-{count}-v{TREE_VERSION}.built"
    if not marker.exists():
        print(f"  building the index of the tree once (resumable; cached in {index}) ...", flush=True)
        seconds, others, report = run_build(tree, index, workers, out / "daemon" / "build-tree.log", fresh=False)
        if report["total_live"] != count:
            raise RuntimeError(f"tree build has {report['total_live']} of {count} images; see the build log")
        marker.write_text(f"{count}\n")
        print(f"  built in {seconds:.0f} s (others {others} cores)")
    return tree, index


def reconcile_line(daemon: DaemonRun) -> tuple[int, float, int, int, int]:
    for line in reversed(daemon.log_file.read_text(errors="replace").splitlines()):
        m = RECONCILED.search(line)
        if m:
            return int(m[1]), float(m[2]), int(m[3]), int(m[4]), int(m[5])
    raise RuntimeError(f"no reconcile line in {daemon.log_file}")


def watch_states(daemon: DaemonRun, timeout: float) -> dict[str, float]:
    """Poll status.json tightly until idle; first time (since now) each state was seen."""
    seen: dict[str, float] = {}
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if not daemon.alive():
            raise RuntimeError(f"{daemon.name}: daemon exited; see {daemon.workdir / 'stderr.log'}")
        s = daemon.status_json()
        state = s.get("state")
        if state and state not in seen and s.get("pid") and s.get("started_at", 0) > 0:
            seen[state] = time.perf_counter() - started
        if state == "idle":
            return seen
        time.sleep(0.01)
    raise RuntimeError(f"{daemon.name}: not idle within {timeout} s")


OPENAT = re.compile(r'\b(open|openat|openat2)\((?:[^,]*, )?"((?:[^"\\]|\\.)*)"(?:, ([A-Z_|]+))?')


def count_opens(trace: Path, root: Path, skip: str = "") -> dict[str, Any]:
    prefix = str(root) + "/"
    dirs = files = images = 0
    examples: list[str] = []
    for line in trace.read_text(errors="replace").splitlines():
        m = OPENAT.search(line)
        if not m:
            continue
        path, flags = m[2], m[3] or ""
        if skip and (path == skip or path == os.path.basename(skip)):
            continue
        if not (path.startswith(prefix) or path == str(root) or not path.startswith("/")):
            continue
        if not path.startswith("/") and not has_image_extension(path):
            continue  # relative to some dirfd: only an image name could matter
        if "O_DIRECTORY" in flags:
            dirs += 1
            continue
        files += 1
        if has_image_extension(path):
            images += 1
            if len(examples) < 5:
                examples.append(line.strip()[:200])
    return {"folder_opens": dirs, "file_opens": files, "image_opens": images, "examples": examples}


def bench_reconcile(out: Path, tree: Path, index: Path, workers: int, check_opens: bool, idle_seconds: float,
                    summary: Summary) -> None:
    n = sum(1 for _ in tree.rglob("*.jpg"))
    faiss_mb = (index / "chromatica_index.faiss").stat().st_size / MB
    print(f"  tree: {n} tiny JPEGs in {tree}; index {faiss_mb:.0f} MB (FAISS file), catalog "
          f"{(index / 'chromatica_metadata.db').stat().st_size / MB:.0f} MB")
    daemon = DaemonRun("reconcile", [tree], index, out / "daemon" / "runs" / "reconcile", workers)
    try:
        started = time.perf_counter()
        daemon.start()
        assert daemon.proc is not None
        load = OutsideLoad(process_tree_cpu(daemon.proc.pid))  # the daemon's own CPU is not "others"
        states = watch_states(daemon, 600)
        to_idle = time.perf_counter() - started
        others = load.cores()
        files, seconds, unchanged, read, gone = reconcile_line(daemon)
        window = states["idle"] - states.get("reconciling", states["idle"])
        print(f"  daemon log: reconciled {files} files in {seconds:.2f} s ({unchanged} unchanged, {read} read, "
              f"{gone} gone); others {others} cores")
        print(f"  status.json: reconciling -> idle seen {window:.2f} s apart; exec -> idle {to_idle:.2f} s "
              f"(interpreter, imports, index load and verify, watches, reconcile)")
        if read or gone or files != n:
            print(f"  WARNING: the tree is not unchanged for the daemon ({read} read, {gone} gone, {files} of {n})")
        summary.add(f"startup reconcile, {files} unchanged files", seconds, "s", f"<= {TARGET_RECONCILE_S}",
                    seconds <= TARGET_RECONCILE_S and read == 0 and gone == 0)
        summary.add("daemon start: exec -> idle", to_idle, "s")
        summary.details["reconcile"] = {"files": files, "seconds": seconds, "unchanged": unchanged,
                                        "read": read, "gone": gone, "status_json_window_s": round(window, 3),
                                        "exec_to_idle_s": round(to_idle, 3), "outside_load": others,
                                        "faiss_mb": round(faiss_mb, 1)}
        if idle_seconds > 0:
            section(f"4a. Idle daemon over {idle_seconds:.0f} s: the daemon of section 3 ({n} vectors)")
            bench_idle(daemon, index, idle_seconds, f"{n // 1000}k, after start", summary)
    finally:
        daemon.cleanup()

    if not check_opens:
        return
    if shutil.which("strace") is None:
        print("  image opens: SKIPPED (strace not found; `apt-get install -y strace` to check)")
        summary.details["reconcile"]["opens"] = "skipped: no strace"
        return
    section("3b. Image opens during start-up and reconcile (strace)")
    trace = out / "daemon" / "runs" / "reconcile-strace.txt"
    traced = DaemonRun("reconcile-strace", [tree], index, out / "daemon" / "runs" / "reconcile-strace", workers)
    # Positive control, after the startup: one new image dropped in must show up as opened (by a worker),
    # proving the trace sees the processes that would read images. It is deleted again before the stop.
    control = tree / "strace_control.jpg"
    try:
        traced.start(prefix=("strace", "-f", "-qq", "--seccomp-bpf", "-s", "4096", "-e",
                             "trace=open,openat,openat2", "-o", str(trace)))
        traced.wait_idle(900)
        before = int(traced.socket_status()["counts"]["indexed"])
        _, buf = cv2.imencode(".jpg", np.random.default_rng().integers(0, 256, (16, 16, 3), dtype=np.uint8))
        staging = out / "daemon" / "runs" / "strace_control.jpg"
        staging.write_bytes(buf.tobytes())
        os.replace(staging, control)
        deadline = time.monotonic() + 120
        while traced.socket_status()["counts"]["indexed"] <= before and time.monotonic() < deadline:
            time.sleep(0.1)
        control.unlink()
        while traced.socket_status()["counts"]["indexed"] > before and time.monotonic() < deadline:
            time.sleep(0.1)
        traced.stop()
    finally:
        control.unlink(missing_ok=True)
        traced.cleanup()
    files_, _, _, read_, _ = reconcile_line(traced)
    all_opens = count_opens(trace, tree, skip=str(control))
    control_opens = count_opens(trace, tree)["image_opens"] - all_opens["image_opens"]
    opens = {**all_opens, "control_opens": control_opens}
    print(f"  under strace -f (every process of the daemon, start to stop): {opens['image_opens']} image files "
          f"opened under the root, {opens['file_opens']} files in all, {opens['folder_opens']} folder listings "
          f"({files_} files reconciled, {read_} read)")
    for ex in opens["examples"]:
        print(f"    e.g. {ex}")
    print(f"  positive control: one image dropped in after the start was opened {control_opens} time(s) in the "
          "same trace" + ("" if control_opens else "  WARNING: the trace does not see image reads"))
    summary.add("image files opened by startup + reconcile", opens["image_opens"], "files",
                f"== {TARGET_IMAGE_OPENS}", opens["image_opens"] == TARGET_IMAGE_OPENS and control_opens > 0)
    summary.details["reconcile"]["opens"] = opens


# ---------------------------------------------------------------------------------------------------
# 4. Idle
# ---------------------------------------------------------------------------------------------------
def rss_mb(pid: int) -> tuple[float, float, int]:
    import psutil

    main = psutil.Process(pid)
    procs = [main, *main.children(recursive=True)]
    sizes = []
    for p in procs:
        try:
            sizes.append(p.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
    return sizes[0] / MB, sum(sizes) / MB, len(sizes)


def workers_alive(pid: int) -> int:
    """Worker processes (multiprocessing spawn children, not the resource tracker) of the daemon."""
    import psutil

    count = 0
    for p in psutil.Process(pid).children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "spawn_main" in cmd:
            count += 1
    return count


def bench_idle(daemon: DaemonRun, index: Path, seconds: float, label: str, summary: Summary,
               after_work: float | None = None) -> None:
    """Idle CPU and RSS of a daemon with nothing to do. `after_work`: the time.time() its last work ended;
    the window then starts once the checkpoint of that work was written and the workers stopped
    (both bounded waits; whatever is still there is measured and said)."""
    daemon.wait_idle(120)
    time.sleep(3.0)  # let the last status rewrite and start-up threads settle
    pid = daemon.pid
    if after_work is not None:
        main, tree, _ = rss_mb(pid)
        print(f"  right after the work: RSS main {main:.0f} MB, main + children {tree:.0f} MB, "
              f"{workers_alive(pid)} workers alive")
        deadline = time.monotonic() + daemon.cfg.checkpoint_interval + 60
        while time.monotonic() < deadline:
            checkpointed = (daemon.status_json().get("last_checkpoint") or 0) >= after_work
            if checkpointed and workers_alive(pid) == 0:
                break
            time.sleep(0.5)
        waited = time.monotonic() - deadline + daemon.cfg.checkpoint_interval + 60
        print(f"  waited {waited:.0f} s for the checkpoint of that work and for the workers to stop")
    cpu = process_tree_cpu(pid)
    load = OutsideLoad(cpu)
    cpu0 = cpu()
    peak_main = peak_tree = 0.0
    procs = workers = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        main, tree, procs = rss_mb(pid)
        peak_main, peak_tree = max(peak_main, main), max(peak_tree, tree)
        workers = max(workers, workers_alive(pid))
        time.sleep(1.0)
    elapsed = time.perf_counter() - started
    used = cpu() - cpu0
    per_min = used / elapsed * 60
    others = load.cores()
    faiss_mb = (index / "chromatica_index.faiss").stat().st_size / MB
    limit = faiss_mb + TARGET_RSS_MARGIN_MB
    state = daemon.status_json().get("state")
    print(f"  CPU (daemon + {procs - 1} child processes, {workers} of them workers): {used:.3f} s in "
          f"{elapsed:.0f} s = {per_min:.3f} s per minute; state {state}; others {others} cores")
    print(f"  peak RSS: main {peak_main:.0f} MB, main + children {peak_tree:.0f} MB; index file {faiss_mb:.0f} MB "
          f"+ {TARGET_RSS_MARGIN_MB:.0f} MB = {limit:.0f} MB")
    summary.add(f"idle CPU, all processes ({label})", per_min, "s/min", f"<= {TARGET_IDLE_CPU_S_PER_MIN}",
                per_min <= TARGET_IDLE_CPU_S_PER_MIN)
    summary.add(f"idle RSS, all processes ({label})", peak_tree, "MB", f"<= {limit:.0f}", peak_tree <= limit)
    summary.add(f"idle RSS, main ({label})", peak_main, "MB")
    summary.details.setdefault("idle", {})[label] = {
        "seconds": round(elapsed, 1), "cpu_s": round(used, 4), "cpu_s_per_min": round(per_min, 4),
        "processes": procs, "workers": workers, "peak_rss_main_mb": round(peak_main, 1),
        "peak_rss_tree_mb": round(peak_tree, 1), "faiss_mb": round(faiss_mb, 3), "limit_mb": round(limit, 1),
        "outside_load": others, "state": state}


# ---------------------------------------------------------------------------------------------------
# 5. Restart: start-to-ready after a clean stop, after kill -9, after a compaction
# ---------------------------------------------------------------------------------------------------
REBUILD_LINES = ("rebuilding the live index", "checkpoint unusable")
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ([\w.]+): (.*)$")
PROFILE_FUNCTIONS = ("run", "lock", "open", "open_catalog", "open_live_index", "load_checkpoint", "add_from",
                     "mark_deleted", "deleted_ids", "counts", "start_server", "check_roots", "watch",
                     "reconcile_all", "_reconcile", "scan", "live_under", "diff", "publish_counts")


@dataclass
class Start:
    kind: str  # "clean stop", "kill -9", "after compaction"
    status_file_s: float | None  # Popen -> status.json written by the new process (imports, config, locks)
    socket_s: float  # Popen -> the socket answered a search with results (catalog and index loaded)
    idle_s: float  # Popen -> the socket's status says idle (startup reconcile done)
    reconcile_s: float  # the daemon's own "reconciled N files in S s"
    reconciled: tuple[int, int, int]  # files, read, gone
    daemon_cpu_s: float  # CPU of the daemon's processes from Popen to ready
    others: float
    rebuilt: list[str]  # lines of this start's log (until ready + grace) that name a rebuild
    log: str

    @property
    def ready_s(self) -> float:
        return max(self.socket_s, self.idle_s)


def log_lines(path: Path) -> list[tuple[float, str, str]]:
    """(wall time, level, message) of each line of a daemon log (its asctime format, local time)."""
    import datetime

    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = LOG_LINE.match(line)
        if m:
            when = datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((when, m[2], f"{m[3]}: {m[4]}"))
    return out


def kill9(daemon: DaemonRun) -> None:
    """SIGKILL to the daemon's process alone (as the OOM killer or a power cut would end it); then any
    child it leaves behind (orphaned workers, by pid) so that nothing of it runs on."""
    import psutil

    assert daemon.proc is not None
    try:
        children = psutil.Process(daemon.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    os.kill(daemon.proc.pid, signal.SIGKILL)
    daemon.proc.wait(timeout=30)
    for child in children:
        try:
            child.wait(timeout=5)  # a worker notices its parent is gone
        except psutil.TimeoutExpired:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    daemon.proc = None


def clean_stop(daemon: DaemonRun) -> tuple[int, float]:
    """SIGTERM; (exit code, seconds until the process ended)."""
    assert daemon.proc is not None
    started = time.perf_counter()
    os.kill(daemon.proc.pid, signal.SIGTERM)
    rc = daemon.proc.wait(timeout=120)
    daemon.proc = None
    return rc, time.perf_counter() - started


def timed_start(daemon: DaemonRun, kind: str, query: list[float], poll: float, keep: Path,
                grace: float, timeout: float = 600.0) -> Start:
    """Start the daemon and poll until ready: a search over its socket answered with results AND its
    status (over the socket) idle. Then `grace` seconds more (the first turns of its loop, where a
    compaction would start) before its log is kept and read."""
    daemon.start()
    assert daemon.proc is not None
    t0 = daemon.popen_at
    tree_cpu = process_tree_cpu(daemon.proc.pid)
    load = OutsideLoad(tree_cpu)
    file_s = socket_s = idle_s = None
    last: Any = None
    while socket_s is None or idle_s is None:
        if not daemon.alive():
            raise RuntimeError(f"{daemon.name}: daemon exited; see {daemon.workdir / 'stderr.log'}")
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"{daemon.name}: not ready within {timeout} s (last answer {last}); "
                               f"see {daemon.log_file}")
        if file_s is None and daemon.status_json().get("pid") == daemon.proc.pid:
            file_s = time.perf_counter() - t0
        try:
            if socket_s is None:
                last = request(daemon.cfg.socket_path, {"op": "search", "histogram": query, "k": 10}, timeout=60.0)
                if last.get("results"):
                    socket_s = time.perf_counter() - t0
            if socket_s is not None:
                last = request(daemon.cfg.socket_path, {"op": "status"}, timeout=60.0)["status"]
                if last.get("state") == "idle":
                    idle_s = time.perf_counter() - t0
        except (DaemonNotRunning, OSError, ChromaticaError) as exc:
            last = exc
        if socket_s is None or idle_s is None:
            time.sleep(poll)
    cpu_s = tree_cpu()
    time.sleep(grace)
    others = load.cores()
    shutil.copyfile(daemon.log_file, keep)
    rebuilt = [msg for _, _, msg in log_lines(keep) if any(s in msg for s in REBUILD_LINES)]
    files, seconds, _, read, gone = reconcile_line(daemon)
    return Start(kind, file_s, socket_s, idle_s, seconds,
                 (files, read, gone), round(cpu_s, 3), others, rebuilt, str(keep))


def profiled_start(daemon: DaemonRun, out: Path, query: list[float], poll: float) -> list[tuple[str, float, int]]:
    """One more start under cProfile (main thread only, its overhead included): cumulative seconds of the
    start-path functions of the package, up to idle. Diagnostic; not a checked figure."""
    import pstats

    prof = out / "restart-start.prof"
    prof.unlink(missing_ok=True)
    daemon.start(prefix=(sys.executable, "-m", "cProfile", "-o", str(prof)))
    try:
        t0 = daemon.popen_at
        while True:
            if not daemon.alive():
                raise RuntimeError(f"{daemon.name}: profiled daemon exited; see {daemon.workdir / 'stderr.log'}")
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"{daemon.name}: profiled daemon not idle within 600 s")
            try:
                if request(daemon.cfg.socket_path, {"op": "status"}, timeout=60.0)["status"].get("state") == "idle":
                    break
            except (DaemonNotRunning, OSError, ChromaticaError):
                pass
            time.sleep(poll)
    finally:
        if daemon.alive():
            clean_stop(daemon)
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    rows: dict[str, tuple[float, int]] = {}
    for (filename, _line, name), (_cc, calls, _tt, cumulative, _callers) in stats.items():
        if "chromatica_watch" not in filename or name not in PROFILE_FUNCTIONS:
            continue
        label = f"{Path(filename).stem}.{name}"
        seconds, n = rows.get(label, (0.0, 0))
        rows[label] = (seconds + cumulative, n + calls)
    imports = sum(cum for (filename, _l, name), (_c, _n, _t, cum, _cl) in stats.items()
                  if name == "<module>" and "chromatica_watch/cli.py" in filename)
    result = [(label, s, n) for label, (s, n) in rows.items()]
    if imports:
        result.append(("import chromatica_watch.cli.main (and what it imports)", imports, 1))
    return sorted(result, key=lambda r: -r[1])


def restore_held(tree: Path, holding: Path) -> int:
    """Move the folders set aside by a (possibly interrupted) compaction run back into the cached tree."""
    moved = 0
    if holding.is_dir():
        for d in sorted(holding.iterdir()):
            if d.is_dir() and not (tree / d.name).exists():
                os.rename(d, tree / d.name)
                moved += 1
        shutil.rmtree(holding, ignore_errors=True)
    return moved


def wait_compacted(daemon: DaemonRun, expect_live: int, moved_at: float,
                   timeout: float = 900.0) -> tuple[float, float, str]:
    """Until the daemon has tombstoned the deletions, logged its compaction, and written the checkpoint
    that follows it. Returns (seconds from the moves until the compaction line, from that line until the
    checkpoint, the line)."""
    deadline = time.monotonic() + timeout
    line: tuple[float, str] | None = None
    while time.monotonic() < deadline:
        if not daemon.alive():
            raise RuntimeError(f"{daemon.name}: daemon exited; see {daemon.workdir / 'stderr.log'}")
        if line is None:
            found = [(w, m) for w, _, m in log_lines(daemon.log_file) if "rebuilding the live index" in m]
            line = found[0] if found else None
        s = daemon.socket_status()
        if (line is not None and s["state"] == "idle" and s["counts"]["indexed"] == expect_live
                and s["counts"]["queued"] == 0 and (s.get("last_checkpoint") or 0) >= line[0]):
            return line[0] - moved_at, s["last_checkpoint"] - line[0], line[1]
        time.sleep(0.2)
    raise RuntimeError(f"{daemon.name}: no compaction and checkpoint within {timeout} s "
                       f"(compaction line: {line}); see {daemon.log_file}")


def start_figures(runs: Sequence[Start]) -> dict[str, dict[str, float]]:
    out = {}
    for name in ("ready_s", "socket_s", "idle_s", "status_file_s", "reconcile_s"):
        values = [float(v) for v in (getattr(s, name) for s in runs) if v is not None]
        if values:
            out[name] = {"best": round(min(values), 3), "median": round(percentile(values, 50), 3),
                         "max": round(max(values), 3)}
    return out


def fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def spread(values: Sequence[float]) -> str:
    return f"best {min(values):6.2f}  median {percentile(values, 50):6.2f}  max {max(values):6.2f}"


def bench_restart(out: Path, tree: Path, index: Path, workers: int, repeat: int, poll: float,
                  summary: Summary) -> None:
    base = out / "daemon" / "runs" / "restart"
    holding = base / "deleted-folders"
    if moved := restore_held(tree, holding):
        print(f"  restored {moved} folders an interrupted run had left in {holding}")
    n = sum(1 for _ in tree.rglob("*.jpg"))
    private = base / "index"
    keep = base / "logs"
    shutil.rmtree(private, ignore_errors=True)
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    copied = time.perf_counter()
    shutil.copytree(index, private)
    faiss_mb = (private / "chromatica_index.faiss").stat().st_size / MB
    catalog_mb = (private / "chromatica_metadata.db").stat().st_size / MB
    print(f"  tree: {n} tiny JPEGs in {tree}; a private copy of its index ({faiss_mb:.0f} MB FAISS file, "
          f"{catalog_mb:.0f} MB catalog) copied in {time.perf_counter() - copied:.1f} s to {private}; "
          f"files in the page cache (a warm restart)")
    query = [float(x) for x in color_query_histogram(parse_colors(["#808080"]))]
    daemon = DaemonRun("restart", [tree], private, base / "work", workers)
    grace = max(3.0, daemon.cfg.status_interval)
    starts: list[Start] = []
    stops: list[tuple[int, float]] = []
    setup: list[Start] = []
    counter = iter(range(10_000))

    def start(kind: str) -> Start:
        s = timed_start(daemon, kind, query, poll, keep / f"{next(counter):02d}-{kind.replace(' ', '_')}.log",
                        grace)
        print(f"    {kind:<17}: socket up {s.socket_s:6.2f} s, idle {s.idle_s:6.2f} s -> ready {s.ready_s:6.2f} s "
              f"(status.json {fmt(s.status_file_s)} s; reconcile {s.reconcile_s:.2f} s of {s.reconciled[0]} files, "
              f"{s.reconciled[1]} read, {s.reconciled[2]} gone; daemon CPU {s.daemon_cpu_s:.2f} s; "
              f"others {s.others} cores){'  REBUILT: ' + '; '.join(s.rebuilt) if s.rebuilt else ''}", flush=True)
        return s

    def stop() -> None:
        rc, seconds = clean_stop(daemon)
        stops.append((rc, seconds))
        if rc != 0:
            raise RuntimeError(f"{daemon.name}: a clean stop exited {rc}; see {daemon.workdir / 'stderr.log'}")

    try:
        print("  first start on the copy (not counted), then clean stop:", flush=True)
        setup.append(start("first start"))
        stop()
        print(f"  {repeat} x [start after a clean stop, kill -9 once idle, start after the kill -9, clean stop]:",
              flush=True)
        for _ in range(repeat):
            starts.append(start("clean stop"))
            time.sleep(1.0)
            kill9(daemon)
            starts.append(start("kill -9"))
            stop()

        print("  start-path profile (cProfile, main thread, one more start; overhead included):", flush=True)
        profile = profiled_start(daemon, base, query, poll)
        for label, seconds, calls in profile[:14]:
            print(f"    {seconds:7.2f} s  {label}  ({calls} calls)")

        folders = sorted(d for d in tree.iterdir() if d.is_dir())
        chosen = sorted(random.Random(8).sample(folders, max(1, round(len(folders) * 0.15))))
        deleted = sum(1 for d in chosen for _ in d.glob("*.jpg"))
        print(f"  compaction: {deleted} of {n} photos ({deleted / n:.0%}, {len(chosen)} folders) deleted while the "
              f"daemon runs (moved out of the root to {holding}; put back afterwards)", flush=True)
        setup.append(start("before deletion"))
        holding.mkdir(parents=True, exist_ok=True)
        moved_at = time.time()
        for d in chosen:
            os.rename(d, holding / d.name)
        to_line_s, compacted_s, compaction_line = wait_compacted(daemon, n - deleted, moved_at)
        print(f"    daemon log, {to_line_s:.1f} s after the deletions: {compaction_line!r}; rebuilt and "
              f"checkpointed {compacted_s:.1f} s later", flush=True)
        stop()
        shutil.copyfile(daemon.log_file, keep / "compaction-run.log")
        for _ in range(repeat):
            starts.append(start("after compaction"))
            stop()
    finally:
        if daemon.alive():
            daemon.stop()
        daemon.cleanup()
        restored = restore_held(tree, holding)
        if restored:
            print(f"  {restored} folders put back into {tree}")

    by_kind = {k: [s for s in starts if s.kind == k] for k in ("clean stop", "kill -9", "after compaction")}
    print(f"  start-to-ready (Popen until a search is answered and the status is idle), {repeat} each:")
    for kind, runs in by_kind.items():
        print(f"    {kind:<17}: ready  {spread([s.ready_s for s in runs])} s")
        print(f"    {'':<17}  socket {spread([s.socket_s for s in runs])} s")
        print(f"    {'':<17}  idle   {spread([s.idle_s for s in runs])} s")
    stop_s = [s for _, s in stops]
    print(f"  clean stops: {len(stops)}, all exit 0; SIGTERM to exit {spread(stop_s)} s")
    compaction_rebuilds = [line for s in by_kind["after compaction"] for line in s.rebuilt]
    other_rebuilds = [line for k in ("clean stop", "kill -9") for s in by_kind[k] for line in s.rebuilt]
    no_rebuild = not compaction_rebuilds
    print(f"  restart costs a load, not a rebuild: {'PASS' if no_rebuild else 'FAIL'} "
          f"({len(by_kind['after compaction'])} starts after a compaction of {deleted} deleted photos, "
          f"{len(compaction_rebuilds)} rebuild lines in their logs"
          + (f": {compaction_rebuilds[0]!r}" if compaction_rebuilds else "") + ")")
    if other_rebuilds:
        print(f"  WARNING: starts after a clean stop / kill -9 rebuilt: {other_rebuilds[:3]}")
    for kind, runs in by_kind.items():
        ready = percentile([s.ready_s for s in runs], 50)
        label = f"restart after {'compaction' if kind == 'after compaction' else kind}"
        summary.add(f"{label}: ready (median)", ready, "s", f"<= {TARGET_RESTART_S}", ready <= TARGET_RESTART_S)
        summary.add(f"{label}: socket up (median)", percentile([s.socket_s for s in runs], 50), "s")
    summary.add("restart after compaction: rebuild lines", len(compaction_rebuilds), "lines", "== 0", no_rebuild)
    summary.add("restart, clean stop / kill -9: rebuild lines", len(other_rebuilds), "lines", "== 0",
                not other_rebuilds)
    summary.details["restart"] = {
        "files": n, "faiss_mb": round(faiss_mb, 1), "catalog_mb": round(catalog_mb, 1), "repeat": repeat,
        "deleted_for_compaction": deleted, "compaction_line": compaction_line,
        "compaction_line_after_s": round(to_line_s, 2), "compaction_to_checkpoint_s": round(compacted_s, 2),
        "grace_s": grace,
        "no_rebuild": no_rebuild, "target_s": TARGET_RESTART_S,
        "starts": [{**asdict(s), "ready_s": round(s.ready_s, 3)} for s in starts],
        "setup_starts": [{**asdict(s), "ready_s": round(s.ready_s, 3)} for s in setup],
        "stops": [{"rc": rc, "seconds": round(sec, 3)} for rc, sec in stops],
        "profile": [{"function": label, "cumulative_s": round(s, 3), "calls": c} for label, s, c in profile],
        "summary": {kind: start_figures(runs) for kind, runs in by_kind.items()}}
    shutil.rmtree(private, ignore_errors=True)  # ~1 GB; the logs of every start stay in `keep`


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------
SECTIONS = ("latency", "burst", "reconcile", "idle", "restart")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out", help="cache and results (bench/out)")
    parser.add_argument("--drops", type=int, default=20, help="single-photo drops for the latency (20)")
    parser.add_argument("--cold-drops", type=int, default=2,
                        help="latency: extra drops, each once the idle daemon has stopped its workers (2)")
    parser.add_argument("--burst", type=int, default=1000, help="12 MP JPEGs dropped at once (1000)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="burst: build and daemon runs, best of; restart: starts of each kind (3)")
    parser.add_argument("--tree", type=int, default=100_000, help="files in the unchanged tree (100000)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle measurement window (60)")
    parser.add_argument("--workers", type=int, default=0, help="daemon and build workers; 0 = one per core")
    parser.add_argument("--sources", type=int, default=100, help="distinct corpus photos to cycle (100)")
    parser.add_argument("--poll", type=float, default=0.02, help="latency, restart: status polling interval, s (0.02)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if unknown := set(args.sections) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}")
    if min(args.drops, args.burst, args.tree, args.sources, args.repeat) < 1 or args.cold_drops < 0:
        parser.error("counts must be >= 1 (--cold-drops >= 0)")
    if args.workers <= 0:
        args.workers = len(os.sched_getaffinity(0))
    return args


def environment(args: argparse.Namespace) -> dict[str, Any]:
    return {"python": platform.python_version(), "machine": platform.machine(),
            "cores": len(os.sched_getaffinity(0)), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "drops": args.drops, "cold_drops": args.cold_drops, "burst": args.burst, "repeat": args.repeat,
            "tree": args.tree,
            "idle_seconds": args.idle_seconds,
            "workers": args.workers, "sections": args.sections, "strace": shutil.which("strace")}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for k in [k for k in os.environ if k.startswith("CHROMATICA_WATCH_")]:
        del os.environ[k]  # the config loader (ours and the daemon's) sees only the temp config
    out = args.out.resolve()
    runs = out / "daemon" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summary = Summary(details={"environment": environment(args)})
    print(f"bench_daemon: {json.dumps(summary.details['environment'])}")
    bb.warn_if_busy("at start", summary)

    if {"latency", "burst", "idle"} & set(args.sections):
        section(f"Corpus: {args.sources} camera-like 12 MP JPEGs (bench_build's), made distinct per file")
        sources = bb.make_corpus(out, args.sources)
        drops_dir = unique_photos(out, sources, args.drops + args.cold_drops, "drop")
        burst_dir = unique_photos(out, sources, args.burst, "burst")
        pictures = runs / "live" / "Pictures"
        shutil.rmtree(runs / "live", ignore_errors=True)
        pictures.mkdir(parents=True)
        if "latency" in args.sections:
            section(f"1. Drop-to-indexed latency, {args.drops} single 12 MP JPEGs")
            daemon = DaemonRun("live", [pictures], runs / "live" / "index", runs / "live" / "work", args.workers)
            try:
                daemon.start()
                daemon.wait_idle(120)
                cp_dir = unique_photos(out, sources, args.drops, "cp")
                bench_latency(daemon, sorted(drops_dir.iterdir()), args.cold_drops, runs / "staging", args.poll,
                              summary, cp_files=sorted(cp_dir.iterdir()))
            finally:
                daemon.cleanup()
        if "burst" in args.sections or "idle" in args.sections:
            section(f"2. Burst of {args.burst} x 12 MP JPEGs: daemon vs build, {args.workers} workers")
            burst_daemon = bench_burst(out, burst_dir, args.workers, args.repeat, 0.1, summary)
            try:
                if "idle" in args.sections:
                    indexed = burst_daemon.status_json().get("counts", {}).get("indexed", 0)
                    section(f"4b. Idle daemon over {args.idle_seconds:.0f} s: the daemon of the last burst "
                            f"({indexed} vectors), after its work")
                    bench_idle(burst_daemon, burst_daemon.index_dir, args.idle_seconds, "small, after work",
                               summary, after_work=time.time())
            finally:
                burst_daemon.cleanup()

    if "reconcile" in args.sections or "idle" in args.sections:
        section(f"3. Startup reconcile of an unchanged tree of {args.tree} files")
        tree, index = built_tree(out, args.tree, args.workers)
        if "reconcile" not in args.sections:
            print("  (reconcile not requested: only starting the daemon for the idle measurement)")
        bench_reconcile(out, tree, index, args.workers,
                        check_opens="reconcile" in args.sections,
                        idle_seconds=args.idle_seconds if "idle" in args.sections else 0.0, summary=summary)

    if "restart" in args.sections:
        section(f"5. Restart at {args.tree} files: start-to-ready after a clean stop, after kill -9, after a "
                f"compaction ({args.repeat} each)")
        tree, index = built_tree(out, args.tree, args.workers)
        bench_restart(out, tree, index, args.workers, args.repeat, args.poll, summary)

    return bb.finish(out, "bench_daemon", summary, started)

if __name__ == "__main__":
    sys.exit(main())
