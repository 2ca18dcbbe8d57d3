"""The rules about roots and the delta's pairing by name, as pure functions of plain values; and the
catalog's root operations on a real DuckDB file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chromatica_watch.colour import histogram as H
from chromatica_watch.core.paths import DiskFile
from chromatica_watch.core.records import Changes, Failure, LiveFile, Move, NewImage, RootRecord
from chromatica_watch.ingest.diff import diff
from chromatica_watch.ingest.pipeline import adopted_view, plan_from_delta
from chromatica_watch.ingest.roots import DAY_S, expired_roots, relocation_source, root_views
from chromatica_watch.storage.catalog import Catalog

NOW_NS = 10**18  # the scan time: every stat below is far older, so none is racy
OLD = 10**15


def row(image_id: int, size: int = 10, mtime: int = OLD) -> LiveFile:
    return LiveFile(image_id, size, mtime, f"h{image_id}")


# -- pairing what vanished with what is new --------------------------------------------------------------
def test_a_file_moved_with_its_name_size_and_mtime_follows_without_a_read() -> None:
    disk = {b"2025/trip/a.jpg": DiskFile(10, OLD), b"b.jpg": DiskFile(7, OLD)}
    known = {b"trip/a.jpg": row(1), b"b.jpg": row(2, 7)}
    d = diff(disk, known, {}, NOW_NS)
    assert d.moved == [(b"trip/a.jpg", b"2025/trip/a.jpg", 1)]
    assert (d.new, d.vanished, d.to_ingest, d.unchanged) == ([], [], [], 1)
    plan = plan_from_delta("/r", d, {}, disk=disk)
    assert plan.moves == [Move(1, "/r", b"2025/trip/a.jpg", 10, OLD)] and plan.tasks() == []


def test_by_path_a_name_alone_is_no_proof_but_by_name_it_pairs_for_a_hash_check() -> None:
    disk = {b"x/a.jpg": DiskFile(11, OLD)}  # same name, other size
    known = {b"a.jpg": row(1)}
    by_path = diff(disk, known, {}, NOW_NS)
    assert (by_path.moved, by_path.new, by_path.vanished) == ([], [b"x/a.jpg"], [(b"a.jpg", 1)])
    by_name = diff(disk, known, {}, NOW_NS, match_by="name")
    assert (by_name.moved, by_name.new, by_name.vanished) == ([], [], [])
    assert by_name.changed == [(b"x/a.jpg", 1)]  # read; the row is kept if the bytes hash the same


def test_a_name_held_twice_is_never_paired_and_by_name_it_is_reported() -> None:
    disk = {b"x/a.jpg": DiskFile(10, OLD), b"y/a.jpg": DiskFile(10, OLD)}
    known = {b"a.jpg": row(1)}
    for match_by, ambiguous in (("path", []), ("name", [b"a.jpg"])):
        d = diff(disk, known, {}, NOW_NS, match_by=match_by)  # type: ignore[arg-type]
        assert d.moved == [] and d.ambiguous == ambiguous
        assert sorted(d.new) == [b"x/a.jpg", b"y/a.jpg"] and d.vanished == [(b"a.jpg", 1)]
    two_rows = diff({b"a.jpg": DiskFile(10, OLD)}, {b"p/a.jpg": row(1), b"q/a.jpg": row(2)}, {}, NOW_NS,
                    match_by="name")
    assert two_rows.ambiguous == [b"a.jpg"] and two_rows.moved == [] and len(two_rows.vanished) == 2


def test_a_recent_file_is_not_trusted_by_its_stat_alone() -> None:
    disk = {b"new/a.jpg": DiskFile(10, NOW_NS - 10**9)}  # written a second before the scan
    known = {b"a.jpg": row(1, 10, NOW_NS - 10**9)}
    d = diff(disk, known, {}, NOW_NS)
    assert d.moved == [] and d.new == [b"new/a.jpg"]  # read: the content hash decides


def test_a_roots_own_row_wins_the_path_an_adopted_root_also_holds() -> None:
    own, adopted = {b"a.jpg": row(5)}, {b"a.jpg": row(1), b"b.jpg": row(2)}
    assert adopted_view(own, adopted) == {b"a.jpg": row(5), b"b.jpg": row(2)}


# -- roots -------------------------------------------------------------------------------------------------
def test_root_views_list_configured_roots_first_then_retired_ones_with_their_drop_date() -> None:
    records = {"/old": RootRecord("/old", 7, 1, retired_at=1000.0), "/pics": RootRecord("/pics", 3, 0, None, 50.0, 3),
               "/gone": RootRecord("/gone", 2, 0, retired_at=None)}
    views = root_views(records, ["/pics", "/drive", "/new"], {"/drive": "missing or unmounted"}, grace_days=30)
    assert [(v.path, v.state, v.photos) for v in views] == [
        ("/pics", "watched", 3), ("/drive", "offline", 0), ("/new", "watched", 0), ("/gone", "retired", 2),
        ("/old", "retired", 7)]
    assert views[1].problem == "missing or unmounted" and views[0].last_scan == 50.0
    assert views[4].dropped_after == 1000.0 + 30 * DAY_S and views[3].dropped_after is None


def test_a_retired_root_expires_after_its_grace_period() -> None:
    records = {"/a": RootRecord("/a", 1, 0, retired_at=0.0), "/b": RootRecord("/b", 1, 0, retired_at=None)}
    assert expired_roots(records, now=30 * DAY_S - 1, grace_days=30) == []
    assert expired_roots(records, now=30 * DAY_S, grace_days=30) == ["/a"]
    assert expired_roots(records, now=0.0, grace_days=0) == ["/a"]


def test_the_relocation_source_holds_at_least_half_of_its_rows_at_the_same_paths() -> None:
    disk = {b"a.jpg": DiskFile(10, OLD), b"b.jpg": DiskFile(10, OLD), b"c.jpg": DiskFile(99, OLD)}
    half = {b"a.jpg": row(1), b"x.jpg": row(2)}
    most = {b"a.jpg": row(3), b"b.jpg": row(4), b"c.jpg": row(5)}  # c.jpg changed size: 2 of 3 match
    assert relocation_source(disk, {"/half": half, "/most": most}) == ("/most", 2)
    assert relocation_source(disk, {"/few": {b"a.jpg": row(1), b"x.jpg": row(2), b"y.jpg": row(3)}}) is None
    assert relocation_source(disk, {"/other": {b"q.jpg": row(1)}}) is None
    assert relocation_source({}, {"/half": half}) is None


# -- the catalog's side, on a real DuckDB file -------------------------------------------------------------
def image(root: str, path: bytes, h: str) -> NewImage:
    hist = np.zeros(H.TOTAL_BINS, np.float32)
    hist[len(path)] = 1
    return NewImage(root, path, 10, OLD, h, 4, 3, hist)


def test_catalog_relocate_sync_and_drop(tmp_path: Path) -> None:
    fp = H.fingerprint(256)
    with Catalog.open(tmp_path, fp) as cat:
        ids = cat.apply(Changes(added=[image("/old", b"a.jpg", "1"), image("/old", b"b.jpg", "2"),
                                       image("/new", b"b.jpg", "3")],
                                failed=[Failure("/old", b"bad.jpg", 1, 1, "corrupt"),
                                        Failure("/old", b"b.jpg", 1, 1, "stale")]))
        assert cat.sync_roots(["/new"], now=100.0) == ["/old"]
        assert cat.sync_roots(["/new"], now=200.0) == []  # retired once, at the first time
        assert cat.root_records()["/old"].retired_at == 100.0
        assert cat.ids_outside(["/new"]).tolist() == ids[:2]
        cat.note_scan("/old", 50.0, 3)

        done = cat.relocate("/old", "/new")
        assert (done.moved, done.superseded) == (1, [ids[1]])  # /new's own b.jpg is the fresher record
        assert {p: f.image_id for p, f in cat.live_files("/new").items()} == {b"a.jpg": ids[0], b"b.jpg": ids[2]}
        assert list(cat.failed_files()) == [("/new", b"bad.jpg")]  # b.jpg is indexed there: its failure goes
        records = cat.root_records()
        assert list(records) == ["/new"] and records["/new"].last_scan == 50.0

        assert cat.drop_root("/new") == [ids[0], ids[2]]
        assert cat.root_records() == {} and cat.counts()["live"] == 0
        assert cat.verify().rows["images"] == 3  # reads back after all of it; the rows stay, as tombstones
