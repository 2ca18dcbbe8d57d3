"""Every command finds the same config file without --config (issue 10's discovery rule), real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from chromatica_watch.core.config import default_config_text
from tests.conftest import CLI, photo, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, env=env)


def test_init_config_then_run_status_and_install_service_all_use_the_users_file(daemon_env: DaemonEnv,
                                                                                 tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CHROMATICA_WATCH_CONFIG"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    user_file = tmp_path / "xdg" / "chromatica-watch" / "config.toml"

    made = run(["init-config"], env)
    assert made.returncode == 0 and str(user_file) in made.stdout
    assert user_file.read_text() == default_config_text()
    again = run(["init-config"], env)
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    assert run(["init-config", "--force"], env).returncode == 0

    user_file.write_text(daemon_env.config.read_text())  # the test's roots, index and state dirs
    status = json.loads(run(["status", "--json"], env).stdout)
    assert status["config_file"] == str(user_file) and status["exit_code"] == 3

    write_rgb(daemon_env.pictures / "a.jpg", photo("coffee"))
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen([CLI, "run"], stdout=log, stderr=log, env=env)  # no --config
    try:
        wait_until(lambda: daemon_env.status().get("pid") == proc.pid and daemon_env.status().get("state") == "idle"
                   and daemon_env.status()["counts"]["indexed"] == 1, timeout=60)
        answer = run(["status", "--json"], env)
        data = json.loads(answer.stdout)
        assert answer.returncode == 0 and data["live"] is True
        assert data["status"]["config_file"] == str(user_file) == data["config_file"]
        assert f"config {user_file}" in run(["status"], env).stdout
        found = run(["search", "--color", "#8b5a3c", "-k", "1"], env)  # the same index, through the daemon
        assert found.returncode == 0 and "a.jpg" in found.stdout
        unit = run(["install-service", "--dry-run"], env)
        assert unit.returncode == 0 and f"run --config {user_file}" in unit.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log.close()
