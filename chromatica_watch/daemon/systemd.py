"""Running under systemd: sd_notify messages, the unit files, and `install-service`.

Stdlib only. The unit templates live here and nowhere else: the reference files under `systemd/` in
the source tree are exactly what `render_user_unit` / `render_system_unit` produce for
ExecStart=/usr/bin/chromatica-watch (a test compares them; `python tools/write_units.py`
rewrites them).
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from chromatica_watch.core.errors import ChromaticaError, UsageError
from chromatica_watch.core.fsutil import atomic_write

logger = logging.getLogger(__name__)

USER_UNIT_NAME = "chromatica-watch.service"
SYSTEM_UNIT_NAME = "chromatica-watch@.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
REFERENCE_EXEC_START = "/usr/bin/chromatica-watch"
_EXECUTABLE = "chromatica-watch"
# What systemd accepts in an instance name without escaping, and what a sane user name looks like.
_INSTANCE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")


# -- sd_notify ------------------------------------------------------------------------------------


class SystemdNotifier:
    """Sends sd_notify(3) datagrams to $NOTIFY_SOCKET; every method is a no-op when it is unset.

    A failed send is logged once and never raised: the daemon must not die because systemd went away.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._env = dict(env)
        raw = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if raw.startswith("@"):
            self._address = b"\0" + raw[1:].encode()  # abstract namespace
        elif raw.startswith("/"):
            self._address = raw
        elif raw:
            logger.warning("NOTIFY_SOCKET=%r is not a supported address; not notifying systemd", raw)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` fields as one datagram; True when it was sent."""
        if self._address is None:
            return False
        payload = "\n".join(fields).encode("utf-8", "surrogateescape")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning("cannot notify systemd via %s: %s", self._env.get("NOTIFY_SOCKET"), exc)
            return False
        return True

    def ready(self) -> bool:
        return self.notify("READY=1")

    def status(self, text: str) -> bool:
        return self.notify("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        # MONOTONIC_USEC makes this valid for Type=notify-reload too (systemd >= 253); send ready()
        # once the new config is in effect.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more before systemd gives up on a slow start or stop (EXTEND_TIMEOUT_USEC)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(1, int(seconds * 1e6))}")

    def watchdog_interval(self) -> float | None:
        """How often to send WATCHDOG=1: half of WatchdogSec, in seconds; None when there is no watchdog."""
        try:
            usec = int(self._env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        if usec <= 0:
            return None
        pid = self._env.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):
            return None  # meant for another process (we were forked or exec'd by the real main)
        return usec / 2 / 1e6


# -- unit files -----------------------------------------------------------------------------------

_HEADER = """\
# chromatica-watch: keeps a CIE Lab color-search index of a photo folder live.
# Written by `{command}` (template: chromatica_watch/service.py).
# Local changes go into a drop-in: `{edit}`.
"""

_POLITE = """\
# Polite by default: photos are indexed when the machine has nothing better to do.
Nice=10
IOSchedulingClass=idle
CPUWeight=20
"""

_NOTIFY = """\
Type=notify
NotifyAccess=main
{exec_start}
ExecReload=/bin/kill -HUP $MAINPID
WatchdogSec=60
# The first full scan runs before READY=1; a large or network folder may take a while.
TimeoutStartSec=15min
# SIGTERM to the main process only: it stops the workers itself, checkpoints and exits 0.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=30
Restart=on-failure
RestartSec=5
# Exit 2 is a bad config: restarting cannot fix it (a full disk or a damaged catalog never exits).
RestartPreventExitStatus=2
SyslogIdentifier=chromatica-watch
"""

_START_LIMIT = """\
StartLimitIntervalSec=300
StartLimitBurst=5
"""

_USER_TEMPLATE = (
    _HEADER.format(command="chromatica-watch install-service",
                   edit="systemctl --user edit chromatica-watch.service")
    + """\
# Enable it with:
#   systemctl --user daemon-reload
#   systemctl --user enable --now chromatica-watch.service
# To keep it running while you are logged out: loginctl enable-linger $USER

[Unit]
Description=chromatica-watch: live color-search index of your photos
"""
    + _START_LIMIT
    + """
[Service]
"""
    + _NOTIFY
    + _POLITE
    + """
[Install]
WantedBy=default.target
"""
)

_SYSTEM_TEMPLATE = (
    _HEADER.format(command="chromatica-watch install-service --system",
                   edit="systemctl edit chromatica-watch@USER.service")
    + """\
# One instance per user whose photos are indexed (instance name = user name); enable it with:
#   systemctl daemon-reload
#   systemctl enable --now chromatica-watch@USER.service
# The index and status live in /var/lib/chromatica-watch/USER, the socket in /run/chromatica-watch/USER.
# Point `chromatica-watch status/search` there with the same CHROMATICA_WATCH_* variables.

[Unit]
Description=chromatica-watch for %i: live color-search index of a photo folder
After=local-fs.target remote-fs.target network.target
"""
    + _START_LIMIT
    + """
[Service]
User=%i
"""
    + _NOTIFY
    + """\
Environment=CHROMATICA_WATCH_ROOTS=/home/%i/Pictures
Environment=CHROMATICA_WATCH_INDEX_DIR=/var/lib/chromatica-watch/%i/index
Environment=CHROMATICA_WATCH_STATE_DIR=/var/lib/chromatica-watch/%i/state
Environment=CHROMATICA_WATCH_RUNTIME_DIR=/run/chromatica-watch/%i
StateDirectory=chromatica-watch/%i
RuntimeDirectory=chromatica-watch/%i
UMask=0027
"""
    + _POLITE
    + """\
# Sandbox: photos are only read; only the state and runtime directories are writable.
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths=/var/lib/chromatica-watch/%i
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# Not MemoryDenyWriteExecute=: native libraries (ctypes/libffi closures, BLAS) may need W+X pages.

[Install]
WantedBy=multi-user.target
"""
)

_EXEC_PLACEHOLDER = "{exec_start}"


def _exec_word(word: str) -> str:
    """One word of an Exec*= line: specifiers (%) and variables ($) escaped, quoted when needed."""
    if not word or any(c in word for c in "\n\r\0"):
        raise UsageError(f"cannot put {word!r} into a systemd command line")
    word = word.replace("%", "%%").replace("$", "$$")
    if word == ";" or any(c in word for c in " \t\"'\\;"):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def exec_line(argv: Sequence[str]) -> str:
    """A systemd command line for `argv` (absolute program path first)."""
    if not argv or not os.path.isabs(argv[0]):
        raise UsageError(f"the service needs an absolute program path, got {list(argv)!r}")
    return " ".join(_exec_word(w) for w in argv)


def _argv(exec_start: str | Sequence[str]) -> list[str]:
    # A str is one program path (spaces and all); a sequence is an argv prefix such as
    # [sys.executable, "-m", "chromatica_watch"].
    return [exec_start] if isinstance(exec_start, str) else list(exec_start)


def _render(template: str, exec_start: str | Sequence[str],
            config_path: str | os.PathLike[str] | None) -> str:
    argv = [*_argv(exec_start), "run"]
    if config_path is not None:
        argv += ["--config", os.path.abspath(os.fspath(config_path))]
    return template.replace(_EXEC_PLACEHOLDER, "ExecStart=" + exec_line(argv))


def render_user_unit(exec_start: str | Sequence[str],
                     config_path: str | os.PathLike[str] | None = None) -> str:
    """The user unit (`systemctl --user`) running `<exec_start> run [--config PATH]`."""
    return _render(_USER_TEMPLATE, exec_start, config_path)


def render_system_unit(exec_start: str | Sequence[str],
                       config_path: str | os.PathLike[str] | None = None) -> str:
    """The system template unit chromatica-watch@.service (instance = user name)."""
    return _render(_SYSTEM_TEMPLATE, exec_start, config_path)


def find_exec_start(argv0: str | None = None, executable: str | None = None) -> list[str]:
    """How systemd should start this installation: the `chromatica-watch` console script we were run
    as, else the one next to this interpreter, else on PATH, else `python -m chromatica_watch`.

    Symlinks are not resolved: a venv's python is a symlink, and resolving it leaves the venv.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    candidates = []
    if argv0 and os.path.basename(argv0) == _EXECUTABLE:
        candidates.append(os.path.abspath(argv0))
    if executable:
        candidates.append(os.path.join(os.path.dirname(os.path.abspath(executable)), _EXECUTABLE))
    found = shutil.which(_EXECUTABLE)
    if found:
        candidates.append(os.path.abspath(found))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return [path]
    if not executable:
        raise ChromaticaError("cannot find the chromatica-watch program or the Python interpreter")
    return [os.path.abspath(executable), "-m", "chromatica_watch"]


# -- install-service ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallPlan:
    path: Path  # where the unit file goes
    unit_text: str
    commands: tuple[str, ...]  # systemctl lines for the user to run next
    unit_name: str  # what to enable: chromatica-watch.service or chromatica-watch@USER.service
    written: bool  # False for a dry run


def user_unit_dir(home: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Where systemd's user manager looks for the user's own units: $XDG_CONFIG_HOME/systemd/user."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CONFIG_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "systemd" / "user"
    return (Path.home() if home is None else home) / ".config" / "systemd" / "user"


def _instance_user(user: str | None, env: Mapping[str, str]) -> str:
    if user is None:
        sudo_user = env.get("SUDO_USER", "")
        user = sudo_user if os.geteuid() == 0 and sudo_user else pwd.getpwuid(os.getuid()).pw_name
        if user == "root":
            raise UsageError("refusing to install the system unit for root: run it with sudo from the "
                             "account whose photos should be indexed, or pass --user NAME")
    if not _INSTANCE_RE.match(user):
        raise UsageError(f"{user!r} cannot be used as a systemd instance name")
    try:
        pwd.getpwnam(user)
    except KeyError as exc:
        raise UsageError(f"no such user: {user}") from exc
    return user


def install_service(system: bool = False, dry_run: bool = False, *,
                    exec_start: str | Sequence[str] | None = None,
                    config_path: str | os.PathLike[str] | None = None,
                    user: str | None = None,
                    home: Path | None = None,
                    unit_dir: Path | None = None,
                    env: Mapping[str, str] | None = None) -> InstallPlan:
    """Write the user unit (or, with `system`, the system template unit) and say what to run next.

    `unit_dir` overrides the target directory (default ~/.config/systemd/user or /etc/systemd/system);
    `home` and `env` only serve to find the user default. With `dry_run` nothing is written.
    """
    env = os.environ if env is None else env
    argv = find_exec_start() if exec_start is None else _argv(exec_start)
    if config_path is not None and not os.path.isfile(config_path):
        raise UsageError(f"config file {config_path} not found")
    if system:
        instance = _instance_user(user, env)
        unit_name = f"chromatica-watch@{instance}.service"
        path = (SYSTEM_UNIT_DIR if unit_dir is None else unit_dir) / SYSTEM_UNIT_NAME
        text = render_system_unit(argv, config_path)
        commands: tuple[str, ...] = ("systemctl daemon-reload", f"systemctl enable --now {unit_name}")
    else:
        unit_name = USER_UNIT_NAME
        path = (user_unit_dir(home, env) if unit_dir is None else unit_dir) / USER_UNIT_NAME
        text = render_user_unit(argv, config_path)
        commands = ("systemctl --user daemon-reload", f"systemctl --user enable --now {unit_name}")
    if not dry_run:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text.encode())
        except OSError as exc:
            hint = "; run it with sudo, or use --dry-run to see the unit" if system else ""
            raise ChromaticaError(f"cannot write {path}: {exc.strerror or exc}{hint}") from exc
        logger.info("wrote %s", path)
    return InstallPlan(path=path, unit_text=text, commands=commands, unit_name=unit_name,
                       written=not dry_run)


def write_reference_units(directory: Path) -> list[Path]:
    """(Re)write the reference unit files shipped in the source tree's systemd/ folder."""
    out = []
    for name, text in ((USER_UNIT_NAME, render_user_unit(REFERENCE_EXEC_START)),
                       (SYSTEM_UNIT_NAME, render_system_unit(REFERENCE_EXEC_START))):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        out.append(path)
    return out

