"""`chromatica-watch compact`: the live index rebuilt without tombstones, on demand, daemon running or not."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import CLI, PHOTO_NAMES, photo, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv, assert_index_matches_disk


def manifest(index_dir: Path) -> dict[str, int]:
    return dict(json.loads((index_dir / "manifest.json").read_text()))


def test_compact_an_index_dir_without_the_daemon(tmp_path: Path, photos_dir: Path) -> None:
    out = tmp_path / "index"
    subprocess.run([CLI, "build", "--dataset", str(photos_dir), "--output", str(out), "-q"], check=True,
                   capture_output=True, timeout=300)
    (photos_dir / "coffee.jpg").unlink()
    (photos_dir / "camera.png").unlink()
    subprocess.run([CLI, "build", "--dataset", str(photos_dir), "--output", str(out), "-q"], check=True,
                   capture_output=True, timeout=300)
    before = manifest(out)
    assert before["tombstone_count"] == 2 and before["vector_count"] == 7
    done = subprocess.run([CLI, "compact", "--index-dir", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "holds 5 vectors (2 tombstoned ones dropped)" in done.stdout, done.stderr
    after = manifest(out)
    assert (after["tombstone_count"], after["vector_count"]) == (0, 5)
    assert subprocess.run([CLI, "validate", str(out)], capture_output=True, timeout=120).returncode == 0
    nowhere = subprocess.run([CLI, "compact", "--index-dir", str(tmp_path / "nothing")], capture_output=True,
                             text=True, timeout=120)
    assert nowhere.returncode == 1 and "nothing has been indexed there yet" in nowhere.stderr
    assert not (tmp_path / "nothing").exists()


def test_compact_through_the_running_daemon(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    env.write_config(tombstone_rebuild_ratio=0.9)  # no automatic compaction: only the command's
    for name in PHOTO_NAMES[:4]:
        write_rgb(env.pictures / f"{name}.jpg", photo(name))
    env.start()
    wait_until(lambda: env.idle_with(4), timeout=60)
    (env.pictures / f"{PHOTO_NAMES[0]}.jpg").unlink()
    wait_until(lambda: env.idle_with(3), timeout=60)
    done = env.cli("compact")
    assert done.returncode == 0 and "holds 3 vectors (1 tombstoned ones dropped)" in done.stdout, done.stderr
    assert env.verdict()[0] == 0
    assert env.stop() == 0
    assert manifest(env.index_dir)["tombstone_count"] == 0
    assert_index_matches_disk(env)


def test_commands_on_an_index_never_made_say_so_in_one_line_and_create_nothing(tmp_path: Path) -> None:
    index = tmp_path / "never" / "index"
    config = tmp_path / "cw.toml"
    config.write_text(f'index_dir = "{index}"\nruntime_dir = "{tmp_path / "run"}"\nstate_dir = "{tmp_path / "s"}"\n')
    for args in (["retry-failed"], ["failed"], ["compact"]):
        proc = subprocess.run([CLI, *args, "--config", str(config)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "nothing has been indexed there yet" in proc.stderr, proc.stderr
        assert "IO Error" not in proc.stderr and "Traceback" not in proc.stderr
    assert not index.exists()
