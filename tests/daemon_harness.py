"""Running the real daemon in a subprocess, and checking its index against the folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.hashing import hash_bytes
from chromatica_watch.ingest.scan import scan
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.indexdir import open_live_index
from tests.conftest import CLI, wait_until


@dataclass
class DaemonEnv:
    pictures: Path
    index_dir: Path
    state_dir: Path
    runtime_dir: Path
    config: Path
    proc: subprocess.Popen[bytes] | None = None

    def write_config(self, **extra: Any) -> None:
        values: dict[str, Any] = {
            "roots": [str(self.pictures)], "index_dir": str(self.index_dir), "state_dir": str(self.state_dir),
            "runtime_dir": str(self.runtime_dir), "settle_seconds": 0.3, "max_batch_delay": 0.1,
            "checkpoint_interval": 1.0, "status_interval": 0.2, "workers": 1, "batch_size": 32,
            "log_level": "DEBUG", "web_port": 0, "thumbnail_dir": str(self.config.parent / "thumbnails"),
        }
        values.update(extra)
        lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        self.config.write_text("\n".join(lines) + "\n")

    def start(self, wait: bool = True, prefix: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        log = open(self.config.parent / "daemon-stderr.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen([*prefix, CLI, "run", "--config", str(self.config)], stdout=log, stderr=log)
        if wait:
            wait_until(lambda: self.state() in ("idle", "indexing") or self.proc.poll() is not None, timeout=60)
            assert self.proc.poll() is None, self.stderr()
        return self.proc

    def stderr(self) -> str:
        path = self.config.parent / "daemon-stderr.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.state_dir / "status.json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def state(self) -> str | None:
        s = self.status()
        return s.get("state") if s.get("pid") == (self.proc.pid if self.proc else None) else None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args, "--config", str(self.config)], capture_output=True, text=True,
                              timeout=120)

    def verdict(self) -> tuple[int, dict[str, Any]]:
        """`chromatica-watch status --json`: (exit code, its JSON)."""
        proc = self.cli("status", "--json")
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, dict(json.loads(proc.stdout))

    def log(self) -> str:
        path = self.state_dir / "chromatica-watch.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def indexed(self) -> int:
        return int(self.status().get("counts", {}).get("indexed", -1))

    def idle_with(self, n: int) -> bool:
        s = self.status()
        if self.proc is not None and s.get("pid") != self.proc.pid:
            return False  # status.json still from the daemon before this one (killed, say)
        return (s.get("state") == "idle" and s.get("counts", {}).get("indexed") == n
                and s.get("counts", {}).get("queued") == 0)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code


@pytest.fixture
def daemon_env(tmp_path: Path) -> Iterator[DaemonEnv]:
    # Unix socket paths are limited to 108 bytes: keep the runtime dir short.
    runtime = Path(tempfile.mkdtemp(prefix="cw-", dir="/tmp"))
    env = DaemonEnv(tmp_path / "Pictures", tmp_path / "index", tmp_path / "state", runtime, tmp_path / "cw.toml")
    env.pictures.mkdir()
    env.write_config()
    yield env
    if env.proc is not None and env.proc.poll() is None:
        env.proc.kill()
        env.proc.wait(timeout=10)
    shutil.rmtree(runtime, ignore_errors=True)


def disk_state(root: Path) -> dict[bytes, str]:
    files, _ = scan(str(root))
    out = {}
    for p in files:
        try:
            out[p] = hash_bytes((root / os.fsdecode(p)).read_bytes())
        except OSError:
            pass
    return out


def assert_index_matches_disk(env: DaemonEnv, exclude: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
    """Catalog live rows == files on disk (path and hash); index ids == live ids; no duplicates."""
    fp = H.fingerprint(256)
    catalog = Catalog.open(env.index_dir, fp, read_only=True)
    try:
        live = catalog.live_files(str(env.pictures))
        on_disk = {p: h for p, h in disk_state(env.pictures).items() if p not in exclude}
        failed = {p for (_, p) in catalog.failed_files()}
        assert {p: f.content_hash for p, f in live.items()} == {p: h for p, h in on_disk.items() if p not in failed}
        index, _ = open_live_index(env.index_dir, catalog, fp)
        ids = index.ids()
        assert len(ids) == len(set(ids.tolist())), "duplicate ids in the index"
        deleted = set(catalog.deleted_ids().tolist())
        assert set(ids.tolist()) - deleted == set(catalog.live_ids().tolist())
    finally:
        catalog.close()
