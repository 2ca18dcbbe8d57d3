"""The socket server on its own: connections are answered on threads it keeps (a search's first run on a
new thread page-faults in per-thread memory, every time), and stopping it leaves no thread behind."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

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

    import pytest

    from chromatica_watch.core.errors import ChromaticaError

    path = tmp_path / "stuck.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)  # accepted by the kernel, never read, never answered
        with pytest.raises(ChromaticaError, match=r"did not answer within 0\.3 s") as caught:
            request(path, {"op": "search", "histogram": [0.0], "k": 1}, timeout=0.3)
    assert "\n" not in str(caught.value)
