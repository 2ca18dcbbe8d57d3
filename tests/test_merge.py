"""`merge`: index dirs built apart (halves of a folder, two folders, two machines) combined into one, with
real photos, real DuckDB files and real FAISS checkpoints; no image is decoded by the merge."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chromatica_watch.access.api import search
from chromatica_watch.colour import histogram as H
from chromatica_watch.core.config import Config
from chromatica_watch.core.errors import CatalogDamaged
from chromatica_watch.core.records import Changes
from chromatica_watch.offline.build import BuildOptions, build
from chromatica_watch.offline.merge import merge
from chromatica_watch.offline.validate import validate
from chromatica_watch.storage.catalog import CATALOG_FILE, Catalog
from tests.conftest import CLI, PHOTO_NAMES, photo, solid, wait_until, write_rgb
from tests.test_catalog_damage import BLOCK, FILE_HEADER, new_images, overwrite, storage_facts

Row = tuple[str, bytes, bytes]  # root, path, histogram bytes
FP = H.fingerprint(256)


def build_index(dataset: Path, output: Path, *excludes: str, max_dimension: int = 256) -> Path:
    build(BuildOptions(dataset=dataset, output=output, workers=1, max_dimension=max_dimension, excludes=excludes))
    return output


def run_merge(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "merge", *map(str, args)], capture_output=True, text=True, timeout=300)


def open_catalog(index_dir: Path) -> Catalog:
    return Catalog.open(index_dir, None, read_only=True)


def live_rows(index_dir: Path) -> dict[Row, int]:
    """(root, path, histogram) -> id of every live row."""
    with open_catalog(index_dir) as cat:
        ids = {lf.image_id: (root, path) for root in cat.roots() for path, lf in cat.live_files(root).items()}
        hists = cat.histograms(ids)
    return {(*ids[i], hists[i].tobytes()): i for i in ids}


def manifest(index_dir: Path) -> dict[str, int]:
    return dict(json.loads((index_dir / "manifest.json").read_text()))


def assert_valid(index_dir: Path) -> None:
    failed = [c for c in validate(index_dir) if not c.ok]
    assert not failed, failed


def leftovers(out: Path) -> list[Path]:
    return list(out.parent.glob(f"{out.name}.merging-*"))


def test_two_halves_merged_are_one_build_of_the_whole(tmp_path: Path, photos_dir: Path) -> None:
    top_level = [p.name for p in photos_dir.iterdir() if p.is_file()]
    half_a = build_index(photos_dir, tmp_path / "a", "trip/*")  # 3 photos at the top and camera.png
    half_b = build_index(photos_dir, tmp_path / "b", *top_level)  # the 3 in trip/
    whole = build_index(photos_dir, tmp_path / "whole")
    shutil.copy(photos_dir / "coffee.jpg", tmp_path / "query.jpg")
    photos_dir.rename(tmp_path / "photos-elsewhere")  # nothing to decode: the merge must not need the photos

    proc = run_merge(half_b, half_a, "--output", tmp_path / "merged", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    merged = tmp_path / "merged"
    assert (report["rows"], report["live"], report["duplicates"]) == ([3, 4], 7, 0)
    assert report["base"] == str(half_a.resolve()) and report["checkpoint_reused"] and report["vectors_appended"] == 3

    got = live_rows(merged)
    assert set(got) == set(live_rows(whole))  # the same files with the same histograms
    a_rows, b_rows = live_rows(half_a), live_rows(half_b)
    assert all(got[row] == i for row, i in a_rows.items())  # the base keeps its ids...
    assert sorted(got[row] for row in b_rows) == [5, 6, 7]  # ...the other input's follow them
    assert manifest(merged)["vector_count"] == 7 and manifest(merged)["watermark"] == 7
    assert_valid(merged)
    matches = search(image=tmp_path / "query.jpg", k=3, config=Config(), index_dir=merged)
    assert matches[0].path == str(photos_dir.resolve() / "coffee.jpg") and matches[0].score < 1.0
    assert not leftovers(merged)


def test_a_file_in_several_inputs_is_kept_once_the_newest_and_failures_fixed_elsewhere_are_dropped(
        tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_rgb(folder / "same.png", solid((250, 0, 0)))  # red on the first machine...
    os.utime(folder / "same.png", ns=(10**18, 10**18))
    write_rgb(folder / "a1.png", solid((0, 200, 0)))
    write_rgb(folder / "a2.png", solid((240, 240, 0)))
    write_rgb(folder / "a3.png", solid((0, 240, 240)))
    (folder / "broken.png").write_bytes(b"not yet a photo")
    (folder / "b1.png").write_bytes(b"junk")
    a = build_index(folder, tmp_path / "a", "b1.png")
    write_rgb(folder / "same.png", solid((0, 0, 250)))  # ...blue, and newer, on the second
    write_rgb(folder / "broken.png", solid((128, 128, 128)))  # repaired on the second machine
    write_rgb(folder / "gone.png", solid((20, 20, 20)))
    b = build_index(folder, tmp_path / "b", "a?.png")
    (folder / "gone.png").unlink()
    b = build_index(folder, tmp_path / "b", "a?.png")  # a tombstone in b, which the merge does not carry
    with open_catalog(a) as cat:
        assert len(cat.failed_files()) == 1 and cat.counts()["live"] == 4
    out = tmp_path / "merged"

    proc = run_merge(b, a, "--output", out)  # a is larger: the base, though second

    assert proc.returncode == 0, proc.stderr
    summary = f"merged 2 index dirs (3 + 4 rows) into {out.resolve()}: 5 live, 1 duplicates dropped, 1 failed"
    assert summary in proc.stdout, proc.stdout
    rows = live_rows(out)
    same = [row for row in rows if row[1] == b"same.png"]
    blue = next(row for row in live_rows(b) if row[1] == b"same.png")
    assert same == [blue]
    with open_catalog(out) as cat:
        assert [k[1] for k in cat.failed_files()] == [b"b1.png"]  # broken.png has a live row now
        red_id = next(i for row, i in live_rows(a).items() if row[1] == b"same.png")
        assert cat.deleted_ids().tolist() == [red_id]  # the base's row, tombstoned under its own id
    assert manifest(out)["tombstone_count"] == 1
    assert_valid(out)
    found = search("#fa0000", k=10, config=Config(), index_dir=out)
    assert sorted(m.relative_path for m in found) == ["a1.png", "a2.png", "a3.png", "broken.png", "same.png"]


def test_a_tie_in_mtime_goes_to_the_later_input(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_rgb(folder / "same.png", solid((250, 0, 0)))
    os.utime(folder / "same.png", ns=(10**18, 10**18))
    a = build_index(folder, tmp_path / "a")
    write_rgb(folder / "same.png", solid((0, 0, 250)))
    os.utime(folder / "same.png", ns=(10**18, 10**18))  # the same mtime, other content
    b = build_index(folder, tmp_path / "b")
    for first, second in ((a, b), (b, a)):
        out = tmp_path / f"{first.name}-then-{second.name}"
        assert run_merge(first, second, "--output", out).returncode == 0
        assert set(live_rows(out)) == set(live_rows(second))


def test_roots_are_kept_apart(tmp_path: Path) -> None:
    home, office = tmp_path / "home", tmp_path / "office"
    for folder, color in ((home, (250, 0, 0)), (office, (0, 0, 250))):
        write_rgb(folder / "a.png", solid(color))  # the same relative paths in both
        write_rgb(folder / "b.png", solid((0, 200, 0)))
    a, b = build_index(home, tmp_path / "a"), build_index(office, tmp_path / "b")
    report = merge([a, b], tmp_path / "merged")
    assert (report.live, report.duplicates, report.vectors) == (4, 0, 4)
    with open_catalog(tmp_path / "merged") as cat:
        assert cat.roots() == [str(home.resolve()), str(office.resolve())]
        assert all(set(cat.live_files(str(root))) == {b"a.png", b"b.png"} for root in (home, office))
    assert_valid(tmp_path / "merged")
    found = search("#0000fa", k=1, config=Config(), index_dir=tmp_path / "merged")
    assert found[0].path == str(office.resolve() / "a.png")

    with Catalog.open(b, FP) as cat:  # the office folder left that index's config: retired there...
        cat.sync_roots([str(home.resolve())], now=1.0)
    merge([a, b], tmp_path / "merged-again")
    with open_catalog(tmp_path / "merged-again") as cat:  # ...and so in the merge: kept, not searched
        assert cat.root_records()[str(office.resolve())].retired_at == 1.0
    found = search("#0000fa", k=4, config=Config(), index_dir=tmp_path / "merged-again")
    assert {m.root for m in found} == {str(home.resolve())}


def test_refusals_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    for i, name in enumerate(PHOTO_NAMES[:3]):
        write_rgb(folder / f"{i}.jpg", photo(name))
    a = build_index(folder, tmp_path / "a", "2.jpg")
    b = build_index(folder, tmp_path / "b", "0.jpg", "1.jpg")
    small = build_index(folder, tmp_path / "small", max_dimension=128)
    (tmp_path / "a-again").symlink_to(a)
    garbage = tmp_path / "garbage"
    shutil.copytree(b, garbage)
    (garbage / CATALOG_FILE).write_bytes(np.random.default_rng(0).bytes(300_000))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    out = tmp_path / "out"
    a, small, garbage = a.resolve(), small.resolve(), garbage.resolve()
    cases = [
        ((a, small), 1, f"cannot merge {a} (histogram settings {manifest(a)['fingerprint']}) with {small} "
                        f"(histogram settings {manifest(small)['fingerprint']})"),
        ((a, tmp_path / "a-again"), 2, f"the index dir {a} is given twice"),
        ((a,), 2, "merge needs at least two index dirs, got 1"),
        ((a, folder), 1, f"{folder} is not an index dir (no {CATALOG_FILE} in it)"),
        ((a, garbage), 1, f"the catalog {garbage / CATALOG_FILE} is damaged (not a DuckDB database file)"),
    ]
    for inputs, code, message in cases:
        proc = run_merge(*inputs, "--output", out)
        assert (proc.returncode, proc.stdout) == (code, ""), (inputs, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert not out.exists() and not leftovers(out)
    proc = run_merge(a, b, "--output", full)
    assert proc.returncode == 1 and "the output" in proc.stderr and "is not empty" in proc.stderr
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    proc = run_merge(a, b, "--output", b)
    assert proc.returncode == 2 and "is one of the inputs" in proc.stderr
    (tmp_path / "empty").mkdir()  # an empty output folder is fine: it is replaced
    assert run_merge(a, b, "--output", tmp_path / "empty").returncode == 0
    assert_valid(tmp_path / "empty")


def test_an_input_held_by_another_process_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_rgb(folder / "a.png", solid((250, 0, 0)))
    write_rgb(folder / "b.png", solid((0, 0, 250)))
    a, b = build_index(folder, tmp_path / "a", "b.png"), build_index(folder, tmp_path / "b", "a.png")
    holder = subprocess.Popen(  # a writer, as the daemon is: DuckDB lets no other process read then
        [sys.executable, "-c", "import sys; from chromatica_watch.storage.catalog import Catalog; "
         "c = Catalog.open(sys.argv[1], sys.argv[2]); print('open', flush=True); sys.stdin.read(); c.close()",
         str(b), str(manifest(b)["fingerprint"])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        proc = run_merge(a, b, "--output", tmp_path / "merged")
    finally:
        holder.communicate("", timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"catalog {b.resolve() / CATALOG_FILE} is in use by another process" in proc.stderr
    assert not (tmp_path / "merged").exists()
    assert run_merge(a, b, "--output", tmp_path / "merged").returncode == 0  # once it is let go


def test_damage_found_while_merging_names_the_input_and_leaves_no_output(tmp_path: Path) -> None:
    """Histogram blocks are first read by the merge itself (opening and counting rows does not)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for index_dir, prefix in ((a, "a"), (b, "b")):
        index_dir.mkdir()
        with Catalog.open(index_dir, "fp") as cat:
            cat.apply(Changes(added=new_images(1500, prefix)))
    hist_blocks, _, _ = storage_facts(b / CATALOG_FILE)
    overwrite(b / CATALOG_FILE, FILE_HEADER + hist_blocks[len(hist_blocks) // 2] * BLOCK + BLOCK // 2)
    with pytest.raises(CatalogDamaged) as damaged:
        merge([a, b], tmp_path / "merged")
    assert damaged.value.path == b.resolve() / CATALOG_FILE and "checksum mismatch" in damaged.value.reason
    assert not (tmp_path / "merged").exists() and not leftovers(tmp_path / "merged")


def test_kill_9_midway_leaves_no_output_and_the_next_merge_cleans_up(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for index_dir, prefix in ((a, "a"), (b, "b")):
        index_dir.mkdir()
        with Catalog.open(index_dir, "fp") as cat:
            cat.apply(Changes(added=new_images(1500, prefix)))  # no checkpoint: the merge builds the index
    out = tmp_path / "merged"
    proc = subprocess.Popen([CLI, "merge", str(a), str(b), "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    temp = out.with_name(f"merged.merging-{proc.pid}")
    wait_until(lambda: (temp / CATALOG_FILE).exists() or proc.poll() is not None, timeout=120, interval=0.001)
    assert proc.poll() is None, "the merge ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists() and leftovers(out) == [temp]
    done = run_merge(a, b, "--output", out)
    assert done.returncode == 0, done.stderr
    assert not leftovers(out) and "3000 live" in done.stdout
    assert_valid(out)
