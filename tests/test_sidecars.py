"""RAW+JPEG pairs: indexed as two files, shown as one result when searches group sidecars (issue 12)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from chromatica_watch.access.api import search
from chromatica_watch.core.filetypes import group_sidecars, sidecar_key
from chromatica_watch.offline.build import BuildOptions, build
from tests import format_files as F
from tests.conftest import CLI


def test_a_raw_and_the_jpeg_of_its_name_in_its_folder_group_led_by_the_better_ranked() -> None:
    ranked = [("/p", b"a/IMG_1.JPG"), ("/p", b"b/IMG_1.cr3"), ("/p", b"a/img_1.CR3"), ("/p", b"notes.png"),
              ("/q", b"a/IMG_1.CR3"), ("/p", b"a/IMG_1.heic")]
    assert group_sidecars(ranked) == [[0, 2, 5], [1], [3], [4]]


def test_two_jpegs_of_one_name_are_not_a_pair_and_other_kinds_never_group() -> None:
    assert group_sidecars([("/p", b"x/IMG_1.jpg"), ("/p", b"x/IMG_1.jpeg")]) == [[0], [1]]
    assert group_sidecars([("/p", b"x/IMG_1.png"), ("/p", b"x/IMG_1.dng")]) == [[0], [1]]
    assert sidecar_key("/p", b"x/IMG_1.png") is None
    assert sidecar_key("/p", b"x/IMG_1.NEF") == sidecar_key("/p", b"x/img_1.jpg") == ("/p", b"x", b"img_1")


def _pairs(folder: Path) -> None:
    """Two RAW+JPEG pairs shot in teal and in orange, and a lone teal-ish PNG."""
    teal = np.zeros((240, 320, 3), np.uint8) + np.array([0, 128, 128], np.uint8)
    orange = np.zeros((240, 320, 3), np.uint8) + np.array([240, 140, 20], np.uint8)
    folder.mkdir()
    (folder / "IMG_0001.DNG").write_bytes(F.dng(teal))
    (folder / "IMG_0001.JPG").write_bytes(F.jpeg(teal))
    (folder / "IMG_0002.DNG").write_bytes(F.dng(orange))
    (folder / "IMG_0002.JPG").write_bytes(F.jpeg(orange))
    (folder / "teal.png").write_bytes(F.png((teal.astype(int) + 6).astype(np.uint8)))


def test_grouped_search_shows_a_pair_once_and_still_gives_k_results(tmp_path: Path) -> None:
    _pairs(tmp_path / "photos")
    report = build(BuildOptions(dataset=tmp_path / "photos", output=tmp_path / "index", workers=1))
    assert report.failures == [] and report.indexed == 5

    plain = search("#008080", k=3, index_dir=tmp_path / "index")
    grouped = search("#008080", k=3, index_dir=tmp_path / "index", group_sidecars=True)

    assert sorted(m.relative_path for m in plain[:2]) == ["IMG_0001.DNG", "IMG_0001.JPG"]
    assert all(m.sidecars == () for m in plain)
    names = [m.relative_path for m in grouped]
    assert len(grouped) == 3 and names[0] in ("IMG_0001.DNG", "IMG_0001.JPG")
    pair = {names[0], Path(grouped[0].sidecars[0]).name}
    assert pair == {"IMG_0001.DNG", "IMG_0001.JPG"} and len(grouped[0].sidecars) == 1
    assert names[1] == "teal.png" and names[2] in ("IMG_0002.DNG", "IMG_0002.JPG")
    assert len(grouped[2].sidecars) == 1  # the orange pair, pulled in from past the first k


def test_cli_group_sidecars_prints_the_pair_on_one_line(tmp_path: Path) -> None:
    _pairs(tmp_path / "photos")
    build(BuildOptions(dataset=tmp_path / "photos", output=tmp_path / "index", workers=1))
    cmd = [CLI, "search", "--color", "orange", "-k", "1", "--index-dir", str(tmp_path / "index"), "--group-sidecars"]

    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    as_json = json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True).stdout)

    lines = out.strip().splitlines()
    assert len(lines) == 2 and "IMG_0002." in lines[1] and "(+ IMG_0002." in lines[1]
    assert len(as_json) == 1 and len(as_json[0]["sidecars"]) == 1
    assert {Path(as_json[0]["path"]).name, Path(as_json[0]["sidecars"][0]).name} == {"IMG_0002.DNG", "IMG_0002.JPG"}
