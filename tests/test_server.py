"""The socket server on its own: connections are answered on threads it keeps (a search's first run on a
new thread page-faults in per-thread memory, every time), and stopping it leaves no thread behind."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chromatica_watch.access.remote import request
from chromatica_watch.serving.socket_server import SearchServer


class _Answers:
    """A service that says which thread answered (what the server is asked, not a stand-in for it)."""

    def status(self) -> dict[str, Any]:
        return {"thread": threading.current_thread().name}


def test_connections_are_answered_on_kept_threads_and_none_is_left_after_stop(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    server = SearchServer(_Answers(), path)  # type: ignore[arg-type]
    server.start()
    try:
        threads = [request(path, {"op": "status"})["status"]["thread"] for _ in range(20)]
        # Kept threads answer them again and again. (Not always the same one: a connection may come in
        # before the thread that answered the last one is idle again, and the pool then adds a thread.)
        assert all(t.startswith("api-unix") for t in threads) and len(set(threads)) <= 10, threads
        before = {t.name for t in threading.enumerate()}
    finally:
        server.stop()
    assert threads[0] in before
    assert not [t for t in threading.enumerate() if t.name.startswith("api-")]


def test_a_daemon_that_takes_the_connection_but_never_answers_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A stuck daemon still holds its socket: the client gives up after its timeout with a line saying so."""
    import socket

    from chromatica_watch.core.errors import ChromaticaError

    path = tmp_path / "stuck.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)  # accepted by the kernel, never read, never answered
        with pytest.raises(ChromaticaError, match=r"did not answer within 0\.3 s") as caught:
            request(path, {"op": "search", "histogram": [0.0], "k": 1}, timeout=0.3)
    assert "\n" not in str(caught.value)


class _Held:
    """A service whose searches wait until released, as slow searches hold the threads answering them; its
    status answers at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.searching = 0
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        return {"state": "idle", "thread": threading.current_thread().name}

    def search(self, query: Any, k: int, group_sidecars: bool = False) -> list[Any]:
        with self._lock:
            self.searching += 1
        self.release.wait(30)
        return []


def _hold_every_worker(path: Path, service: _Held) -> tuple[list[threading.Thread], list[dict[str, Any]]]:
    """MAX_WORKERS real searches over the socket, each holding a worker until `service.release`."""
    from chromatica_watch.serving.connections import MAX_WORKERS
    from tests.conftest import wait_until

    answers: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: answers.append(request(path, {"op": "search", "histogram": [1.0]})))
               for _ in range(MAX_WORKERS)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: service.searching == MAX_WORKERS, timeout=10)
    except BaseException:
        service.release.set()
        for t in threads:
            t.join(timeout=10)
        raise
    return threads, answers


def test_with_every_worker_busy_a_search_is_told_busy_in_one_line_and_status_still_answers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from chromatica_watch.core.errors import DaemonBusy

    path = tmp_path / "s.sock"
    service = _Held()
    server = SearchServer(service, path)  # type: ignore[arg-type]
    server.start()
    try:
        holders, answers = _hold_every_worker(path, service)
        try:
            refused = []
            with caplog.at_level(logging.WARNING, logger="chromatica_watch.serving"):
                for _ in range(20):
                    with pytest.raises(DaemonBusy) as caught:
                        request(path, {"op": "search", "histogram": [1.0]}, timeout=5)
                    refused.append(str(caught.value))
                # The quick lane answers status and ping however busy the workers are.
                assert request(path, {"op": "status"}, timeout=5)["status"]["thread"].startswith("api-unix-quick")
                assert request(path, {"op": "ping"}, timeout=5)["ok"]
        finally:
            service.release.set()
            for t in holders:
                t.join(timeout=10)
    finally:
        server.stop()
    assert all("busy" in r and "\n" not in r for r in refused), refused
    refusals = [r for r in caplog.records if "busy" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]  # 20 refused, one line (throttled)
    assert not [r for r in caplog.records if r.exc_info]
    # The held searches were answered once released; none of the refused ones ran.
    assert service.searching == 32 and len(answers) == 32 and all(a["results"] == [] for a in answers)


def test_idle_connections_hold_no_thread_and_are_closed_at_the_request_deadline(tmp_path: Path) -> None:
    """Idle and slow clients (a byte now and then, never a whole line) cost no thread: requests are answered
    beside them, and each is told and closed once its request line is overdue."""
    import socket

    from chromatica_watch.serving.connections import MAX_WORKERS

    path = tmp_path / "s.sock"
    server = SearchServer(_Answers(), path, request_deadline=1.0)  # type: ignore[arg-type]
    server.start()
    idle = []
    try:
        for _ in range(MAX_WORKERS + 8):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(path))
            s.settimeout(10)
            idle.append(s)
        idle[0].sendall(b'{"op": "sta')  # slow: part of a line
        started = time.monotonic()
        for _ in range(5):
            assert request(path, {"op": "status"}, timeout=5)["status"]["thread"].startswith("api-unix")
        answers = [s.recv(4096) for s in idle]  # each socket's last words, then its end
        waited = time.monotonic() - started
        ends = [s.recv(4096) for s in idle]
    finally:
        for s in idle:
            s.close()
        server.stop()
    assert 0.5 < waited < 5, waited
    assert all(b"bad request: no request line within 1 s" in a and a.endswith(b"\n") for a in answers), answers
    assert ends == [b""] * len(idle)


def test_a_request_to_a_socket_closed_under_it_is_one_line_even_where_sigpipe_kills(tmp_path: Path) -> None:
    """The daemon closes a connection before reading its request (refused): the client's write fails. In a
    process where SIGPIPE is not ignored (a program embedding the Python API), that must not kill it."""
    import socket
    import subprocess
    import sys

    path = tmp_path / "closing.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)

        def close_at_once() -> None:
            conn, _ = listener.accept()
            conn.close()  # never read: the request (larger than the socket's buffer) is left half sent

        closer = threading.Thread(target=close_at_once)
        closer.start()
        code = ("import signal, sys\n"
                "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
                "from chromatica_watch.access.remote import request\n"
                "from chromatica_watch.core.errors import ChromaticaError\n"
                "try:\n"
                f"    request({str(path)!r}, {{'op': 'search', 'histogram': [0.5] * 300000}}, timeout=20)\n"
                "except ChromaticaError as exc:\n"
                "    print(exc, file=sys.stderr)\n"
                "    sys.exit(1)\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        closer.join(timeout=10)
    assert proc.returncode == 1, proc  # not -13 (killed by SIGPIPE)
    assert proc.stderr.count("\n") == 1 and "closed the connection" in proc.stderr, proc.stderr
