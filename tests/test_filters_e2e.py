"""The filters people add to colour: date taken (and where it comes from), camera and orientation, read from
headers at indexing, through a real daemon, the CLI and the web app's API; and a catalog of the previous
version gains them by the daemon's details pass, reading headers only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import wait_until, write_rgb
from tests.daemon_harness import DaemonEnv


def exif_jpeg(path: Path, rgb: tuple[int, int, int], taken: str, make: str, model: str, orientation: int = 1,
              size: tuple[int, int] = (160, 120)) -> Path:
    exif = Image.Exif()
    exif[271], exif[272], exif[274] = make, model, orientation
    exif.get_ifd(0x8769)[36867] = taken
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, "JPEG", exif=exif, quality=90)
    return path


def found(env: DaemonEnv, *args: str) -> list[dict[str, object]]:
    proc = env.cli("search", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def names(results: list[dict[str, object]]) -> list[str]:
    return sorted(Path(str(r["path"])).name for r in results)


def test_date_camera_and_orientation_filters(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    pics = env.pictures
    exif_jpeg(pics / "2024" / "summer.jpg", (245, 130, 20), "2024:07:15 10:00:00", "Canon", "Canon EOS R5")
    exif_jpeg(pics / "2023" / "winter.jpg", (240, 244, 250), "2023:01:02 08:30:00", "Google", "Pixel 8",
              orientation=6)
    exif_jpeg(pics / "2023" / "square.jpg", (20, 80, 120), "2023:05:05 12:00:00", "NIKON CORPORATION", "NIKON Z 6",
              size=(100, 100))
    write_rgb(pics / "scan.png", np.full((60, 80, 3), (200, 30, 30), np.uint8))
    env.start()
    wait_until(lambda: env.idle_with(4), timeout=60)

    summer = found(env, "--taken-after", "2024-06", "--taken-before", "2024-09")
    assert names(summer) == ["summer.jpg"]
    assert summer[0]["taken"] == "2024-07-15T10:00:00" and summer[0]["taken_source"] == "exif"
    assert summer[0]["camera"] == "Canon EOS R5" and summer[0]["orientation"] == "landscape"
    assert names(found(env, "--taken-before", "2024")) == ["square.jpg", "winter.jpg"]
    assert names(found(env, "--camera", "pixel")) == ["winter.jpg"]
    assert names(found(env, "--camera", "nikon z")) == ["square.jpg"]
    assert names(found(env, "--orientation", "portrait")) == ["winter.jpg"]  # EXIF rotation 6: shown upright
    assert names(found(env, "--orientation", "square")) == ["square.jpg"]
    scan = found(env, "--in", str(pics), "--color", "#c81e1e")[0]
    assert Path(str(scan["path"])).name == "scan.png" and scan["taken_source"] == "mtime"
    # With a colour, and newest taken first with filters alone.
    assert names(found(env, "--color", "#f58214:0.5", "--taken-after", "2023")[:1]) == ["summer.jpg"]
    assert [Path(str(r["path"])).name for r in found(env, "--camera", "o", "-k", "3")] == \
        ["summer.jpg", "square.jpg", "winter.jpg"]
    assert env.stop() == 0
