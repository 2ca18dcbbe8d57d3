"""The batcher (driven by a fake clock, on real files) and the reconciler's pure diff."""

from __future__ import annotations

import os
from pathlib import Path

from chromatica_watch.batcher import Batcher
from chromatica_watch.catalog import Failure, LiveFile
from chromatica_watch.reconcile import diff
from chromatica_watch.scan import DiskFile, display_path, is_candidate, scan


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
    assert b.take_batch(4.6) == []  # ready at 4.5, but the batch waits max_batch_delay
    assert b.take_batch(5.6) == [key(tmp_path, "a.jpg")]
    assert len(b) == 0


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
