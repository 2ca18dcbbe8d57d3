"""The build's progress as the user sees it, through the real CLI: tqdm's bar on a terminal (a real pseudo
terminal), plain lines without carriage returns in a pipe or a log."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path

from chromatica_watch.cli.progress import BuildProgress, plain_line
from chromatica_watch.offline.build import Progress
from tests.conftest import CLI, PHOTO_NAMES, photo, write_rgb


def _dataset(root: Path) -> int:
    for name in PHOTO_NAMES:
        write_rgb(root / f"{name}.jpg", photo(name), IMWRITE_JPEG_QUALITY=85)
    return len(PHOTO_NAMES)


def test_a_build_on_a_terminal_draws_tqdms_bar_in_place(tmp_path: Path) -> None:
    n = _dataset(tmp_path / "pics")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns, as a terminal has
    try:
        proc = subprocess.Popen([CLI, "build", "--dataset", str(tmp_path / "pics"), "--output", str(tmp_path / "o"),
                                 "--workers", "1"], stdout=subprocess.DEVNULL, stderr=follower,
                                stdin=subprocess.DEVNULL)
        os.close(follower)
        drawn = bytearray()
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the process closed the terminal's last descriptor
                break
            if not chunk:
                break
            drawn += chunk
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(leader)
    text = drawn.decode()
    assert "\r" in text  # redrawn in place
    assert "build: 100%" in text and f"{n}/{n}" in text and "img/s" in text and "failed=0" in text
    assert "█" in text  # tqdm's own bar
    assert "Traceback" not in text


def test_a_build_in_a_pipe_writes_plain_lines(tmp_path: Path) -> None:
    n = _dataset(tmp_path / "pics")
    proc = subprocess.run([CLI, "build", "--dataset", str(tmp_path / "pics"), "--output", str(tmp_path / "o"),
                           "--workers", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("build:")]
    assert "\r" not in proc.stderr and "█" not in proc.stderr
    assert lines and re.fullmatch(rf"build: 100% {n}/{n} \[\d\d:\d\d<00:00, +[\d.]+img/s, failed=0\]", lines[-1])
    assert len(lines) <= 3  # the first, the last, and one every 5 s at most: a build of six photos is quick


def test_plain_lines_every_interval_and_the_last_always() -> None:
    out = io.StringIO()  # not a terminal
    bar = BuildProgress(out, interval=3600.0)
    for done in range(11):
        bar(Progress(done, 10, 1, 2.0))
    assert out.getvalue().splitlines() == [plain_line("build", Progress(0, 10, 1, 2.0)),
                                           plain_line("build", Progress(10, 10, 1, 2.0))]
    assert plain_line("build", Progress(4, 10, 1, 2.0)) == "build:  40% 4/10 [00:02<00:03,  2.00img/s, failed=1]"
