"""`search --paths` and `--print0` for scripts, and its grep-like exit code, through the real CLI against a real
daemon and, once it is stopped, against the index opened read-only: the exact bytes of names holding spaces,
newlines and bytes that are not UTF-8, and an `xargs -0 cp` round trip."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import CLI, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv

# Every name a file system allows that a line-based tool gets wrong, each a teal photo.
NAMES = [b"plain.png", b"with space.png", b"two  spaces and\ttab.png", b"new\nline.png", b"caf\xe9-latin1.png",
         b"-starts-with-dash.png", b"quote's \"both\".png", b"back\\slash.png", b"\xff\xfe not utf-8 at all.png",
         "émoji 🌊.png".encode()]


def _make(pictures: Path) -> set[bytes]:
    """The photos, written under their byte names; their absolute paths as bytes."""
    png = write_rgb(pictures / "seed.png", solid((0, 128, 128), (40, 60))).read_bytes()
    (pictures / "seed.png").unlink()
    made = set()
    for i, name in enumerate(NAMES):
        path = os.fsencode(pictures) + b"/" + name
        with open(path, "wb") as f:
            f.write(png + bytes([i]))  # a byte past the PNG's end: each file its own content hash
        made.add(path)
    return made


def _search(env: DaemonEnv, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CLI, "search", *args, "--config", str(env.config)], capture_output=True, timeout=120)


def _check_outputs(env: DaemonEnv, made: set[bytes], tmp_path: Path, where: str) -> None:
    k = str(len(NAMES) + 5)
    print0 = _search(env, "--color", "teal:0.3", "-k", k, "--print0")
    assert print0.returncode == 0, print0.stderr
    assert print0.stdout.endswith(b"\0") and b"Traceback" not in print0.stderr
    listed = print0.stdout[:-1].split(b"\0")
    assert sorted(listed) == sorted(made), (set(listed) - made, made - set(listed), len(listed))  # each name once

    as_json = json.loads(_search(env, "--color", "teal:0.3", "-k", k, "--json").stdout)
    assert [os.fsencode(m["fs_path"]) for m in as_json] == listed  # the same results in the same order
    assert all("\n" not in m["path"] for m in as_json)  # `path` is for showing: one line, escaped

    lines = _search(env, "--color", "teal:0.3", "-k", k, "--paths")
    assert lines.returncode == 0
    assert lines.stdout == b"".join(p + b"\n" for p in listed)  # raw bytes, nothing escaped, as find -print
    assert lines.stderr.decode().strip() == ("note: 1 of these paths hold a newline and span several lines: "
                                             "use --print0 for them")

    # The pipeline of the README, through a shell: every file copied under its own name, content intact.
    dest = tmp_path / f"copies-{where}"
    dest.mkdir()
    pipe = subprocess.run(f"{CLI} search --color teal:0.3 -k {k} --print0 --config '{env.config}' "
                          f"| xargs -0 -r cp -t '{dest}'", shell=True, capture_output=True, timeout=120)
    assert pipe.returncode == 0, pipe.stderr
    copied = {name: (os.fsencode(dest) + b"/" + name) for name in os.listdir(os.fsencode(dest))}
    assert sorted(copied) == sorted(NAMES)
    for name, path in copied.items():
        with open(path, "rb") as a, open(os.fsencode(env.pictures) + b"/" + name, "rb") as b:
            assert a.read() == b.read()

    # Nothing found: exit 1 and one line on stderr, whatever the output's form; stdout holds results only.
    for form, out in (("--print0", b""), ("--paths", b""), ("--json", b"[]\n"), (None, b"")):
        args = ["--color", "teal:0.3", "--camera", "no such camera", *([form] if form else [])]
        none = _search(env, *args)
        assert (none.returncode, none.stdout) == (1, out), (form, none)
        assert none.stderr == b"no matches\n", (form, none.stderr)


def test_paths_and_print0_keep_every_name_exact_and_exit_1_when_nothing_matches(
        daemon_env: DaemonEnv, tmp_path: Path) -> None:
    made = _make(daemon_env.pictures)
    daemon_env.start()
    wait_until(lambda: daemon_env.idle_with(len(NAMES)), timeout=60)
    _check_outputs(daemon_env, made, tmp_path, "daemon")
    assert daemon_env.stop() == 0
    _check_outputs(daemon_env, made, tmp_path, "local")  # no daemon: the index dir opened here, same bytes


def test_paths_and_json_and_print0_are_one_choice() -> None:
    proc = subprocess.run([CLI, "search", "--color", "teal", "--paths", "--print0"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr and "Traceback" not in proc.stderr
