"""systemd integration: sd_notify over a real socket, unit files that systemd accepts, install-service."""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chromatica_watch.core.errors import ChromaticaError, UsageError
from chromatica_watch.daemon import systemd as service
from chromatica_watch.daemon.systemd import (
    InstallPlan,
    SystemdNotifier,
    exec_line,
    find_exec_start,
    install_service,
    render_system_unit,
    render_user_unit,
)

REPO = Path(__file__).resolve().parent.parent
SYSTEMD_DIR = REPO / "systemd"
VENV_SCRIPT = Path(sys.executable).parent / "chromatica-watch"  # not resolved: that would leave the venv
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
def needs_systemd_analyze(test: Callable[..., None]) -> Callable[..., None]:
    """The unit files are verified by systemd itself: a machine without it fails the test (CI installs
    Debian's systemd package in .ci/run), it does not skip it."""
    @functools.wraps(test)
    def verified(*args: object, **kwargs: object) -> None:
        assert SYSTEMD_ANALYZE is not None, "systemd-analyze not installed (apt-get install systemd)"
        test(*args, **kwargs)
    return verified
ME = pwd.getpwuid(os.getuid()).pw_name


def real_exec_start() -> list[str]:
    if VENV_SCRIPT.is_file():
        return [str(VENV_SCRIPT)]
    return [sys.executable, "-m", "chromatica_watch"]


