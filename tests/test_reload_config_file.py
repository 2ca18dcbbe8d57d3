"""SIGHUP and the config file found by the rule (no --config): a user's config file created after the start is
read at the next reload and `status` names it; removed, and SIGHUP again, `status` says built-in defaults.
A real daemon process, real signals, the real `status` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.conftest import CLI, wait_until
from tests.daemon_harness import DaemonEnv

DEFAULTS = "config built-in defaults (no config file)"


def test_status_names_a_config_file_created_after_the_start_once_sighup_reads_it(daemon_env: DaemonEnv,
                                                                                 tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMATICA_WATCH_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    user_file = tmp_path / "xdg" / "chromatica-watch" / "config.toml"
    settings = {"roots": str(daemon_env.pictures), "index_dir": str(daemon_env.index_dir),
                "state_dir": str(daemon_env.state_dir), "runtime_dir": str(daemon_env.runtime_dir),
                "web_port": "0", "thumbnail_dir": str(tmp_path / "thumbnails"), "status_interval": "0.2",
                "settle_seconds": "0.3", "workers": "1", "log_level": "DEBUG"}
    env.update({f"CHROMATICA_WATCH_{k.upper()}": v for k, v in settings.items()})

    def status() -> tuple[str, dict[str, object]]:
        text = subprocess.run([CLI, "status"], capture_output=True, text=True, timeout=60, env=env)
        as_json = subprocess.run([CLI, "status", "--json"], capture_output=True, text=True, timeout=60, env=env)
        assert "Traceback" not in text.stderr + as_json.stderr, text.stderr + as_json.stderr
        return text.stdout, dict(json.loads(as_json.stdout)["status"])

    log = open(tmp_path / "daemon.log", "ab")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen([CLI, "run"], stdout=log, stderr=log, env=env)  # no --config: the rule finds none
    daemon_env.proc = proc
    wait_until(lambda: daemon_env.state() == "idle" or proc.poll() is not None, timeout=60)
    assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
    text, _ = status()
    assert DEFAULTS in text, text

    user_file.parent.mkdir(parents=True)
    user_file.write_text("batch_size = 16\n")
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: f"config {user_file}\n" in status()[0], timeout=30)
    text, live = status()
    assert live["config_file"] == str(user_file) and DEFAULTS not in text and "this command found" not in text

    user_file.unlink()
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: DEFAULTS in status()[0], timeout=30)
    text, live = status()
    assert live["config_file"] is None and "this command found" not in text, text
    assert "config reload refused" not in daemon_env.log()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    daemon_env.proc = None
