"""What `pip install .` ships: every file the package reads at run time (the README's first command is a
plain install, which an editable install used by the tests would not catch)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_every_data_file(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("chromatica_watch-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    data = ROOT / "chromatica_watch" / "data"
    wanted = {p.relative_to(ROOT).as_posix() for p in data.rglob("*") if p.is_file()}
    assert {"chromatica_watch/data/config.toml", "chromatica_watch/data/web/index.html"} <= wanted
    assert wanted - shipped == set()
