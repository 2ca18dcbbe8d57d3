"""Configuration: the only module that reads config files and environment overrides.

TOML, every key optional; unknown keys and bad values are refused with the key named. Environment
variables `CHROMATICA_WATCH_<KEY>` override the file (lists are separated by os.pathsep).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from chromatica_watch.core.defaults import DEFAULT_MAX_DIMENSION, DEFAULT_MAX_PIXELS, worker_count
from chromatica_watch.core.errors import ConfigError

APP = "chromatica-watch"
ENV_PREFIX = "CHROMATICA_WATCH_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
WATCHER_MODES = ("auto", "native", "polling")
KEYWORD_MODES = ("off", "xmp")
SIDECAR_NAMINGS = ("name.ext.xmp", "name.xmp")  # as digiKam and darktable name a sidecar; as Lightroom does


def default_roots() -> tuple[str, ...]:
    return (platformdirs.user_pictures_dir(),)


def default_index_dir() -> str:
    return str(Path(platformdirs.user_data_dir(APP)) / "index")


def default_state_dir() -> str:
    return platformdirs.user_state_dir(APP)


def default_thumbnail_dir() -> str:
    # The freedesktop thumbnail cache ($XDG_CACHE_HOME/thumbnails), shared with file managers.
    return str(Path(platformdirs.user_cache_dir()) / "thumbnails")


def default_runtime_dir() -> str:
    # Without XDG_RUNTIME_DIR (cron, su, containers) platformdirs warns on every call and falls back
    # to a per-user folder under /tmp, which is what we want: say nothing on each CLI command.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return platformdirs.user_runtime_dir(APP)


@dataclass(frozen=True)
class Config:
    roots: tuple[str, ...] = field(default_factory=default_roots)
    excludes: tuple[str, ...] = ()
    index_dir: str = field(default_factory=default_index_dir)
    state_dir: str = field(default_factory=default_state_dir)
    runtime_dir: str = field(default_factory=default_runtime_dir)
    settle_seconds: float = 2.0
    batch_size: int = 64
    max_batch_delay: float = 1.0
    checkpoint_interval: float = 60.0
    rescan_interval: float = 3600.0
    rescan_jitter: float = 0.1
    status_interval: float = 5.0
    tombstone_rebuild_ratio: float = 0.10
    compact_layout_from: int = 50_000  # photos from which the index keeps PCA projections (0: never)
    retired_root_grace_days: float = 30.0  # a root removed from `roots` keeps its rows this long, hidden
    workers: int = 0
    max_dimension: int = DEFAULT_MAX_DIMENSION
    max_pixels: int = DEFAULT_MAX_PIXELS
    watcher: str = "auto"
    network_rescan_interval: float = 30.0  # a root on NFS, SMB, FUSE...: stat-only rescans this often (0: never)
    root_watch: tuple[str, ...] = ()  # "PATH=native|rescan|SECONDS": how one root is kept current
    tcp_port: int = 0
    search_candidates: int = 200
    file_timeout: float = 60.0  # a file taking longer to read and decode fails and its worker is replaced
    stall_timeout: float = 300.0  # an indexer stuck this long with work queued is degraded; watchdog pings stop
    web: bool = True  # serve the web app
    web_host: str = "127.0.0.1"
    web_port: int = 8765  # 0: any free port (status shows which)
    web_max_upload_mb: float = 32.0  # largest example image the app accepts
    thumbnail_dir: str = field(default_factory=default_thumbnail_dir)
    thumbnails_while_indexing: bool = True  # with the web app: its grid thumbnails made as photos are indexed
    keywords: str = "off"  # "xmp": each photo's main colours written to its XMP sidecar as it is indexed
    keywords_sidecar: str = "name.ext.xmp"  # the sidecar's name: IMG_1.jpg.xmp, or "name.xmp": IMG_1.xmp
    log_level: str = "INFO"
    log_max_bytes: int = 10_000_000
    log_backups: int = 3

    @property
    def status_path(self) -> Path:
        return Path(self.state_dir) / "status.json"

    @property
    def log_path(self) -> Path:
        return Path(self.state_dir) / "chromatica-watch.log"

    @property
    def socket_path(self) -> Path:
        return Path(self.runtime_dir) / "chromatica-watch.sock"

    @property
    def worker_count(self) -> int:
        return worker_count(self.workers)

    def watch_override(self, root: str) -> str | None:
        """What `root_watch` says of a root: "native", "rescan", seconds as text, or None."""
        for entry in self.root_watch:
            path, _, mode = entry.rpartition("=")
            if root_path(path) == root:
                return mode.strip()
        return None


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
# Value types by key, read from the defaults without calling the platform-dependent factories.
_KINDS: dict[str, type] = {
    name: (tuple if name in ("roots", "excludes", "root_watch") else str) if f.default is dataclasses.MISSING
    else type(f.default)
    for name, f in _FIELDS.items()
}
_PATH_KEYS = ("index_dir", "state_dir", "runtime_dir", "thumbnail_dir")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"config key '{key}' must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _coerce(key: str, value: Any) -> Any:
    kind = _KINDS[key]
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if kind is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config key '{key}' must be a list of strings, got {value!r}")
        return tuple(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        if not math.isfinite(value):  # TOML has nan and inf literals
            raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
    return value


def root_path(folder: str) -> str:
    """A root as the catalog keys it: absolute, `~` expanded, not resolved (a symlinked root stays as named)."""
    return os.path.abspath(os.path.expanduser(folder))


def overlapping_roots(roots: Sequence[tuple[str, str]]) -> str | None:
    """Why these roots (each as named and its real path) cannot all be roots, or None: a folder inside
    another root, or the same folder under two names (through a link), would have each of its photos
    indexed, and found, twice. One file, one row: the config must name the outer folder only."""
    for named, real in roots:
        for other, other_real in roots:
            if named == other:
                continue
            if real == other_real:
                return f"config key 'roots': {named} and {other} are the same folder; keep one of them"
            if real.startswith(other_real.rstrip("/") + "/"):
                how = "" if real == named and other_real == other else f" (by its real path, {real})"
                return (f"config key 'roots': {named} is inside {other}{how}, whose photos it would index a "
                        f"second time; keep only {other}")
    return None


def _check_root_watch(entries: Sequence[str], roots: Sequence[str]) -> None:
    for entry in entries:
        path, sep, mode = entry.rpartition("=")
        mode = mode.strip()
        if not sep or not path:
            raise ConfigError(f"config key 'root_watch': {entry!r} is not PATH=native, PATH=rescan or PATH=SECONDS")
        if root_path(path) not in roots:
            raise ConfigError(f"config key 'root_watch': {path} is not one of the roots")
        if mode not in ("native", "rescan"):
            try:
                seconds = float(mode)
            except ValueError:
                seconds = math.nan
            if not (math.isfinite(seconds) and seconds > 0):
                raise ConfigError(f"config key 'root_watch': {entry!r}: the mode must be native, rescan or a "
                                  "number of seconds above 0")


def _validate(cfg: Config) -> Config:
    if not cfg.roots:
        raise ConfigError("config key 'roots' must name at least one folder")
    for key in ("settle_seconds", "max_batch_delay", "checkpoint_interval", "rescan_interval",
                "status_interval", "file_timeout", "stall_timeout"):
        _positive(key, getattr(cfg, key), allow_zero=key in ("settle_seconds", "max_batch_delay"))
    for key in ("batch_size", "max_dimension", "max_pixels", "search_candidates"):
        _positive(key, getattr(cfg, key))
    _positive("workers", cfg.workers, allow_zero=True)
    _positive("compact_layout_from", cfg.compact_layout_from, allow_zero=True)
    _positive("retired_root_grace_days", cfg.retired_root_grace_days, allow_zero=True)
    _positive("web_max_upload_mb", cfg.web_max_upload_mb)
    if not 0 <= cfg.web_port <= 65535:
        raise ConfigError(f"config key 'web_port' must be a port number (0 for any free port), got {cfg.web_port}")
    if cfg.web_host not in _LOOPBACK:
        # The app trusts whoever holds the token; on a shared network that is not enough.
        raise ConfigError(f"config key 'web_host' must be a loopback address ({', '.join(_LOOPBACK)}), "
                          f"got {cfg.web_host!r}")
    if not 0 <= cfg.rescan_jitter < 1:
        raise ConfigError(f"config key 'rescan_jitter' must be in [0, 1), got {cfg.rescan_jitter!r}")
    if not 0 < cfg.tombstone_rebuild_ratio <= 1:
        raise ConfigError("config key 'tombstone_rebuild_ratio' must be in (0, 1]")
    if cfg.max_dimension < 8:
        raise ConfigError(f"config key 'max_dimension' must be at least 8, got {cfg.max_dimension}")
    if cfg.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"config key 'log_level' must be one of {', '.join(LOG_LEVELS)}, got {cfg.log_level!r}")
    if cfg.watcher not in WATCHER_MODES:
        raise ConfigError(f"config key 'watcher' must be one of {', '.join(WATCHER_MODES)}, got {cfg.watcher!r}")
    if cfg.keywords not in KEYWORD_MODES:
        raise ConfigError(f"config key 'keywords' must be one of {', '.join(KEYWORD_MODES)}, got {cfg.keywords!r}")
    if cfg.keywords_sidecar not in SIDECAR_NAMINGS:
        raise ConfigError(f"config key 'keywords_sidecar' must be one of {', '.join(SIDECAR_NAMINGS)}, "
                          f"got {cfg.keywords_sidecar!r}")
    if not 0 <= cfg.tcp_port <= 65535:
        raise ConfigError(f"config key 'tcp_port' must be 0 (off) or a port number, got {cfg.tcp_port}")
    _positive("network_rescan_interval", cfg.network_rescan_interval, allow_zero=True)
    roots = tuple(dict.fromkeys(root_path(r) for r in cfg.roots))  # the same path twice is one root
    _check_root_watch(cfg.root_watch, roots)
    overlap = overlapping_roots([(r, os.path.realpath(r)) for r in roots])
    if overlap:
        raise ConfigError(overlap)
    paths = {k: os.path.abspath(os.path.expanduser(getattr(cfg, k))) for k in _PATH_KEYS}
    return dataclasses.replace(cfg, roots=roots, log_level=cfg.log_level.upper(), **paths)


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key not in _FIELDS:
            raise ConfigError(f"environment variable {name}: unknown config key '{key}'")
        kind = _KINDS[key]
        try:
            if kind is bool:
                if raw.lower() not in _TRUE + _FALSE:
                    raise ValueError(raw)
                out[key] = raw.lower() in _TRUE
            elif kind is tuple:
                out[key] = [p for p in raw.split(os.pathsep) if p]
            elif kind is int:
                out[key] = int(raw)
            elif kind is float:
                out[key] = float(raw)
                if not math.isfinite(out[key]):
                    raise ConfigError(f"environment variable {name}: bad value {raw!r} "
                                      f"(config key '{key}' must be a finite number)")
            else:
                out[key] = raw
        except ValueError as exc:
            raise ConfigError(f"environment variable {name}: bad value {raw!r}") from exc
    return out


CONFIG_FILE_NAME = "config.toml"


def user_config_file(env: Mapping[str, str] | None = None) -> Path:
    """Where the user's config file goes: $XDG_CONFIG_HOME/chromatica-watch/config.toml, by default
    ~/.config/chromatica-watch/config.toml (platformdirs)."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) / APP if os.path.isabs(xdg) else Path(platformdirs.user_config_dir(APP))
    return base / CONFIG_FILE_NAME


