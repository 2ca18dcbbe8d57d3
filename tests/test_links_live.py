"""Links made while the daemon runs are reported in `failed` exactly as a scan reports them: a link named
like a photo, a broken one, and a link to a folder (links are never followed: see ingest/scan.walk)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import wait_until
from tests.daemon_harness import DaemonEnv
from tests.test_relocate import write_photos


def failures(env: DaemonEnv) -> dict[str, str]:
    proc = env.cli("failed", "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return {os.path.basename(f["path"]): f["reason"] for f in json.loads(proc.stdout)}


def test_links_made_while_running_are_reported_as_a_scan_reports_them(daemon_env: DaemonEnv,
                                                                     tmp_path: Path) -> None:
    env, elsewhere = daemon_env, tmp_path / "elsewhere"
    write_photos(env.pictures, ["real.jpg"])
    write_photos(elsewhere / "album", ["away.jpg"], first_seed=3)
    env.start()
    wait_until(lambda: env.idle_with(1), timeout=60)
    (env.pictures / "link.jpg").symlink_to(elsewhere / "album" / "away.jpg")
    (env.pictures / "dangling.jpg").symlink_to(elsewhere / "nothing.jpg")
    (env.pictures / "linked-folder").symlink_to(elsewhere / "album")
    wait_until(lambda: len(failures(env)) == 3, timeout=30)
    live = failures(env)
    assert env.stop() == 0
    env.start()  # a scan of the same folder: the same records, the same words
    wait_until(lambda: env.idle_with(1), timeout=60)
    assert failures(env) == live
    assert "broken" in live["dangling.jpg"] and "link" in live["link.jpg"] and "link" in live["linked-folder"]
    warned = [line for line in env.log().splitlines() if "WARNING" in line and "linked-folder" in line]
    assert len(warned) == 1  # said once, not again by the scan after the restart
    assert env.stop() == 0
