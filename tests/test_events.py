"""The event rules and the ingest plan as pure functions: plain values in, plain values out."""

from __future__ import annotations

from pathlib import Path

import pytest

from chromatica_watch.core.paths import DiskFile
from chromatica_watch.core.records import LiveFile, Move
from chromatica_watch.daemon.events import (
    EventKind,
    Facts,
    Forget,
    ForgetFolder,
    FsEvent,
    Offline,
    Recheck,
    Settle,
    Walk,
    common_folder,
    needs,
    plan_events,
    stats_needed,
)
from chromatica_watch.daemon.rechecks import Rechecks
from chromatica_watch.ingest.diff import diff
from chromatica_watch.ingest.pipeline import Replaced, plan_from_delta, plan_keys

R = "/photos"


def row(image_id: int, size: int = 10, mtime: int = 100, h: str = "h") -> LiveFile:
    return LiveFile(image_id, size, mtime, h)


def ev(kind: EventKind, path: bytes, dest: bytes = b"") -> FsEvent:
    return FsEvent(kind, R, path, dest)


def test_kinds_are_an_enum_that_still_reads_as_text() -> None:
    assert EventKind("moved") is EventKind.MOVED and EventKind.MOVED == "moved"
    assert FsEvent("changed", R, b"a.jpg") == ev(EventKind.CHANGED, b"a.jpg")  # type: ignore[arg-type]


def test_a_changed_file_settles_and_a_deleted_one_is_tombstoned_at_once() -> None:
    events = [ev(EventKind.CHANGED, b"new.jpg"), ev(EventKind.DELETED, b"old.jpg"), ev(EventKind.DELETED, b"never.jpg")]
    assert needs(events).keys == {(R, b"old.jpg"), (R, b"never.jpg")}
    plan = plan_events(events, Facts(rows={(R, b"old.jpg"): row(7)}, present_roots=frozenset({R})))
    assert plan.actions == [Settle((R, b"new.jpg")), Forget((R, b"old.jpg")), Forget((R, b"never.jpg"))]
    assert plan.changes.tombstoned == [7]
    assert plan.changes.cleared_failures == [(R, b"old.jpg"), (R, b"never.jpg")]  # its failure record goes too


def test_a_rename_keeps_the_id_and_replaces_what_was_at_the_destination() -> None:
    events = [ev(EventKind.MOVED, b"a.jpg", b"b.jpg")]
    assert stats_needed(events, {}) == {(R, b"b.jpg")}
    facts = Facts(rows={(R, b"a.jpg"): row(1), (R, b"b.jpg"): row(2)}, stats={(R, b"b.jpg"): DiskFile(10, 100)},
                  present_roots=frozenset({R}))
    plan = plan_events(events, facts)
    assert plan.changes.moved == [Move(1, R, b"b.jpg", 10, 100)]
    assert plan.changes.tombstoned == [2]
    assert plan.actions == [Forget((R, b"a.jpg"))]


def test_a_rename_of_an_unindexed_file_is_a_new_file_unless_gone_again() -> None:
    events = [ev(EventKind.MOVED, b"x.part.jpg", b"x.jpg")]
    settled = plan_events(events, Facts(stats={(R, b"x.jpg"): DiskFile(5, 6)}, present_roots=frozenset({R})))
    assert settled.actions == [Forget((R, b"x.part.jpg")), Settle((R, b"x.jpg"))] and not settled.changes.moved
    gone = plan_events(events, Facts(stats={(R, b"x.jpg"): None}, present_roots=frozenset({R})))
    assert gone.actions == [Forget((R, b"x.part.jpg"))]


def test_a_moved_folder_moves_its_rows_and_is_walked() -> None:
    events = [ev(EventKind.DIR_MOVED, b"trip", b"2024/trip")]
    rows = {(R, b"trip"): {b"trip/a.jpg": row(1, 1, 2), b"trip/b.jpg": row(2, 3, 4)}}  # as their files still are
    assert stats_needed(events, rows) == {(R, b"2024/trip/a.jpg"), (R, b"2024/trip/b.jpg")}
    assert needs(events).dirs == {(R, b"2024/trip")}
    facts = Facts(folders=rows, failed={(R, b"trip"): [b"trip/bad.jpg"]},
                  stats={(R, b"2024/trip/a.jpg"): DiskFile(1, 2), (R, b"2024/trip/b.jpg"): DiskFile(3, 4)},
                  present_roots=frozenset({R}), present_dirs=frozenset({(R, b"2024/trip")}))
    plan = plan_events(events, facts)
    assert plan.changes.moved == [Move(1, R, b"2024/trip/a.jpg", 1, 2), Move(2, R, b"2024/trip/b.jpg", 3, 4)]
    assert plan.changes.tombstoned == []
    assert plan.changes.cleared_failures == [(R, b"trip/bad.jpg")]
    assert plan.actions == [ForgetFolder(R, b"trip"), Walk(R, b"2024/trip")]


