"""`build --shards N`: N writers over disjoint parts, merged: the same photos, histograms and failures as
one build; a new output only; a shard left by an interrupted run is resumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from chromatica_watch.core.errors import UsageError
from chromatica_watch.offline.build import BuildOptions, build, in_part
from chromatica_watch.offline.shards import build_sharded, shard_dirs
from tests.test_dask import catalog_rows, index_ids, run_cli, small_dataset


def _by_content(index_dir: Path) -> tuple[set[tuple[bytes, str, bytes]], dict[bytes, str]]:
    rows, failed = catalog_rows(index_dir)
    return set(rows), failed


def test_parts_split_every_path_once_and_the_same_way_each_time() -> None:
    paths = [f"dir{i % 7}/IMG_{i:04d}.jpg".encode() for i in range(500)]
    owners = [[k for k in range(3) if in_part(p, (k, 3))] for p in paths]
    assert all(len(o) == 1 for o in owners)
    assert {o[0] for o in owners} == {0, 1, 2}  # no part is left empty by the hash
    assert owners == [[k for k in range(3) if in_part(p, (k, 3))] for p in paths]


def test_a_sharded_build_holds_what_one_build_holds(tmp_path: Path) -> None:
    dataset = small_dataset(tmp_path / "photos")
    one = run_cli("build", "--dataset", dataset, "--output", tmp_path / "one", "--workers", "2", "-q")
    sharded = run_cli("build", "--dataset", dataset, "--output", tmp_path / "sharded", "--workers", "2",
                      "--shards", "2", "-q")

    assert one.returncode == 0 and sharded.returncode == 0, (one.stderr, sharded.stderr)
    photos = len(catalog_rows(tmp_path / "one")[0])
    assert photos >= 10 and f"indexed {photos} new images" in sharded.stdout
    assert "1 files could not be indexed" in sharded.stdout
    assert _by_content(tmp_path / "sharded") == _by_content(tmp_path / "one")  # paths, hashes, histograms, failures
    rows, _ = catalog_rows(tmp_path / "sharded")
    assert index_ids(tmp_path / "sharded") == sorted(rows.values())  # every row in the index, once
    assert not any(p.exists() for p in shard_dirs(tmp_path / "sharded", 2))  # the shards are gone
    assert (tmp_path / "sharded" / "failed_images_report.txt").read_text().count("notes.jpg") == 1


def test_a_shard_left_by_an_interrupted_run_is_resumed_and_the_output_must_be_new(tmp_path: Path) -> None:
    dataset = small_dataset(tmp_path / "photos")
    output = tmp_path / "out"
    first = shard_dirs(output, 2)[0]
    done_before = build(BuildOptions(dataset=dataset, output=first, workers=1, part=(0, 2)))

    report = build_sharded(BuildOptions(dataset=dataset, output=output, workers=2), 2)

    photos = done_before.indexed + report.indexed
    assert done_before.indexed > 0 and report.indexed > 0
    assert report.total_live == photos == len(catalog_rows(output)[0])  # part 1 was not read again
    with pytest.raises(UsageError, match="not empty"):
        build_sharded(BuildOptions(dataset=dataset, output=output), 2)
    with pytest.raises(UsageError, match="--dask"):
        build_sharded(BuildOptions(dataset=dataset, output=tmp_path / "other", dask="local:2"), 2)