def unit_settings(text: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (ignoring sections, comments)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


# -- sd_notify --------------------------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_notifier_sends_datagrams(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    n = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready()
    assert receive(sock) == "READY=1"
    assert n.status("indexing: 12 indexed,\n3 queued")
    assert receive(sock) == "STATUS=indexing: 12 indexed, 3 queued"
    assert n.watchdog()
    assert receive(sock) == "WATCHDOG=1"
    assert n.stopping()
    assert receive(sock) == "STOPPING=1"
    assert n.reloading()
    fields = receive(sock).split("\n")
    assert fields[0] == "RELOADING=1" and fields[1].startswith("MONOTONIC_USEC=")
    assert int(fields[1].split("=")[1]) > 0
    assert n.extend_timeout(30)
    assert receive(sock) == "EXTEND_TIMEOUT_USEC=30000000"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux-only")
def test_notifier_abstract_socket() -> None:
    name = f"chromatica-watch-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        n = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert receive(sock) == "READY=1"


def test_notifier_is_a_no_op_without_systemd() -> None:
    n = SystemdNotifier({})
    assert not n.enabled
    assert not n.ready() and not n.status("x") and not n.watchdog() and not n.stopping()
    assert n.watchdog_interval() is None


def test_notifier_survives_a_vanished_socket(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not n.ready()
    assert not n.watchdog()
    assert sum("cannot notify systemd" in r.getMessage() for r in caplog.records) == 1


def test_notifier_reads_the_environment_by_default(monkeypatch: pytest.MonkeyPatch,
                                                   notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert SystemdNotifier().ready()
    assert receive(sock) == "READY=1"


def test_watchdog_interval() -> None:
    assert SystemdNotifier({"WATCHDOG_USEC": "60000000"}).watchdog_interval() == 30.0
    pid = str(os.getpid())
    assert SystemdNotifier({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": pid}).watchdog_interval() == 5.0
    assert SystemdNotifier({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}).watchdog_interval() is None
    assert SystemdNotifier({"WATCHDOG_USEC": "0"}).watchdog_interval() is None
    assert SystemdNotifier({"WATCHDOG_USEC": "soon"}).watchdog_interval() is None


# -- unit files ---------------------------------------------------------------------------------------


def test_shipped_unit_files_are_what_render_produces() -> None:
    hint = "regenerate with: .venv/bin/python tools/write_units.py"
    shipped_user = (SYSTEMD_DIR / "chromatica-watch.service").read_text(encoding="utf-8")
    shipped_system = (SYSTEMD_DIR / "chromatica-watch@.service").read_text(encoding="utf-8")
    assert shipped_user == render_user_unit("/usr/bin/chromatica-watch"), hint
    assert shipped_system == render_system_unit("/usr/bin/chromatica-watch"), hint


def test_user_unit_settings() -> None:
    s = unit_settings(render_user_unit("/opt/cw/bin/chromatica-watch", None))
    assert s["ExecStart"] == ["/opt/cw/bin/chromatica-watch run"]
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["WatchdogSec"] == ["60"]
    assert s["Restart"] == ["on-failure"] and s["RestartSec"] == ["5"]
    assert "StartLimitIntervalSec" in s and "StartLimitBurst" in s
    assert s["Nice"] == ["10"] and s["IOSchedulingClass"] == ["idle"] and s["CPUWeight"] == ["20"]
    assert s["TimeoutStopSec"] == ["30"] and s["KillSignal"] == ["SIGTERM"]
    assert s["WantedBy"] == ["default.target"]
    assert "User" not in s


def test_system_unit_settings() -> None:
    s = unit_settings(render_system_unit("/usr/bin/chromatica-watch"))
    assert s["User"] == ["%i"]
    assert s["Type"] == ["notify"] and s["WatchdogSec"] == ["60"] and s["Nice"] == ["10"]
    env = dict(v.split("=", 1) for v in s["Environment"])
    assert env["CHROMATICA_WATCH_ROOTS"] == "/home/%i/Pictures"
    for key in ("INDEX_DIR", "STATE_DIR"):
        assert env[f"CHROMATICA_WATCH_{key}"].startswith("/var/lib/chromatica-watch/%i/")
    assert env["CHROMATICA_WATCH_RUNTIME_DIR"] == "/run/chromatica-watch/%i"
    assert s["StateDirectory"] == ["chromatica-watch/%i"]
    assert s["RuntimeDirectory"] == ["chromatica-watch/%i"]
    assert s["ReadWritePaths"] == ["/var/lib/chromatica-watch/%i"]
    assert s["ProtectSystem"] == ["strict"] and s["ProtectHome"] == ["read-only"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectKernelTunables", "ProtectControlGroups",
                "LockPersonality"):
        assert s[key] == ["yes"], key
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert s["WantedBy"] == ["multi-user.target"]


def test_exec_start_quoting_and_config() -> None:
    text = render_user_unit("/opt/my photos/bin/chromatica-watch", "/etc/cw 100%.toml")
    assert unit_settings(text)["ExecStart"] == [
        '"/opt/my photos/bin/chromatica-watch" run --config "/etc/cw 100%%.toml"']
    argv = [sys.executable, "-m", "chromatica_watch"]
    assert unit_settings(render_user_unit(argv))["ExecStart"] == [
        f"{exec_line(argv)} run"]
    assert exec_line(["/bin/echo", "$HOME"]) == "/bin/echo $$HOME"
    assert exec_line(["/bin/echo", 'a"b\\c']) == '/bin/echo "a\\"b\\\\c"'
    with pytest.raises(UsageError):
        exec_line(["chromatica-watch"])
    with pytest.raises(UsageError):
        exec_line(["/bin/echo", "two\nlines"])


def test_find_exec_start(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "chromatica-watch"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    python = tmp_path / "bin" / "python"  # a venv python is a symlink; it must not be resolved
    python.symlink_to(sys.executable)
    assert find_exec_start(argv0=str(script), executable="/nonexistent/python") == [str(script)]
    assert find_exec_start(argv0="-c", executable=str(python)) == [str(script)]
    script.unlink()
    found = find_exec_start(argv0="-c", executable=str(python))
    assert found == [shutil.which("chromatica-watch")] or found == [str(python), "-m", "chromatica_watch"]
    # this test run (argv[0] is pytest): the console script next to the venv's python
    if VENV_SCRIPT.is_file():
        assert find_exec_start() == [str(VENV_SCRIPT)]


def verify(unit: Path, *extra: str, env: dict[str, str] | None = None) -> None:
    assert SYSTEMD_ANALYZE is not None
    proc = subprocess.run([SYSTEMD_ANALYZE, *extra, "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60, env=env)
    # verify exits 0 on mere parse warnings ("Unknown key ..., ignoring"), so demand silence too.
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and not output, f"systemd-analyze verify {unit.name}:\n{output}"


@needs_systemd_analyze
def test_user_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = tmp_path / "chromatica-watch.service"
    unit.write_text(render_user_unit(real_exec_start(), None))
    verify(unit)
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    verify(unit, "--user", env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})


@needs_systemd_analyze
def test_user_unit_with_config_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = tmp_path / "chromatica-watch.service"
    unit.write_text(render_user_unit(real_exec_start(), str(tmp_path / "my config.toml")))
    verify(unit)


@needs_systemd_analyze
def test_system_template_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # An instance of the template: copy it under an instance name (%i = root, a user that exists).
    unit = tmp_path / "chromatica-watch@root.service"
    unit.write_text(render_system_unit(real_exec_start()))
    verify(unit)


@needs_systemd_analyze
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above is not vacuous: a typo in a directive is reported."""
    unit = tmp_path / "chromatica-watch.service"
    unit.write_text(render_user_unit(real_exec_start()).replace("WatchdogSec=", "WatchdogSex="))
    with pytest.raises(AssertionError, match="WatchdogSex"):
        verify(unit)


# -- install-service ------------------------------------------------------------------------------


def test_install_user_dry_run_writes_nothing(tmp_path: Path) -> None:
    plan = install_service(system=False, dry_run=True, home=tmp_path, env={})
    assert isinstance(plan, InstallPlan)
    assert plan.path == tmp_path / ".config" / "systemd" / "user" / "chromatica-watch.service"
    assert not plan.written
    assert list(tmp_path.iterdir()) == []
    assert plan.commands == ("systemctl --user daemon-reload",
                             "systemctl --user enable --now chromatica-watch.service")
    assert unit_settings(plan.unit_text)["ExecStart"] == [exec_line([*find_exec_start(), "run"])]


def test_install_user_writes_the_unit(tmp_path: Path) -> None:
    config_file = tmp_path / "cw.toml"
    config_file.write_text("")
    plan = install_service(system=False, dry_run=False, home=tmp_path, env={},
                           exec_start=str(VENV_SCRIPT), config_path=config_file)
    assert plan.written
    assert plan.path == tmp_path / ".config" / "systemd" / "user" / "chromatica-watch.service"
    text = plan.path.read_text()
    assert text == plan.unit_text
    assert unit_settings(text)["ExecStart"] == [f"{VENV_SCRIPT} run --config {config_file}"]
    assert plan.path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in plan.path.parent.iterdir()) == ["chromatica-watch.service"]
    # again: replaced in place
    plan2 = install_service(system=False, home=tmp_path, env={}, exec_start=str(VENV_SCRIPT))
    assert unit_settings(plan2.path.read_text())["ExecStart"] == [f"{VENV_SCRIPT} run"]


def test_install_user_honors_xdg_config_home(tmp_path: Path) -> None:
    plan = install_service(dry_run=True, home=tmp_path / "home",
                           env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert plan.path == tmp_path / "xdg" / "systemd" / "user" / "chromatica-watch.service"


def test_install_system_writes_the_template(tmp_path: Path) -> None:
    dry = install_service(system=True, dry_run=True, unit_dir=tmp_path, user=ME, exec_start=str(VENV_SCRIPT))
    assert list(tmp_path.iterdir()) == []
    assert dry.path == tmp_path / "chromatica-watch@.service"
    plan = install_service(system=True, dry_run=False, unit_dir=tmp_path, user=ME,
                           exec_start=str(VENV_SCRIPT))
    assert plan.path.read_text() == plan.unit_text == dry.unit_text
    assert unit_settings(plan.unit_text)["ExecStart"] == [f"{VENV_SCRIPT} run"]
    assert plan.unit_name == f"chromatica-watch@{ME}.service"
    assert plan.commands == ("systemctl daemon-reload",
                             f"systemctl enable --now chromatica-watch@{ME}.service")


def test_install_system_default_dir_and_user() -> None:
    plan = install_service(system=True, dry_run=True, user=ME)
    assert plan.path == Path("/etc/systemd/system/chromatica-watch@.service")
    assert not plan.written
    if os.geteuid() == 0:  # under sudo the instance is the user who ran sudo, never root itself
        other = next(p.pw_name for p in pwd.getpwall() if p.pw_uid != 0 and p.pw_name.isidentifier())
        plan = install_service(system=True, dry_run=True, env={"SUDO_USER": other})
        assert plan.unit_name == f"chromatica-watch@{other}.service"
        with pytest.raises(UsageError, match="root"):
            install_service(system=True, dry_run=True, env={"SUDO_USER": "root"})
    else:
        plan = install_service(system=True, dry_run=True, env={"SUDO_USER": "someone-else"})
        assert plan.unit_name == f"chromatica-watch@{ME}.service"


def test_install_system_refuses_bad_users() -> None:
    with pytest.raises(UsageError, match="no such user"):
        install_service(system=True, dry_run=True, user="no-such-user-" + uuid.uuid4().hex[:8])
    with pytest.raises(UsageError, match="instance name"):
        install_service(system=True, dry_run=True, user="a b")


def test_install_reports_unwritable_target(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ChromaticaError, match="cannot write"):
        install_service(system=True, unit_dir=blocker / "sub", user=ME, exec_start=str(VENV_SCRIPT))


def test_install_refuses_missing_config(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        install_service(dry_run=True, home=tmp_path, env={}, config_path=tmp_path / "nope.toml")


def test_module_has_no_mutable_globals() -> None:
    mutable = {name: type(v).__name__ for name, v in vars(service).items()
               if not name.startswith("__") and isinstance(v, list | dict | set | bytearray)}
    assert mutable == {}


def test_cli_install_service(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "CHROMATICA_WATCH_"))}
    env["HOME"] = str(tmp_path)
    cmd = [sys.executable, "-m", "chromatica_watch", "install-service"]
    unit = tmp_path / ".config" / "systemd" / "user" / "chromatica-watch.service"
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, env=env, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert str(unit) in dry.stdout and "systemctl --user enable --now chromatica-watch.service" in dry.stdout
    assert not unit.exists()
    real = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert real.returncode == 0, real.stderr
    assert str(unit) in real.stdout and "systemctl --user daemon-reload" in real.stdout
    assert unit_settings(unit.read_text())["ExecStart"] == [exec_line([*real_exec_start(), "run"])]
