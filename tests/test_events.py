"""The event rules and the ingest plan as pure functions: plain values in, plain values out."""

from __future__ import annotations

from chromatica_watch.core.paths import DiskFile
from chromatica_watch.core.records import LiveFile, Move
from chromatica_watch.daemon.events import (
    EventKind,
    Facts,
    Forget,
    ForgetFolder,
    FsEvent,
    Offline,
    Settle,
    Walk,
    needs,
    plan_events,
    stats_needed,
)
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


def test_a_moved_folder_moves_its_rows_and_is_walked_and_a_missing_file_is_tombstoned() -> None:
    events = [ev(EventKind.DIR_MOVED, b"trip", b"2024/trip")]
    rows = {(R, b"trip"): {b"trip/a.jpg": row(1), b"trip/b.jpg": row(2)}}
    assert stats_needed(events, rows) == {(R, b"2024/trip/a.jpg"), (R, b"2024/trip/b.jpg")}
    facts = Facts(folders=rows, failed={(R, b"trip"): [b"trip/bad.jpg"]},
                  stats={(R, b"2024/trip/a.jpg"): DiskFile(1, 2), (R, b"2024/trip/b.jpg"): None},
                  present_roots=frozenset({R}))
    plan = plan_events(events, facts)
    assert plan.changes.moved == [Move(1, R, b"2024/trip/a.jpg", 1, 2)]
    assert plan.changes.tombstoned == [2]
    assert plan.changes.cleared_failures == [(R, b"trip/bad.jpg")]
    assert plan.actions == [ForgetFolder(R, b"trip"), Walk(R, b"2024/trip")]


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