def test_a_folder_moved_on_before_its_event_is_read_is_rechecked_not_deleted() -> None:
    """A rename storm: by the time `trip -> 2024/trip` is read, the folder moved on; nothing is deleted on
    the event's word, the folder holding both ends is compared once the root is quiet."""
    events = [ev(EventKind.DIR_MOVED, b"trip", b"2024/trip")]
    rows = {(R, b"trip"): {b"trip/a.jpg": row(1, 1, 2), b"trip/b.jpg": row(2)}}
    partly = Facts(folders=rows, stats={(R, b"2024/trip/a.jpg"): DiskFile(1, 2), (R, b"2024/trip/b.jpg"): None},
                   present_roots=frozenset({R}), present_dirs=frozenset({(R, b"2024/trip")}))
    plan = plan_events(events, partly)
    assert plan.changes.moved == [Move(1, R, b"2024/trip/a.jpg", 1, 2)] and plan.changes.tombstoned == []
    assert plan.actions == [ForgetFolder(R, b"trip"), Recheck(R, b"")]
    gone = Facts(folders=rows, stats={}, present_roots=frozenset({R}))
    plan = plan_events([ev(EventKind.DIR_MOVED, b"x/trip", b"x/old")], Facts(
        folders={(R, b"x/trip"): {b"x/trip/a.jpg": row(1)}}, present_roots=frozenset({R})))
    assert not plan.changes and plan.actions == [ForgetFolder(R, b"x/trip"), Recheck(R, b"x")]
    assert not plan_events(events, gone).changes.tombstoned


def test_a_folder_deleted_then_back_and_one_created_then_gone_wait_for_a_recheck() -> None:
    rows = {(R, b"a/trip"): {b"a/trip/p.jpg": row(1)}}
    deleted = [ev(EventKind.DIR_DELETED, b"a/trip")]
    back = plan_events(deleted, Facts(folders=rows, present_roots=frozenset({R}),
                                      present_dirs=frozenset({(R, b"a/trip")})))
    assert not back.changes and back.actions == [ForgetFolder(R, b"a/trip"), Recheck(R, b"a")]
    moving = plan_events([ev(EventKind.MOVED, b"x.jpg", b"y.jpg"), *deleted],
                         Facts(folders=rows, present_roots=frozenset({R})))
    assert not moving.changes.tombstoned and Recheck(R, b"a") in moving.actions  # half of a move, maybe
    storm = plan_events(deleted, Facts(folders=rows, present_roots=frozenset({R}), unsettled_roots=frozenset({R})))
    assert not storm.changes.tombstoned and storm.actions[-1] == Recheck(R, b"a")
    file_gone = plan_events([ev(EventKind.DELETED, b"a/p.jpg")], Facts(rows={(R, b"a/p.jpg"): row(1)},
                                                                      unsettled_roots=frozenset({R})))
    assert not file_gone.changes.tombstoned and file_gone.actions == [Forget((R, b"a/p.jpg")), Recheck(R, b"a")]
    really = plan_events(deleted, Facts(folders=rows, present_roots=frozenset({R})))
    assert really.changes.tombstoned == [1]  # gone for good: at once, as before
    created = [ev(EventKind.DIR_CHANGED, b"a/new")]
    assert plan_events(created, Facts(present_dirs=frozenset({(R, b"a/new")}))).actions == [Walk(R, b"a/new")]
    assert plan_events(created, Facts()).actions == [Recheck(R, b"a")]


def test_a_file_changed_then_moved_keeps_its_rows_times_and_is_read_again() -> None:
    """Written then renamed before the write was handled: the row follows with its own size and times (so
    the file reads as changed to any scan) and the file is read again; an unchanged one just moves."""
    events = [ev(EventKind.MOVED, b"a/x.jpg", b"a/y.jpg"), ev(EventKind.MOVED, b"a/u.jpg", b"a/v.jpg")]
    plan = plan_events(events, Facts(rows={(R, b"a/x.jpg"): row(1), (R, b"a/u.jpg"): row(2)},
                                     stats={(R, b"a/y.jpg"): DiskFile(10, 250, 7), (R, b"a/v.jpg"): DiskFile(10, 100)},
                                     present_roots=frozenset({R})))
    assert plan.changes.moved == [Move(1, R, b"a/y.jpg", 10, 100, None), Move(2, R, b"a/v.jpg", 10, 100, None)]
    assert Settle((R, b"a/y.jpg")) in plan.actions and Settle((R, b"a/v.jpg")) not in plan.actions


def test_a_file_moved_on_again_keeps_its_row_until_the_recheck() -> None:
    events = [ev(EventKind.MOVED, b"a/x.jpg", b"b/x.jpg")]
    plan = plan_events(events, Facts(rows={(R, b"a/x.jpg"): row(1)}, stats={(R, b"b/x.jpg"): None},
                                     present_roots=frozenset({R})))
    assert not plan.changes.tombstoned and not plan.changes.moved
    assert plan.actions == [Forget((R, b"a/x.jpg")), Recheck(R, b"")]
    assert common_folder(b"p/q/a.jpg", b"p/q/r/b.jpg") == b"p/q" and common_folder(b"a", b"b") == b""