def find_config_file(explicit: Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The config file every command uses, by one rule: `--config FILE`, else $CHROMATICA_WATCH_CONFIG,
    else the user's config file if it exists, else none (the built-in defaults)."""
    env = os.environ if env is None else env
    if explicit is not None:
        return Path(explicit)
    if env.get(ENV_PREFIX + "CONFIG"):
        return Path(env[ENV_PREFIX + "CONFIG"])
    user_file = user_config_file(env)
    return user_file if user_file.is_file() else None


def default_config_text() -> str:
    """The commented default config shipped with the package (`init-config` writes it)."""
    return (Path(__file__).parents[1] / "data" / CONFIG_FILE_NAME).read_text(encoding="utf-8")


def load(path: Path | None = None, env: Mapping[str, str] | None = None,
         overrides: Mapping[str, Any] | None = None) -> Config:
    """The effective config: defaults, then the TOML file (`path`, or the one `find_config_file`
    finds), then environment, then `overrides`."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = find_config_file(path, env)
    if path is not None:
        try:
            with open(path, "rb") as f:
                values.update(tomllib.load(f))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    values.update(_from_env(env))
    values.update(overrides or {})
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown config key '{unknown[0]}'" + (f" in {path}" if path else ""))
    return _validate(Config(**{k: _coerce(k, v) for k, v in values.items()}))
