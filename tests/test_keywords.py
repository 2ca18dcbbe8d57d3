"""Colour keywords in XMP sidecars, read back with ExifTool as other tools would: merged into a sidecar ExifTool
wrote first, replaced, removed, whole after a kill -9 and on a full disk, a broken sidecar left alone and
listed by `failed`, and the daemon (keywords = "xmp") writing them without reading its photo again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chromatica_watch.colour.terms import TERMS
from chromatica_watch.imaging.sidecars import remove_keywords as remove
from chromatica_watch.imaging.sidecars import sidecar_path, write_keywords
from tests.conftest import CLI, mounted_tmpfs, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv

ORANGE, BLUE, GREY = (255, 128, 0), (0, 0, 255), (128, 128, 128)
BROKEN = b"<?xpacket begin=''?><x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF><unclosed>"


def exiftool(path: Path) -> dict[str, Any]:
    """The XMP of a sidecar as ExifTool reads it (lists always lists)."""
    out = subprocess.run(["exiftool", "-j", "-XMP:all", str(path)], capture_output=True, text=True, check=True)
    found = dict(json.loads(out.stdout)[0])
    for key in ("Subject", "TagsList", "HierarchicalSubject"):
        if key in found and not isinstance(found[key], list):
            found[key] = [found[key]]
    return found


def exiftool_sidecar(path: Path) -> None:
    """A sidecar as a person's tools leave it: keywords, tags, a rating and a description."""
    subprocess.run(["exiftool", "-q", "-o", str(path), "-XMP-dc:Subject=holiday", "-XMP-dc:Subject=Teal",
                    "-XMP-dc:Description=At the beach", "-XMP-xmp:Rating=4", "-XMP-digiKam:TagsList=People/Ann",
                    "-XMP-lr:HierarchicalSubject=People|Ann"], check=True)


def test_keywords_merge_into_a_sidecar_exiftool_wrote_and_replace_our_earlier_ones(tmp_path: Path) -> None:
    side = tmp_path / "IMG_1.jpg.xmp"
    exiftool_sidecar(side)
    write_keywords(os.fsencode(side), ["orange", "blue"], TERMS)
    x = exiftool(side)
    assert x["Subject"] == ["holiday", "Teal", "Orange", "Blue"]
    assert x["TagsList"] == ["People/Ann", "Colours/Orange", "Colours/Blue"]
    assert x["HierarchicalSubject"] == ["People|Ann", "Colours|Orange", "Colours|Blue"]
    assert x["Rating"] == 4 and x["Description"] == "At the beach"

    assert write_keywords(os.fsencode(side), ["orange", "blue"], TERMS).action == "unchanged"
    write_keywords(os.fsencode(side), ["grey"], TERMS)  # the photo changed: ours replaced, theirs kept
    x = exiftool(side)
    assert x["Subject"] == ["holiday", "Teal", "Grey"]  # "Teal" was the user's own word: kept
    assert x["TagsList"] == ["People/Ann", "Colours/Grey"]
    assert x["HierarchicalSubject"] == ["People|Ann", "Colours|Grey"]
    assert x["Rating"] == 4 and x["Description"] == "At the beach"


def test_remove_leaves_the_rest_and_deletes_a_sidecar_that_held_only_ours(tmp_path: Path) -> None:
    theirs, ours = tmp_path / "a.jpg.xmp", tmp_path / "b.jpg.xmp"
    exiftool_sidecar(theirs)
    before = exiftool(theirs)
    write_keywords(os.fsencode(theirs), ["teal", "orange"], TERMS)
    write_keywords(os.fsencode(ours), ["teal"], TERMS)
    assert remove(os.fsencode(theirs), TERMS).action == "removed"
    after = exiftool(theirs)
    for key in ("Subject", "TagsList", "HierarchicalSubject", "Rating", "Description"):
        assert after[key] == before[key], key
    assert remove(os.fsencode(ours), TERMS).action == "deleted"
    assert not ours.exists()
    assert remove(os.fsencode(ours), TERMS).action == "absent"
    assert write_keywords(os.fsencode(ours), [], TERMS).action == "absent"  # nothing to say: no sidecar made


def test_sidecar_names_as_the_tools_expect() -> None:
    assert sidecar_path(b"/p/IMG_1.jpg") == b"/p/IMG_1.jpg.xmp"
    assert sidecar_path(b"/p/IMG_1.CR2", "name.xmp") == b"/p/IMG_1.xmp"
    assert sidecar_path(b"/p/.hidden", "name.xmp") == b"/p/.hidden.xmp"


_WRITER = """
import os, sys
from chromatica_watch.colour.terms import TERMS
from chromatica_watch.imaging.sidecars import write_keywords
path = os.fsencode(sys.argv[1])
print("ready", flush=True)
while True:
    write_keywords(path, ["orange", "blue"], TERMS)
    write_keywords(path, ["grey"], TERMS)
"""


def test_a_kill_9_mid_write_leaves_the_old_sidecar_or_the_new_one(tmp_path: Path) -> None:
    side = tmp_path / "IMG_1.jpg.xmp"
    exiftool_sidecar(side)
    seen = set()
    for i in range(12):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(side)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(0.05 + 0.013 * i)  # somewhere in a write, a different place each time
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        x = exiftool(side)
        assert x["Rating"] == 4 and x["Description"] == "At the beach"
        assert x["TagsList"][0] == "People/Ann"
        ours = tuple(x["TagsList"][1:])
        assert ours in {("Colours/Orange", "Colours/Blue"), ("Colours/Grey",)}, x
        seen.add(ours)
    assert seen  # every kill left a whole sidecar, one of the two


