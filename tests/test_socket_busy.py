"""Every request on the socket answered (issue 24, items 7 and 8): idle clients cannot hold the socket shut,
a refused client is told "busy" in one line, and a malformed request is one "bad request" line. Real daemon
processes, real Unix sockets, the real CLI."""

from __future__ import annotations

import json
import selectors
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from chromatica_watch.serving.connections import MAX_PENDING, MAX_REQUEST
from chromatica_watch.serving.socket_server import SearchServer
from tests.conftest import CLI, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv
from tests.test_server import _Held, _hold_every_worker


class _IdleClients:
    """`n` connections that never send a thing, each opened again as soon as the daemon closes it: idle
    clients held for as long as the `with` block lasts."""

    def __init__(self, path: Path, n: int) -> None:
        self.path, self.n = str(path), n
        self.reopened = 0
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._hold, name="idle-clients")

    def _open(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.path)
        self._selector.register(s, selectors.EVENT_READ)

    def __enter__(self) -> _IdleClients:
        for _ in range(self.n):
            self._open()
        self._thread.start()
        return self

    def _hold(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data or data.endswith(b"\n"):  # told and closed, or about to be: come back
                    self._selector.unregister(s)
                    s.close()
                    self._open()
                    self.reopened += 1

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()


def _warnings_of_the_socket(log: str) -> list[str]:
    return [line for line in log.splitlines() if " WARNING chromatica_watch.serving.connections:" in line]


def test_status_and_search_answer_while_hundreds_of_idle_connections_are_held(daemon_env: DaemonEnv) -> None:
    """Issue 24, 7: 32 idle connections made `status` say "not responding" and logged ~40 lines a second."""
    env = daemon_env
    env.start()
    write_rgb(env.pictures / "red.png", solid((220, 20, 30)))
    wait_until(lambda: env.idle_with(1), timeout=60)
    sock_path = env.runtime_dir / "chromatica-watch.sock"
    with _IdleClients(sock_path, MAX_PENDING - 6) as idle:
        for _ in range(3):
            code, answer = env.verdict()
            assert code == 0 and answer["verdict"] == "running (idle)", answer
            found = env.cli("search", "--color", "#dc141e", "-k", "3")
            assert found.returncode == 0 and "red.png" in found.stdout, found
        # Held long enough for the daemon to close them at their deadline, and the clients to come back.
        wait_until(lambda: idle.reopened >= MAX_PENDING - 6, timeout=30)
        code, _ = env.verdict()
        assert code == 0
    warnings = _warnings_of_the_socket(env.log())
    # ~250 connections closed for idling, each opened again: one line (two if the test crossed the
    # throttle's 10 s), not one a connection.
    assert 1 <= len(warnings) <= 3, warnings
    assert all("sent no whole request" in w for w in warnings), warnings
    assert "Traceback" not in env.log()
    assert env.stop() == 0


def _raw(path: Path, data: bytes) -> bytes:
    """What the daemon answers to these bytes, sent as they are (a daemon that stops reading early may close
    before all of them are sent: what it said is still read)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(str(path))
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            answer += chunk
        return answer


MALFORMED = {
    "nested 100,000 levels": b"[" * 100_000 + b"\n",
    "nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"\n",
    "not JSON": b"hello daemon\n",
    "not UTF-8": b'{"op": "status\xff\xfe"}\n',
    "not an object": b"[1, 2, 3]\n",
    "op not a string": b'{"op": ["status"]}\n',
    "unknown op": b'{"op": "format_disk"}\n',
    "k of the wrong type": b'{"op": "search", "histogram": [1.0], "k": "ten"}\n',
    "histogram of the wrong type": b'{"op": "search", "histogram": "red"}\n',
    "huge": b'{"op": "status", "pad": "' + b"x" * MAX_REQUEST + b'"}\n',
}


def test_malformed_requests_get_one_bad_request_line_and_no_traceback(daemon_env: DaemonEnv) -> None:
    """Issue 24, 8: a nested JSON of 100,000 levels was logged as an internal error with a traceback."""
    env = daemon_env
    env.start()
    sock_path = env.runtime_dir / "chromatica-watch.sock"
    for name, data in MALFORMED.items():
        answer = _raw(sock_path, data)
        assert answer.count(b"\n") == 1 and answer.endswith(b"\n"), (name, answer)
        response = json.loads(answer)
        assert response["ok"] is False and response["exit_code"] == 2, (name, response)
        assert response["error"].startswith("bad request: "), (name, response)
    code, _ = env.verdict()
    assert code == 0  # still answering
    log = env.log()
    assert "Traceback" not in log and "internal error" not in log and "request failed" not in log
    bad = [w for w in _warnings_of_the_socket(log) if "bad request" in w]
    assert 1 <= len(bad) <= 2, bad  # ten bad requests, one line (the throttle's interval is 10 s)
    assert env.stop() == 0


@pytest.fixture
def held_server(tmp_path: Path) -> Iterator[tuple[Path, _Held]]:
    """A socket server at the configured socket path whose every worker is held by a search in progress."""
    runtime = Path(tempfile.mkdtemp(prefix="cw-", dir="/tmp"))
    (tmp_path / "Pictures").mkdir()
    config = tmp_path / "cw.toml"
    config.write_text(f'roots = ["{tmp_path / "Pictures"}"]\nindex_dir = "{tmp_path / "index"}"\n'
                      f'state_dir = "{tmp_path / "state"}"\nruntime_dir = "{runtime}"\n')
    service = _Held()
    server = SearchServer(service, runtime / "chromatica-watch.sock")  # type: ignore[arg-type]
    server.start()
    try:
        holders, _ = _hold_every_worker(runtime / "chromatica-watch.sock", service)
        try:
            yield config, service
        finally:
            service.release.set()
            for t in holders:
                t.join(timeout=10)
    finally:
        server.stop()
        shutil.rmtree(runtime, ignore_errors=True)


def test_a_refused_search_says_busy_in_one_line_and_status_still_answers(held_server: tuple[Path, _Held]) -> None:
    """Issue 24, 7: a refused `search` died by SIGPIPE with no message (exit 141)."""
    import subprocess

    config, service = held_server
    for args in (["search", "--color", "#dc141e"], ["search", "--color", "#dc141e:0.6", "--color", "#0044ff:0.4"]):
        proc = subprocess.run([CLI, *args, "--config", str(config)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc
        assert proc.stderr.count("\n") == 1 and "the daemon is busy" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    status = subprocess.run([CLI, "status", "--json", "--config", str(config)], capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status
    assert json.loads(status.stdout)["status"]["thread"].startswith("api-unix-quick")
    assert service.searching == 32  # the refused searches never ran
