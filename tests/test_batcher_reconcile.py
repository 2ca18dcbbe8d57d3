"""The batcher (driven by a fake clock, on real files) and the reconciler's pure diff."""

from __future__ import annotations

import os
from pathlib import Path

from chromatica_watch.core.records import Failure, LiveFile
from chromatica_watch.daemon.batcher import Batcher
from chromatica_watch.ingest.diff import diff
from chromatica_watch.ingest.scan import DiskFile, display_path, is_candidate, scan


def key(tmp_path: Path, name: str) -> tuple[str, bytes]:
    return str(tmp_path), name.encode()


def test_file_is_ready_only_after_it_stops_changing(tmp_path: Path) -> None:
    b = Batcher(settle_seconds=2.0, batch_size=10, max_batch_delay=1.0)
    f = tmp_path / "a.jpg"
    f.write_bytes(b"part")
    b.note(key(tmp_path, "a.jpg"), now=0.0)
    b.poll(1.9)
    assert b.take_batch(10.0) == []  # not settled yet at 1.9 s
    with f.open("ab") as fh:
        fh.write(b"more bytes")  # still being copied
    os.utime(f, ns=(1, 2_000_000_000))
    b.poll(2.5)  # changed: the settle clock restarts at 2.5
    b.poll(4.0)
    assert b.take_batch(4.0) == []
    b.poll(4.6)
    # Ready at 4.5; nothing else could settle within max_batch_delay, so the batch does not wait for it.
    assert b.take_batch(4.6) == [key(tmp_path, "a.jpg")]
    assert len(b) == 0


def test_batch_waits_max_batch_delay_only_while_another_file_could_join(tmp_path: Path) -> None:
    b = Batcher(settle_seconds=2.0, batch_size=10, max_batch_delay=1.0)
    a, bb, c = (key(tmp_path, n) for n in ("a.jpg", "b.jpg", "c.jpg"))
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    b.note(a, now=0.0)
    b.note(bb, now=0.5)
    assert b.next_deadline(0.5) == 1.5  # checked again exactly when a could have settled
    b.poll(2.0)
    assert b.take_batch(2.0) == []  # a is ready; b settles at 2.5, before the 3.0 deadline: wait for it
    assert b.next_deadline(2.0) == 0.5
    b.note(c, now=2.5)  # settles at 4.5, after the deadline: cannot join this batch
    b.poll(2.5)
    assert b.take_batch(2.5) == [a, bb]  # flushed at once instead of at 3.0
    b.poll(4.5)
    assert b.take_batch(4.5) == [c]
    assert len(b) == 0 and b.next_deadline(5.0) == 1.0


def test_lone_file_waits_when_a_file_noted_now_could_still_join(tmp_path: Path) -> None:
    b = Batcher(settle_seconds=0.3, batch_size=10, max_batch_delay=1.0)
    (tmp_path / "a.jpg").write_bytes(b"x")
    b.note(key(tmp_path, "a.jpg"), now=0.0)
    b.poll(0.3)
    assert b.take_batch(0.3) == []  # a file noted before 1.0 would settle by 1.3: the batch may grow
    assert b.take_batch(1.1) == [key(tmp_path, "a.jpg")]  # 1.1 + 0.3 > 1.3: nothing more can join


def test_batch_flushes_when_full_and_coalesces_events(tmp_path: Path) -> None:
    b = Batcher(settle_seconds=0.5, batch_size=3, max_batch_delay=100.0)
    for i in range(5):
        (tmp_path / f"{i}.jpg").write_bytes(b"x")
        for _ in range(3):  # many events for one path coalesce
            b.note(key(tmp_path, f"{i}.jpg"), now=0.0)
    assert len(b) == 5
    b.poll(1.0)
    first = b.take_batch(1.0)
    assert len(first) == 3
    assert b.take_batch(1.0) == []  # 2 left: not full, delay not passed
    assert len(b.take_batch(1.0, force=True)) == 2


def test_file_deleted_before_settling_is_never_ready(tmp_path: Path) -> None:
    b = Batcher(settle_seconds=1.0, batch_size=10, max_batch_delay=0.0)
    f = tmp_path / "gone.jpg"
    f.write_bytes(b"x")
    b.note(key(tmp_path, "gone.jpg"), now=0.0)
    f.unlink()
    b.poll(5.0)
    assert b.take_batch(5.0) == [] and len(b) == 0


def test_diff_is_stat_only_and_classifies_every_path() -> None:
    now = 100 * 10**9
    disk = {b"same.jpg": DiskFile(10, 1), b"new.jpg": DiskFile(5, 1), b"edited.jpg": DiskFile(11, 2),
            b"racy.jpg": DiskFile(10, now - 10**9), b"bad.jpg": DiskFile(3, 3), b"bad2.jpg": DiskFile(4, 9)}
    catalog = {b"same.jpg": LiveFile(1, 10, 1, "h1"), b"edited.jpg": LiveFile(2, 10, 1, "h2"),
               b"racy.jpg": LiveFile(3, 10, now - 10**9, "h3"), b"gone.jpg": LiveFile(4, 1, 1, "h4")}
    failures = {b"bad.jpg": Failure("/r", b"bad.jpg", 3, 3, "corrupt"),
                b"bad2.jpg": Failure("/r", b"bad2.jpg", 4, 4, "corrupt")}
    d = diff(disk, catalog, failures, now)
    assert d.new == [b"bad2.jpg", b"new.jpg"]  # bad2 changed since it failed: retried
    assert d.changed == [(b"edited.jpg", 2)]
    assert d.racy == [(b"racy.jpg", 3)]
    assert d.vanished == [(b"gone.jpg", 4)]
    assert (d.unchanged, d.failed_unchanged) == (1, 1)
    assert d.to_ingest == [b"bad2.jpg", b"edited.jpg", b"new.jpg", b"racy.jpg"]


def test_scan_skips_hidden_partial_and_nas_junk(tmp_path: Path) -> None:
    for rel in ["a.jpg", "B.JPEG", "sub/c.png", ".hidden.jpg", ".cache/d.jpg", "e.jpg.part", "f.jpg.crdownload",
                "@eaDir/g.jpg", "#recycle/h.jpg", "._i.jpg", "j.txt", "k.jpg~", "skip/l.jpg"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    files, problems = scan(str(tmp_path), excludes=("skip/*",))
    assert sorted(files) == [b"B.JPEG", b"a.jpg", b"sub/c.png"]
    assert problems == []
    assert is_candidate("x/y.webp") and not is_candidate("x/.y.webp") and not is_candidate("y.tmp")


def test_display_path_escapes_newlines_and_odd_bytes() -> None:
    assert display_path(b"a b\nc\xff.jpg") == "a b\\nc\\xff.jpg"