def _built_index(tmp_path: Path, pictures: Path) -> Path:
    """An index of `pictures` made by `build`, and a config naming both (no daemon runs)."""
    index = tmp_path / "index"
    subprocess.run([CLI, "build", "--dataset", str(pictures), "--output", str(index)], check=True,
                   capture_output=True)
    config = tmp_path / "cw.toml"
    config.write_text(f'roots = ["{pictures}"]\nindex_dir = "{index}"\nstate_dir = "{tmp_path / "state"}"\n'
                      f'runtime_dir = "{tmp_path / "run"}"\n')
    return config


def test_the_cli_writes_removes_and_dry_runs_without_a_daemon(tmp_path: Path) -> None:
    pictures = tmp_path / "Pictures"
    write_rgb(pictures / "orange.png", solid(ORANGE))
    write_rgb(pictures / "sub" / "grey.png", solid(GREY))
    config = _built_index(tmp_path, pictures)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, "keywords", *args, "--config", str(config)], capture_output=True, text=True)

    dry = cli("write", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "2 sidecar(s) would be written" in dry.stderr
    assert not list(pictures.rglob("*.xmp"))
    done = cli("write", "--in", str(pictures / "sub"))
    assert done.returncode == 0, done.stderr
    assert exiftool(pictures / "sub" / "grey.png.xmp")["Subject"] == ["Grey"]
    assert not (pictures / "orange.png.xmp").exists()  # outside --in
    report = json.loads(cli("write", "--json").stdout)
    assert (report["written"], report["unchanged"]) == (1, 1)
    assert exiftool(pictures / "orange.png.xmp")["TagsList"] == ["Colours/Orange"]
    gone = cli("remove")
    assert gone.returncode == 0 and "removed from 2 sidecar(s)" in gone.stderr, gone.stderr
    assert not list(pictures.rglob("*.xmp"))
    outside = cli("write", "--in", str(tmp_path))
    assert outside.returncode == 2 and "not inside a watched folder" in outside.stderr
    assert "Traceback" not in outside.stderr


def test_a_full_disk_leaves_the_old_sidecar_and_says_so_in_one_line(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        pictures = disk / "Pictures"
        write_rgb(pictures / "a.png", solid(ORANGE))
        write_rgb(pictures / "b.png", solid(BLUE))
        exiftool_sidecar(pictures / "a.png.xmp")
        config = _built_index(tmp_path, pictures)
        old = (pictures / "a.png.xmp").read_bytes()
        filler = disk / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        proc = subprocess.run([CLI, "keywords", "write", "--config", str(config)], capture_output=True, text=True)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        stopped = [line for line in lines if line.startswith("stopped:")]
        assert len(stopped) == 1 and "No space left on device" in stopped[0], proc.stderr
        assert "Traceback" not in proc.stderr
        assert (pictures / "a.png.xmp").read_bytes() == old
        assert not (pictures / "b.png.xmp").exists()
        assert not [p for p in pictures.iterdir() if p.name.endswith(".tmp")]  # no temp file left either
        filler.unlink()


def _indexed_lines(env: DaemonEnv) -> int:
    """How many photos the daemon's log says it read and indexed."""
    total = 0
    for line in env.log().splitlines():
        if "indexed " in line and " new image(s)" in line:
            total += int(line.split("indexed ", 1)[1].split(" ", 1)[0])
    return total


def test_the_daemon_writes_keywords_for_a_new_photo_and_does_not_read_it_again(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    env.write_config(keywords="xmp")
    write_rgb(env.pictures / "broken.png", solid(GREY))
    (env.pictures / "broken.png.xmp").write_bytes(BROKEN)
    env.start()
    write_rgb(env.pictures / "orange.png", solid(ORANGE))
    side = env.pictures / "orange.png.xmp"
    wait_until(lambda: side.exists() and env.idle_with(2), timeout=60)
    assert exiftool(side)["TagsList"] == ["Colours/Orange"]
    assert (env.pictures / "broken.png.xmp").read_bytes() == BROKEN  # left as it was
    failed = json.loads(env.cli("failed", "--json").stdout)
    assert [f["path"] for f in failed] == [str(env.pictures / "broken.png.xmp")]
    assert "does not parse" in failed[0]["reason"]

    time.sleep(2.0)  # several settle times: a read of the photo after its sidecar's write would show by now
    assert _indexed_lines(env) == 2 and env.indexed() == 2

    write_rgb(env.pictures / "orange.png", solid(BLUE))  # the photo changed: its keywords follow
    wait_until(lambda: exiftool(side).get("TagsList") == ["Colours/Blue"], timeout=60)
    proc = env.cli("keywords", "remove")
    assert proc.returncode == 1, proc.stderr  # the broken sidecar still cannot be read
    assert not side.exists()  # it held only ours
    assert [f["path"] for f in json.loads(env.cli("failed", "--json").stdout)] == [
        str(env.pictures / "broken.png.xmp")]
    assert env.stop() == 0


@pytest.mark.parametrize("value", ["yes", "XMP"])
def test_a_bad_keywords_setting_is_refused_with_the_key_named(tmp_path: Path, value: str) -> None:
    from chromatica_watch.core import config
    from chromatica_watch.core.errors import ConfigError

    with pytest.raises(ConfigError, match="'keywords'"):
        config.load(None, env={}, overrides={"roots": [str(tmp_path)], "keywords": value})
    with pytest.raises(ConfigError, match="'keywords_sidecar'"):
        config.load(None, env={}, overrides={"roots": [str(tmp_path)], "keywords_sidecar": value})
