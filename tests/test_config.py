"""The shipped commented config matches `Config`, and `config.load` refuses what it should."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest

from chromatica_watch.core import config
from chromatica_watch.core.config import Config
from chromatica_watch.core.errors import ConfigError

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "chromatica-watch.toml"
FIELDS = [f.name for f in dataclasses.fields(Config)]
# Defaults computed by platformdirs: the file shows the Linux form, checked separately below.
PLATFORM_KEYS = {"roots", "index_dir", "state_dir", "runtime_dir", "thumbnail_dir"}
SETTING_LINE = re.compile(r"^# ?([a-z_]+) = (.+)$")


def uncommented() -> tuple[str, list[str]]:
    """The shipped file with every `# key = value` line uncommented, and the keys in file order."""
    lines, keys = [], []
    for line in SHIPPED.read_text(encoding="utf-8").splitlines():
        m = SETTING_LINE.match(line)
        if m:
            keys.append(m.group(1))
            line = f"{m.group(1)} = {m.group(2)}"
        lines.append(line)
    return "\n".join(lines) + "\n", keys


def shipped_values() -> dict[str, object]:
    return tomllib.loads(uncommented()[0])


def test_shipped_config_names_every_key_exactly_once() -> None:
    _, keys = uncommented()
    assert sorted(keys) == sorted(FIELDS), (
        f"missing: {sorted(set(FIELDS) - set(keys))}, unknown: {sorted(set(keys) - set(FIELDS))}, "
        f"repeated: {sorted({k for k in keys if keys.count(k) > 1})}")


def test_shipped_config_is_all_comments() -> None:
    """Used as is, the file changes nothing: every setting is commented out."""
    assert tomllib.loads(SHIPPED.read_text(encoding="utf-8")) == {}


def test_every_key_has_a_comment_above_it() -> None:
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        m = SETTING_LINE.match(line)
        if m:
            above = lines[i - 1]
            assert above.startswith("# ") and not SETTING_LINE.match(above), f"no comment above {m.group(1)}"


def test_commented_defaults_equal_the_real_defaults() -> None:
    values = shipped_values()
    default = Config()
    for key in FIELDS:
        if key in PLATFORM_KEYS:
            continue
        expected = getattr(default, key)
        got = values[key]
        if isinstance(expected, tuple):
            got = tuple(got)  # type: ignore[arg-type]
        assert got == expected and type(got) is type(expected), (
            f"{key}: file says {got!r}, default {expected!r}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the file shows the Linux defaults")
def test_commented_platform_defaults_are_the_linux_ones(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a plain home (no XDG overrides), ~ in the file expands to what platformdirs computes."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_PICTURES_DIR"):
        monkeypatch.delenv(var, raising=False)
    values = shipped_values()
    assert [os.path.expanduser(r) for r in values["roots"]] == list(config.default_roots())  # type: ignore[attr-defined]
    assert os.path.expanduser(str(values["index_dir"])) == config.default_index_dir()
    assert os.path.expanduser(str(values["state_dir"])) == config.default_state_dir()
    assert os.path.expanduser(str(values["thumbnail_dir"])) == config.default_thumbnail_dir()
    # The runtime dir depends on $XDG_RUNTIME_DIR and the uid: the file shows the usual form.
    assert re.fullmatch(r"/run/user/\d+/chromatica-watch", str(values["runtime_dir"]))


def test_load_accepts_the_uncommented_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(uncommented()[0], encoding="utf-8")
    cfg = config.load(path, env={})
    default = Config()
    for key in FIELDS:
        if key not in PLATFORM_KEYS:
            assert getattr(cfg, key) == getattr(default, key), key
    assert cfg.roots == (os.path.expanduser("~/Pictures"),)
    assert cfg.index_dir == os.path.expanduser("~/.local/share/chromatica-watch/index")


def test_load_with_no_file_gives_the_defaults() -> None:
    cfg = config.load(None, env={})
    default = Config()
    for key in FIELDS:
        if key not in PLATFORM_KEYS:
            assert getattr(cfg, key) == getattr(default, key), key


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, 'roots = ["/photos"]\nsettle_secs = 1.0\n')
    with pytest.raises(ConfigError, match="settle_secs"):
        config.load(path, env={})


def test_unknown_environment_key_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="CHROMATICA_WATCH_SETTLE_SECS"):
        config.load(None, env={"CHROMATICA_WATCH_SETTLE_SECS": "1"})


@pytest.mark.parametrize(("text", "key"), [
    ("settle_seconds = -1.0", "settle_seconds"),
    ('log_level = "LOUD"', "log_level"),
    ("batch_size = 0", "batch_size"),
    ('roots = "/photos"\nbatch_size = 1.5', "batch_size"),
    ('roots = ["/photos", 3]', "roots"),
    ("roots = 7", "roots"),
    ("roots = []", "roots"),
    ('watcher = "magic"', "watcher"),
    ("tcp_port = 70000", "tcp_port"),
    ("rescan_jitter = 1.0", "rescan_jitter"),
    ('workers = "many"', "workers"),
    ("max_dimension = 4", "max_dimension"),
])
def test_bad_values_are_refused_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        config.load(write(tmp_path, text + "\n"), env={})


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "roots = [\n"), env={})
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml", env={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'roots = ["/photos"]\nsettle_seconds = 3.0\nbatch_size = 10\n')
    cfg = config.load(path, env={"CHROMATICA_WATCH_SETTLE_SECONDS": "0.5"})
    assert cfg.settle_seconds == 0.5
    assert cfg.batch_size == 10
    assert "CHROMATICA_WATCH_SETTLE_SECONDS" not in os.environ


def test_environment_lists_and_config_path(tmp_path: Path) -> None:
    path = write(tmp_path, "batch_size = 7\n")
    env = {"CHROMATICA_WATCH_CONFIG": str(path),
           "CHROMATICA_WATCH_ROOTS": os.pathsep.join(["/a", "/b"]),
           "CHROMATICA_WATCH_LOG_LEVEL": "debug"}
    cfg = config.load(None, env=env)
    assert cfg.batch_size == 7
    assert cfg.roots == ("/a", "/b")
    assert cfg.log_level == "DEBUG"


def test_bad_environment_value_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="CHROMATICA_WATCH_BATCH_SIZE"):
        config.load(None, env={"CHROMATICA_WATCH_BATCH_SIZE": "lots"})


def test_paths_are_expanded_to_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, 'roots = ["~/pics", "rel/photos"]\nindex_dir = "idx"\nstate_dir = "~/st"\n'
                           'runtime_dir = "./run/../run2"\n')
    cfg = config.load(path, env={})
    home = os.path.expanduser("~")
    assert cfg.roots == (os.path.join(home, "pics"), str(tmp_path / "rel" / "photos"))
    assert cfg.index_dir == str(tmp_path / "idx")
    assert cfg.state_dir == os.path.join(home, "st")
    assert cfg.runtime_dir == str(tmp_path / "run2")
    assert all(os.path.isabs(p) for p in (*cfg.roots, cfg.index_dir, cfg.state_dir, cfg.runtime_dir))


def test_overrides_win_and_are_validated(tmp_path: Path) -> None:
    path = write(tmp_path, "batch_size = 10\n")
    cfg = config.load(path, env={"CHROMATICA_WATCH_BATCH_SIZE": "20"}, overrides={"batch_size": 30})
    assert cfg.batch_size == 30
    with pytest.raises(ConfigError, match="batch_size"):
        config.load(path, env={}, overrides={"batch_size": -1})


FLOAT_KEYS = [f.name for f in dataclasses.fields(Config) if isinstance(f.default, float)]


def test_there_are_float_keys_to_check() -> None:
    assert {"settle_seconds", "rescan_jitter", "tombstone_rebuild_ratio"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", "+nan"])
def test_non_finite_numbers_in_the_file_are_refused_naming_the_key(tmp_path: Path, key: str,
                                                                    literal: str) -> None:
    path = write(tmp_path, f'roots = ["/photos"]\n{key} = {literal}\n')
    with pytest.raises(ConfigError, match=rf"^config key '{key}' must be a finite number, got "):
        config.load(path, env={})


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-Infinity"])
def test_non_finite_numbers_in_the_environment_are_refused_naming_the_variable(key: str, raw: str) -> None:
    name = f"CHROMATICA_WATCH_{key.upper()}"
    with pytest.raises(ConfigError) as info:
        config.load(None, env={name: raw})
    message = str(info.value)
    assert name in message and f"'{key}' must be a finite number" in message and repr(raw) in message


def test_finite_floats_still_load(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, "settle_seconds = 0\nrescan_interval = 1e6\n"),
                      env={"CHROMATICA_WATCH_MAX_BATCH_DELAY": "2.5"})
    assert (cfg.settle_seconds, cfg.rescan_interval, cfg.max_batch_delay) == (0.0, 1e6, 2.5)
    assert type(cfg.settle_seconds) is float


def test_every_command_finds_the_config_file_by_one_rule(tmp_path: Path) -> None:
    from chromatica_watch.core.config import find_config_file, user_config_file

    xdg = tmp_path / "xdg"
    env = {"XDG_CONFIG_HOME": str(xdg)}
    user_file = user_config_file(env)
    assert user_file == xdg / "chromatica-watch" / "config.toml"
    assert find_config_file(None, env) is None  # no file anywhere: the built-in defaults
    assert config.load(None, env=env).settle_seconds == 2.0
    user_file.parent.mkdir(parents=True)
    user_file.write_text("settle_seconds = 4.0\n")
    assert find_config_file(None, env) == user_file
    assert config.load(None, env=env).settle_seconds == 4.0
    other = tmp_path / "other.toml"
    other.write_text("settle_seconds = 5.0\n")
    with_var = {**env, "CHROMATICA_WATCH_CONFIG": str(other)}
    assert config.load(None, env=with_var).settle_seconds == 5.0  # the variable beats the user's file
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("settle_seconds = 6.0\n")
    assert config.load(explicit, env=with_var).settle_seconds == 6.0  # --config beats both
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "missing.toml", env=env)


def test_the_packaged_default_config_is_the_shipped_one() -> None:
    assert config.default_config_text() == SHIPPED.read_text()


def test_overlapping_roots_are_told_with_plain_values() -> None:
    assert config.overlapping_roots([("/p", "/p"), ("/q", "/q"), ("/pq", "/pq")]) is None  # /pq is not in /p
    for roots in ([("/p", "/p"), ("/p/2024", "/p/2024")], [("/p/2024", "/p/2024"), ("/p", "/p")]):
        said = config.overlapping_roots(roots)
        assert said is not None and "/p/2024 is inside /p" in said and "keep only /p" in said
    said = config.overlapping_roots([("/p", "/p"), ("/link", "/p/2024")])
    assert said is not None and "/link is inside /p (by its real path, /p/2024)" in said
    said = config.overlapping_roots([("/p", "/p"), ("/alias", "/p")])
    assert said is not None and "/p and /alias are the same folder" in said
    said = config.overlapping_roots([("/", "/"), ("/p", "/p")])
    assert said is not None and "/p is inside /" in said


@pytest.mark.parametrize("inner_first", [False, True])
def test_nested_roots_are_refused_in_one_line_naming_both(tmp_path: Path, inner_first: bool) -> None:
    outer, inner = tmp_path / "Pictures", tmp_path / "Pictures" / "2024"
    inner.mkdir(parents=True)
    roots = [str(inner), str(outer)] if inner_first else [str(outer), str(inner)]
    (tmp_path / "c.toml").write_text(f"roots = {roots!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError) as caught:
        config.load(tmp_path / "c.toml")
    assert f"{inner} is inside {outer}" in str(caught.value) and "\n" not in str(caught.value)


def test_a_root_reached_through_a_link_into_another_is_refused(tmp_path: Path) -> None:
    (tmp_path / "Pictures" / "2024").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "Pictures" / "2024")
    (tmp_path / "same").symlink_to(tmp_path / "Pictures")
    for other in ("link", "same"):
        (tmp_path / "c.toml").write_text(f'roots = ["{tmp_path / "Pictures"}", "{tmp_path / other}"]\n')
        with pytest.raises(ConfigError, match=r"inside|same folder"):
            config.load(tmp_path / "c.toml")
    (tmp_path / "c.toml").write_text(f'roots = ["{tmp_path / "Pictures"}", "{tmp_path / "Pictures"}/"]\n')
    assert config.load(tmp_path / "c.toml").roots == (str(tmp_path / "Pictures"),)  # one folder named twice