def test_rechecks_wait_for_a_quiet_root_and_keep_the_outermost_folders() -> None:
    checks = Rechecks(quiet=1.0)
    checks.note(R, b"a/b", 0.0)
    checks.note(R, b"a", 0.2)
    checks.note(R, b"c", 0.3)
    checks.note("/other", b"x", 0.5)
    assert checks.due(1.0) == [] and checks.next_deadline(1.0) == pytest.approx(0.3)
    checks.touched(R, 1.2)  # another event in the root: it waits again
    assert checks.due(1.6) == [("/other", b"x")]
    assert checks.due(2.2) == [(R, b"a"), (R, b"c")] and len(checks) == 0
    checks.note(R, b"", 3.0)
    checks.note(R, b"d", 3.0)
    assert checks.due(4.0) == [(R, b"")] and checks.next_deadline(4.0) == float("inf")


def test_a_folder_event_on_a_root_that_is_gone_means_offline_not_deleted() -> None:
    events = [ev(EventKind.DIR_DELETED, b".")]
    plan = plan_events(events, Facts(folders={(R, b"."): {b"a.jpg": row(1)}}, present_roots=frozenset()))
    assert plan.actions == [Offline(R)] and not plan.changes


def test_a_file_moved_then_its_folder_deleted_in_one_batch_is_not_tombstoned_twice() -> None:
    events = [ev(EventKind.MOVED, b"d/a.jpg", b"a.jpg"), ev(EventKind.DIR_DELETED, b"d")]
    facts = Facts(rows={(R, b"d/a.jpg"): row(1)}, folders={(R, b"d"): {b"d/a.jpg": row(1)}},
                  stats={(R, b"a.jpg"): DiskFile(10, 100)}, present_roots=frozenset({R}))
    plan = plan_events(events, facts)
    assert plan.changes.moved == [Move(1, R, b"a.jpg", 10, 100)] and plan.changes.tombstoned == []


def test_the_ingest_plan_of_a_delta() -> None:
    disk = {b"new.jpg": DiskFile(1, 1), b"edited.jpg": DiskFile(9, 9), b"same.jpg": DiskFile(3, 3)}
    known = {b"edited.jpg": row(1, 5, 5, "old"), b"same.jpg": row(2, 3, 3, "s"), b"gone.jpg": row(3, 4, 4, "g")}
    delta = diff(disk, known, {}, scan_time_ns=10**12)
    plan = plan_from_delta(R, delta, {1: "old", 3: "g"})
    assert plan.replaced == {(R, b"edited.jpg"): Replaced(1, "old")}
    assert plan.vanished.remaining_ids() == [3]
    tasks = {t.path: t.skip_hashes for t in plan.tasks()}
    # a vanished file's content found again is a move (not decoded); a replaced file's own old content too
    assert tasks == {b"edited.jpg": frozenset({"g", "old"}), b"new.jpg": frozenset({"g"})}


def test_the_plan_of_files_from_the_batcher() -> None:
    replaced, tasks = plan_keys([(R, b"a.jpg"), (R, b"b.jpg")], {(R, b"a.jpg"): row(4, h="ha")})
    assert replaced == {(R, b"a.jpg"): Replaced(4, "ha")}
    assert [(t.path, t.skip_hashes) for t in tasks] == [(b"a.jpg", frozenset({"ha"})), (b"b.jpg", frozenset())]


def test_a_folder_gone_before_its_walk_is_no_failure(tmp_path: Path) -> None:
    from chromatica_watch.ingest.scan import scan

    (tmp_path / "here").mkdir()
    vanished: list[bytes] = []
    files, problems = scan(str(tmp_path), under=b"gone", vanished=vanished)
    assert files == {} and problems == [] and vanished == [b"gone"]


def test_a_file_that_turns_up_where_no_row_is_takes_the_row_its_twin_left() -> None:
    from chromatica_watch.ingest.arrivals import pair_arrivals

    now = 10**18
    old = now - 3600 * 10**9
    arrivals = {b"b/x.jpg": DiskFile(10, old), b"b/y.jpg": DiskFile(20, old), b"b/z.jpg": DiskFile(30, old),
                b"b/new.jpg": DiskFile(40, now - 10**8)}
    candidates = [(b"a/x.jpg", row(1, 10, old)), (b"a/y.jpg", row(2, 20, old)),
                  (b"a/z.jpg", row(3, 30, old)), (b"c/z.jpg", row(4, 30, old)), (b"a/new.jpg", row(5, 40, now - 10**8))]
    pairs = pair_arrivals(arrivals, candidates, still_there={b"a/y.jpg"}, now_ns=now)
    # x: its row's file is gone -> follows; y: its row's file is still there; z: two rows could be it;
    # new: written within the racy window, its stat proves nothing
    assert pairs == {b"b/x.jpg": row(1, 10, old)}
    assert pair_arrivals({b"b/x.jpg": DiskFile(10, old)}, [(b"a/x.jpg", row(1, 11, old))], (), now) == {}
