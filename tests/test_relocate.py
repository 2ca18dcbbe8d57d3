"""Seed 002 end to end: an index built under one folder name, the folder renamed and grown by 7%,
brought up to date by relocate (or build --match-by name) plus the delta: equal to a fresh build of the
whole folder, with no image of the 93% read again. And the bad inputs around it, through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from chromatica_watch.colour import histogram as H
from chromatica_watch.offline.validate import validate
from chromatica_watch.storage.catalog import CATALOG_FILE, Catalog
from tests.conftest import CLI, write_rgb

FP = H.fingerprint(256)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def blocks(seed: int) -> np.ndarray:
    """A small image of random colour blocks: every seed gives other colours."""
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))


def write_photos(folder: Path, names: list[str], first_seed: int = 0) -> None:
    """Photos written an hour ago (out of the racy window in which a same stat does not prove the same file)."""
    for i, name in enumerate(names):
        path = write_rgb(folder / name, blocks(first_seed + i), IMWRITE_JPEG_QUALITY=92)
        hour_ago = path.stat().st_mtime_ns - 3600 * 10**9 + i * 1000
        os.utime(path, ns=(hour_ago, hour_ago))


def rows_by_path(index_dir: Path) -> dict[bytes, np.ndarray]:
    """(root-relative path -> histogram) of every live row, whatever its root."""
    with Catalog.open(index_dir, FP, read_only=True) as cat:
        out = {}
        for root in cat.roots():
            for path, row in cat.live_files(root).items():
                out[path] = cat.rows([row.image_id])[row.image_id].histogram
        return out


def live_roots(index_dir: Path) -> dict[str, int]:
    with Catalog.open(index_dir, FP, read_only=True) as cat:
        return {r: rec.live for r, rec in cat.root_records().items() if rec.live}


def scramble_keeping_stat(paths: list[Path]) -> None:
    """Overwrite each file with bytes that decode to nothing, keeping its size and mtime: any later read
    of it would be a failure, so a build that reports none read none of them."""
    for p in paths:
        st = p.stat()
        p.write_bytes(b"\0" * st.st_size)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def seed_scenario(tmp_path: Path) -> dict[str, Path]:
    """pictures/ (30 photos; the reference index is a fresh build of it) and an index of the first 28
    built while the folder was called o00_images/; then the 28 are scrambled (same size and mtime)."""
    pictures, old = tmp_path / "pictures", tmp_path / "o00_images"
    names = [f"{'trip/' if i % 3 == 0 else ''}img_{i:03d}.jpg" for i in range(30)]
    write_photos(pictures, names)
    assert cli("build", "--dataset", str(pictures), "--output", str(tmp_path / "reference"), "-q").returncode == 0
    stash = tmp_path / "stash"
    delta = names[28:]
    for n in delta:  # the 7% the old index never saw
        (stash / n).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(pictures / n, stash / n)
    pictures.rename(old)
    assert cli("build", "--dataset", str(old), "--output", str(tmp_path / "index"), "-q").returncode == 0
    scramble_keeping_stat([old / n for n in names[:28]])
    old.rename(pictures)  # the seed: ../o00_images/ became pictures/
    for n in delta:
        shutil.move(stash / n, pictures / n)
    return {"pictures": pictures, "old": old, "index": tmp_path / "index", "reference": tmp_path / "reference"}


def assert_equals_reference(index_dir: Path, reference: Path, pictures: Path) -> None:
    got, want = rows_by_path(index_dir), rows_by_path(reference)
    assert sorted(got) == sorted(want)
    for path, hist in want.items():
        np.testing.assert_allclose(got[path], hist, atol=1e-7, err_msg=path.decode())
    assert live_roots(index_dir) == {str(pictures): len(want)}  # nothing left under the old name
    checks = validate(index_dir)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_seed_relocate_then_build_the_delta(seed_scenario: dict[str, Path]) -> None:
    s = seed_scenario
    before = cli("diff", "--index", str(s["index"]), "--dataset", str(s["pictures"]), "--json")
    plan = json.loads(before.stdout)
    assert plan["counts"]["new"] == 30 and plan["other_folders"] == {str(s["old"]): 28}  # path: nothing matches

    dry = cli("relocate", str(s["old"]), str(s["pictures"]), "--index-dir", str(s["index"]), "--dry-run")
    assert dry.returncode == 0 and "28 of 28 sampled" in dry.stdout
    assert live_roots(s["index"]) == {str(s["old"]): 28}  # a dry run changes nothing

    moved = cli("relocate", str(s["old"]), str(s["pictures"]), "--index-dir", str(s["index"]))
    assert moved.returncode == 0 and "relocated 28 photos" in moved.stdout, moved.stdout + moved.stderr

    after = json.loads(cli("diff", "--index", str(s["index"]), "--dataset", str(s["pictures"]), "--json").stdout)
    assert after["counts"] | {"files": 0} == {"files": 0, "unchanged": 28, "new": 2, "changed": 0, "moved": 0,
                                              "missing": 0, "ambiguous": 0, "failed_unchanged": 0, "to_read": 2}
    report = build_report(s["pictures"], s["index"])
    assert (report["indexed"], report["unchanged"], report["failed"]) == (2, 28, 0)  # the 28 scrambled: unread
    assert_equals_reference(s["index"], s["reference"], s["pictures"])


def test_seed_build_match_by_name_takes_the_old_index_over(seed_scenario: dict[str, Path]) -> None:
    s = seed_scenario
    pictures = s["pictures"]
    # The layout changed too: the trip/ photos were flattened, one moved into a new folder.
    for p in sorted((pictures / "trip").iterdir()):
        p.rename(pictures / p.name)
    (pictures / "trip").rmdir()
    (pictures / "best").mkdir()
    (pictures / "img_001.jpg").rename(pictures / "best" / "img_001.jpg")
    planned = json.loads(cli("diff", "--index", str(s["index"]), "--dataset", str(pictures), "--match-by", "name",
                             "--json").stdout)
    assert planned["adopted"] == str(s["old"])
    assert planned["counts"]["new"] == 2 and planned["counts"]["missing"] == 0 and planned["counts"]["to_read"] == 2
    assert planned["counts"]["moved"] + planned["counts"]["unchanged"] == 28
    assert {"from": "trip/img_003.jpg", "to": "img_003.jpg"} in planned["moved"]

    report = build_report(pictures, s["index"], "--match-by", "name")
    assert (report["indexed"], report["failed"], report["adopted"]) == (2, 0, str(s["old"]))
    assert report["moved"] == planned["counts"]["moved"]  # the plan printed is the plan executed
    assert live_roots(s["index"]) == {str(pictures): 30}
    got = rows_by_path(s["index"])
    assert b"best/img_001.jpg" in got and b"img_003.jpg" in got and not any(p.startswith(b"trip/") for p in got)
    by_name = {os.path.basename(p): h for p, h in rows_by_path(s["reference"]).items()}
    assert sorted(os.path.basename(p) for p in got) == sorted(by_name)
    for path, hist in got.items():  # the histograms of the photos before they were scrambled
        np.testing.assert_allclose(hist, by_name[os.path.basename(path)], atol=1e-7)
    assert all(c.ok for c in validate(s["index"]))


def build_report(dataset: Path, index: Path, *extra: str) -> dict[str, object]:
    proc = cli("build", "--dataset", str(dataset), "--output", str(index), "-q", *extra)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads((index / "indexing_report.json").read_text()))


def test_match_by_name_never_pairs_a_name_two_files_hold(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    write_photos(old, ["a/same.jpg", "b/other.jpg"], first_seed=100)
    assert cli("build", "--dataset", str(old), "--output", str(tmp_path / "index"), "-q").returncode == 0
    new.mkdir()
    shutil.copy2(old / "a" / "same.jpg", new / "same.jpg")  # same name, size, mtime as the row...
    write_photos(new, ["x/same.jpg"], first_seed=200)  # ...and another photo with that name
    shutil.copy2(old / "b" / "other.jpg", new / "other.jpg")
    shutil.rmtree(old)
    plan = json.loads(cli("diff", "--index", str(tmp_path / "index"), "--dataset", str(new), "--match-by", "name",
                          "--json").stdout)
    assert plan["ambiguous"] == ["same.jpg"]
    assert plan["moved"] == [{"from": "b/other.jpg", "to": "other.jpg"}]
    assert sorted(plan["new"]) == ["same.jpg", "x/same.jpg"] and plan["missing"] == ["a/same.jpg"]
    human = cli("diff", "--index", str(tmp_path / "index"), "--dataset", str(new), "--match-by", "name")
    assert "1 ambiguous names" in human.stdout and "ambiguous same.jpg" in human.stdout
    report = build_report(new, tmp_path / "index", "--match-by", "name")
    # The two same.jpg were read; the one whose bytes are the old row's took its row over by hash.
    assert (report["indexed"], report["moved"], report["tombstoned"]) == (1, 2, 0)
    assert set(rows_by_path(tmp_path / "index")) == {b"same.jpg", b"x/same.jpg", b"other.jpg"}


# -- bad input ------------------------------------------------------------------------------------------
def test_relocate_onto_a_folder_holding_none_of_the_files_is_refused_unless_forced(tmp_path: Path) -> None:
    write_photos(tmp_path / "photos", [f"p{i}.jpg" for i in range(4)])
    index = tmp_path / "index"
    assert cli("build", "--dataset", str(tmp_path / "photos"), "--output", str(index), "-q").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    write_photos(elsewhere, ["p0.jpg"], first_seed=50)  # same name, other photo: different
    refused = cli("relocate", str(tmp_path / "photos"), str(elsewhere), "--index-dir", str(index))
    assert refused.returncode == 2 and "refusing to relocate: 0 of 4 sampled" in refused.stderr
    assert "--force" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert live_roots(index) == {str(tmp_path / "photos"): 4}
    forced = cli("relocate", str(tmp_path / "photos"), str(elsewhere), "--index-dir", str(index), "--force")
    assert forced.returncode == 0 and "different" in forced.stdout and "missing" in forced.stdout
    assert live_roots(index) == {str(elsewhere): 4}


@pytest.mark.parametrize("args, message", [
    (["relocate", "/nowhere/old", "/tmp"], "holds no photos under /nowhere/old"),
    (["relocate", "PHOTOS", "/nonexistent/new"], "/nonexistent/new is not a folder"),
    (["relocate", "PHOTOS", "PHOTOS"], "is already where its photos are"),
    (["diff", "--index", "INDEX", "--dataset", "/nonexistent/photos"], "does not exist or is not a folder"),
    (["diff", "--index", "/nonexistent/index", "--dataset", "PHOTOS"], "no catalog at /nonexistent/index"),
])
def test_bad_arguments_get_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    photos, index = tmp_path / "photos", tmp_path / "index"
    write_photos(photos, ["a.jpg"])
    assert cli("build", "--dataset", str(photos), "--output", str(index), "-q").returncode == 0
    args = [a.replace("PHOTOS", str(photos)).replace("INDEX", str(index)) for a in args]
    if args[0] == "relocate":
        args += ["--index-dir", str(index)]
    proc = cli(*args)
    assert proc.returncode in (1, 2) and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_catalog_that_is_not_duckdb_or_is_truncated_gets_one_line_naming_it(tmp_path: Path, damage: str) -> None:
    photos, index = tmp_path / "photos", tmp_path / "index"
    write_photos(photos, [f"p{i}.jpg" for i in range(3)])
    assert cli("build", "--dataset", str(photos), "--output", str(index), "-q").returncode == 0
    catalog = index / CATALOG_FILE
    data = catalog.read_bytes()
    catalog.write_bytes(b"this is not a database" * 100 if damage == "garbage" else data[:len(data) // 3])
    for args in (["diff", "--index", str(index), "--dataset", str(photos)],
                 ["relocate", str(photos), str(tmp_path), "--index-dir", str(index)],
                 ["roots", "--config", str(write_config(tmp_path, index, photos))]):
        proc = cli(*args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert str(catalog) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def write_config(tmp_path: Path, index: Path, photos: Path) -> Path:
    path = tmp_path / "cw.toml"
    path.write_text(f'roots = ["{photos}"]\nindex_dir = "{index}"\nstate_dir = "{tmp_path / "state"}"\n'
                    f'runtime_dir = "{tmp_path / "run"}"\n')
    return path


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_an_index_dir_whose_manifest_is_missing_or_corrupt_is_rebuilt_not_a_traceback(tmp_path: Path,
                                                                                      damage: str) -> None:
    photos, index = tmp_path / "photos", tmp_path / "index"
    write_photos(photos, [f"p{i}.jpg" for i in range(3)])
    assert cli("build", "--dataset", str(photos), "--output", str(index), "-q").returncode == 0
    manifest = index / "manifest.json"
    if damage == "missing":
        manifest.unlink()
    else:
        manifest.write_text("{not json")
    found = cli("search", "--index-dir", str(index), "--color", "#808080", "-k", "3", "--json")
    assert found.returncode == 0 and len(json.loads(found.stdout)) == 3
    rebuilt = cli("build", "--dataset", str(photos), "--output", str(index), "-q")  # repairs the checkpoint
    assert rebuilt.returncode == 0
    assert all(c.ok for c in validate(index))
    assert cli("diff", "--index", str(index), "--dataset", str(photos)).returncode == 0


def test_relocate_with_a_roots_listing_before_and_after(tmp_path: Path) -> None:
    photos, index = tmp_path / "photos", tmp_path / "index"
    write_photos(photos, [f"p{i}.jpg" for i in range(3)])
    assert cli("build", "--dataset", str(photos), "--output", str(index), "-q").returncode == 0
    moved = tmp_path / "moved"
    photos.rename(moved)
    config = write_config(tmp_path, index, moved)
    listed = json.loads(cli("roots", "--json", "--config", str(config)).stdout)
    assert [(r["path"], r["state"], r["photos"]) for r in listed] == [(str(moved), "watched", 0),
                                                                     (str(photos), "retired", 3)]
    assert cli("relocate", str(photos), str(moved), "--config", str(config)).returncode == 0
    listed = json.loads(cli("roots", "--json", "--config", str(config)).stdout)
    assert [(r["path"], r["state"], r["photos"]) for r in listed] == [(str(moved), "watched", 3)]
