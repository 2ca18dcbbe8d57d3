"""A thumbnail cache on a full disk (a real small tmpfs, filled up): said once in the log and as a NOTE in
`status` while it lasts, not once per thumbnail; thumbnails are still served, made on the fly; once space is
free, the next thumbnail is kept and the NOTE goes. A real daemon, its web app, the real `status` command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chromatica_watch.imaging.thumbnail_cache import CacheHealth, CacheWrite
from chromatica_watch.imaging.thumbnails import file_uri, png_text_chunks, thumbnail_name
from tests.conftest import mounted_tmpfs, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv
from tests.test_hardening import fill_up
from tests.test_web import App

WARNING = "cannot write to the thumbnail cache"
COLOURS = ((220, 20, 20), (0, 128, 128), (240, 220, 10), (20, 40, 220), (120, 60, 10), (200, 200, 200))


def status_text(env: DaemonEnv) -> str:
    proc = env.cli("status")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_a_full_thumbnail_cache_is_said_once_and_noted_in_status_while_it_lasts(daemon_env: DaemonEnv,
                                                                                tmp_path: Path) -> None:
    env = daemon_env
    with mounted_tmpfs(tmp_path / "thumbs", "512k") as cache:
        try:
            filler = fill_up(cache)
            env.write_config(thumbnail_dir=str(cache))
            for i, rgb in enumerate(COLOURS):
                write_rgb(env.pictures / f"p{i}.png", solid(rgb, (300, 400)))
            env.start()
            wait_until(lambda: env.idle_with(len(COLOURS)), timeout=60)
            # Indexing tried to keep each photo's grid thumbnail: one line, and the note.
            wait_until(lambda: "NOTE: the thumbnail cache" in status_text(env), timeout=30)
            text = status_text(env)
            assert f"the thumbnail cache {cache} cannot be written (no space left on device)" in text, text
            assert env.verdict()[1]["status"]["thumbnail_cache"].startswith("the thumbnail cache")

            client = App(env.status()["web_url"])
            for image_id in range(1, len(COLOURS) + 1):
                for size in ("normal", "large"):
                    code, headers, body = client.request("GET", f"/thumbnails/{image_id}?size={size}")
                    assert code == 200 and headers["content-type"] == "image/png", (code, body[:200])
                    assert png_text_chunks(body) is not None  # whole, made on the fly
            assert [p.name for p in cache.iterdir() if p.is_file()] == ["filler"]
            assert env.log().count(WARNING) == 1, env.log()

            filler.unlink()  # space again: the next thumbnail is kept, and the note goes
            code, _, body = client.request("GET", "/thumbnails/1?size=x-large")
            assert code == 200
            kept = cache / "x-large" / thumbnail_name(file_uri(str(env.pictures / "p0.png")))
            assert kept.read_bytes() == body
            wait_until(lambda: "NOTE: the thumbnail cache" not in status_text(env), timeout=30)
            assert env.verdict()[1]["status"]["thumbnail_cache"] is None
            assert "the thumbnail cache" in env.log() and "can be written again" in env.log()
            assert env.log().count(WARNING) == 1
            assert env.stop() == 0
        finally:
            if env.proc is not None:
                env.proc.kill()
                env.proc.wait(timeout=10)
                env.proc = None


def test_a_cache_that_comes_and_goes_is_warned_of_again_at_most_hourly(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    notes: list[str | None] = []
    health = CacheHealth(tmp_path, clock=lambda: now[0], on_change=notes.append)
    full, fine = CacheWrite("no space left on device"), CacheWrite()
    with caplog.at_level("INFO"):
        health.noted([full, full, None, full])
        now[0] = 60.0
        health.noted([fine, full, full])
        now[0] = 3700.0
        health.noted([fine, full])
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and health.note is not None and "no space left" in health.note
    assert notes == [health.note, None, health.note, None, health.note]
    assert os.fspath(tmp_path) in str(notes[0])
