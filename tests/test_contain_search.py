"""Photos that *have* a colour: containment ('#f58214:0.25', a lone colour), colours to avoid, black and white,
and the folder filter, through a real daemon (socket), the CLI and the Python API, and read-only with none."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chromatica_watch.access.api import search
from chromatica_watch.core import config as config_mod
from tests.conftest import photo, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv

BACKGROUNDS = {"sky": (110, 160, 225), "grass": (70, 130, 50), "street": (110, 110, 115), "night": (15, 20, 40),
               "snow": (240, 244, 250), "sand": (200, 185, 150), "sea": (20, 80, 120), "wall": (180, 60, 50)}
# Each object colour with the look-alikes a colour query alone used to confuse it with.
OBJECTS = {
    "orange": ((0xF5, 0x82, 0x14), "darkorange", ("sky", "grass", "street", "night", "snow"),
               {"gold": (255, 215, 0), "rust": (0xA8, 0x3C, 0x09), "salmon": (250, 128, 114), "tan": (210, 180, 140),
                "brown": (150, 75, 0), "red": (220, 20, 30), "beige": (245, 245, 220), "yellow": (255, 240, 40)}),
    "blue": ((60, 100, 220), "royalblue", ("sand", "grass", "snow", "wall", "street"),
             {"navy": (0, 0, 128), "teal": (0, 128, 128), "lavender": (160, 150, 235), "sky": (135, 206, 235),
              "purple": (128, 0, 128), "steel": (70, 130, 180), "indigo": (75, 0, 130), "cyan": (0, 200, 220)}),
    "green": ((40, 130, 45), "forestgreen", ("sky", "sand", "snow", "street", "night"),
              {"olive": (128, 128, 0), "teal": (0, 128, 128), "lime": (160, 230, 40), "mint": (170, 240, 200),
               "khaki": (189, 183, 107), "jade": (0, 168, 140), "dark": (0, 70, 30), "chartreuse": (127, 255, 0)}),
    "pink": ((245, 100, 175), "hotpink", ("sky", "grass", "night", "street", "sea"),
             {"salmon": (250, 128, 114), "red": (220, 20, 30), "violet": (238, 130, 238), "peach": (255, 218, 185),
              "magenta": (200, 0, 200), "coral": (255, 127, 80), "plum": (142, 69, 133), "rose": (180, 80, 100)}),
}


def scene(rng: np.random.Generator, background: tuple[int, int, int], obj: tuple[int, int, int] | None,
          share: float = 0.25) -> np.ndarray:
    """A textured background with an object of one colour covering `share` of the frame."""
    img = np.empty((120, 160, 3), np.float32)
    img[:] = background
    img += rng.normal(0, 8, img.shape)
    if obj is not None:
        h, w = int(120 * np.sqrt(share)), int(160 * np.sqrt(share))
        y, x = int(rng.integers(0, 120 - h)), int(rng.integers(0, 160 - w))
        img[y:y + h, x:x + w] = obj
        img[y:y + h, x:x + w] += rng.normal(0, 3, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def plain(rng: np.random.Generator, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.clip(np.full((120, 160, 3), rgb, np.float32) + rng.normal(0, 6, (120, 160, 3)), 0, 255).astype(np.uint8)


def toned(rgb: np.ndarray, dark: tuple[int, int, int], light: tuple[int, int, int]) -> np.ndarray:
    grey = rgb.astype(np.float32).mean(axis=2, keepdims=True) / 255.0
    return (np.array(dark) * (1 - grey) + np.array(light) * grey).astype(np.uint8)


def found(env: DaemonEnv, *args: str) -> list[dict[str, object]]:
    proc = env.cli("search", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(23)
    root = tmp_path_factory.mktemp("library")
    for kind, (rgb, _, backgrounds, lookalikes) in OBJECTS.items():
        for n in range(20):
            write_rgb(root / kind / f"{kind}-{n:02d}.png", scene(rng, BACKGROUNDS[backgrounds[n % 5]], rgb))
        for name, other in lookalikes.items():
            for n in range(3):
                write_rgb(root / kind / "plain" / f"{name}-{n}.png", plain(rng, other))
    for name in ("astronaut", "coffee", "chelsea"):
        colour = photo(name)[::4, ::4]
        grey = np.repeat(colour.mean(axis=2, keepdims=True), 3, 2).astype(np.uint8)
        write_rgb(root / "mono" / f"{name}-grey.png", grey)
        write_rgb(root / "mono" / f"{name}-sepia.png", toned(colour, (40, 26, 13), (240, 225, 200)))
        write_rgb(root / "mono" / f"{name}-cyanotype.png", toned(colour, (10, 30, 80), (230, 240, 250)))
        write_rgb(root / "colour" / f"{name}.png", np.ascontiguousarray(colour))
    return root


def test_a_colour_the_photo_contains_ranks_the_photos_holding_it_first(daemon_env: DaemonEnv, library: Path) -> None:
    env = daemon_env
    env.pictures.rmdir()
    env.pictures.symlink_to(library)
    total = sum(1 for p in library.rglob("*.png"))
    env.start()
    wait_until(lambda: env.idle_with(total), timeout=120)

    for kind, (rgb, css, _, _) in OBJECTS.items():
        hex_ = "#{:02x}{:02x}{:02x}".format(*rgb)
        for query in (f"{hex_}:0.25", hex_, css):
            top = found(env, "--color", query, "--in", str(env.pictures / kind), "-k", "20")
            hits = sum(1 for r in top if f"/{kind}/{kind}-" in str(r["path"]))
            assert hits >= 18, (kind, query, [r["path"] for r in top])
        top = found(env, "--color", f"{hex_}:0.25", "--in", str(env.pictures / kind / "plain"), "--in",
                    str(env.pictures / kind / f"{kind}-00.png").rsplit("/", 1)[0], "-k", "3")
        share = top[0]["shares"][0]  # type: ignore[index]
        assert share["hex"] == hex_ and 0.15 <= share["share"] <= 0.3, share  # type: ignore[index]

    table = env.cli("search", "--color", "#f58214:0.25", "--in", str(env.pictures / "orange"), "-k", "1")
    header, first = table.stdout.splitlines()[:2]
    assert table.returncode == 0 and "held" in header and first.split()[1].endswith("%"), table.stdout
    assert "(#f58214 2" in first or "(#f58214 1" in first or "(#f58214 3" in first, first

    # Weights summing to 1 keep the whole-palette meaning: a plain gold photo is the closest to 100% gold.
    whole = found(env, "--color", "#ffd700:1", "-k", "3")
    assert all("/plain/gold-" in str(r["path"]) for r in whole)
    assert whole[0]["shares"] == []

    # Colours to avoid, alone and with a colour to contain.
    no_red = found(env, "--not", "red:0.02", "-k", "200")
    names = [Path(str(r["path"])).name for r in no_red]
    assert names and not any(n.startswith(("red-", "wall")) for n in names)
    assert all(s["share"] <= 0.02 for r in no_red for s in r["shares"])  # type: ignore[union-attr]
    orange_not_night = found(env, "--color", "#f58214:0.2", "--not", "#0f1428", "-k", "20")
    assert orange_not_night and all("/orange/orange-" in str(r["path"]) for r in orange_not_night[:12])
    assert all(r["shares"][1]["share"] <= 0.05 for r in orange_not_night)  # type: ignore[index]

    # Black and white: greyscale and toned photos, none of the colour ones; and the vivid ones apart.
    mono = found(env, "--black-and-white", "-k", "50")
    assert sorted(Path(str(r["path"])).name for r in mono) == sorted(p.name for p in (library / "mono").iterdir())
    assert all(r["monochrome"] is True for r in mono)
    sepia_like = found(env, "--color", "#8b5a2b", "--black-and-white", "-k", "3")
    assert all("/mono/" in str(r["path"]) for r in sepia_like)
    colourful = {Path(str(r["path"])).name for r in found(env, "--colorful", "-k", "400")}
    assert not colourful & {p.name for p in (library / "mono").iterdir()}

    # A folder, and a glob on folders; a folder under no root is one line.
    blue_only = found(env, "--color", "#f58214", "--in", str(env.pictures / "blue"), "-k", "30")
    assert blue_only and all(f"{env.pictures}/blue/" in str(r["path"]) for r in blue_only)
    plains = found(env, "--in", "*/plain", "--color", "#ffd700", "-k", "5")
    assert plains and all("/plain/" in str(r["path"]) for r in plains)
    through_link = found(env, "--color", "#f58214", "--in", str(library / "blue"), "-k", "5")  # the root's real path
    assert [r["path"] for r in through_link] == [r["path"] for r in blue_only[:5]]
    bad = env.cli("search", "--color", "red", "--in", "/nowhere/at/all")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a folder under a watched root" in bad.stderr

    # The Python API asks the daemon the same question.
    cfg = config_mod.load(env.config)
    api = search(colors="#f58214:0.25", k=20, config=cfg)
    assert [m.path for m in api] == [r["path"] for r in found(env, "--color", "#f58214:0.25", "-k", "20")]

    # With the daemon stopped, the index dir is searched read-only: the same answers.
    with_daemon = found(env, "--color", "#2ea03c:0.25", "--not", "red", "-k", "10")
    assert env.stop() == 0
    assert found(env, "--color", "#2ea03c:0.25", "--not", "red", "-k", "10") == with_daemon


@pytest.mark.parametrize(("args", "message"), [
    (("--taken-after", "yesterday"), "bad date for --taken-after: 'yesterday'"),
    (("--taken-after", "2024-13-01"), "bad date for --taken-after: '2024-13-01'"),
    (("--taken-after", "2024-09", "--taken-before", "2024-06"), "is not before --taken-before"),
    (("--not", "red:1.5"), "bad share in --not"),
    (("--color", "#f00", "--not", "nocolour"), "bad color 'nocolour'"),
])
def test_bad_search_input_is_one_line(daemon_env: DaemonEnv, args: tuple[str, ...], message: str) -> None:
    proc = daemon_env.cli("search", *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
