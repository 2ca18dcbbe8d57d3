"""The local API: JSON lines over a Unix socket (mode 0600) in the runtime dir; loopback TCP if configured.

One request line, one response line. Reads run on the thread that answers the connection (one of a
pool); anything that writes the catalog is handed to the indexer thread.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from chromatica_watch.core.errors import ChromaticaError
from chromatica_watch.core.records import Failure
from chromatica_watch.ingest.roots import RootView
from chromatica_watch.search.ask import Ask
from chromatica_watch.search.finder import Found
from chromatica_watch.search.searcher import DEFAULT_K, Result

logger = logging.getLogger(__name__)

MAX_REQUEST = 1 << 20
CONNECTION_TIMEOUT_S = 10.0  # a client that sends nothing (or reads nothing) for this long is dropped
MAX_CONNECTIONS = 32  # one thread each; more at once are refused rather than piling up threads


class Service(Protocol):
    """What the socket answers from: the daemon, seen from a connection's thread."""

    def search(self, query: np.ndarray, k: int, group_sidecars: bool = False) -> list[Result]: ...

    def find(self, ask: Ask, k: int, group_sidecars: bool = False) -> Found: ...

    def status(self) -> dict[str, Any]: ...

    def failures(self) -> list[Failure]: ...

    def submit_retry_failed(self) -> Future[int]:
        """Queue the failed files again, on the indexer thread (the only writer)."""
        ...

    def submit_compact(self) -> Future[dict[str, int]]:
        """Rebuild the live index without its tombstones now, on the indexer thread."""
        ...

    def roots(self) -> list[RootView]: ...

    def submit_relocate(self, old: str, new: str, dry_run: bool, force: bool) -> Future[dict[str, Any]]:
        """Rewrite OLD's rows to NEW, on the indexer thread."""
        ...


def _failures(service: Service) -> list[dict[str, Any]]:
    return [f.to_json() for f in service.failures()]


def _query_histogram(request: dict[str, Any]) -> np.ndarray:
    values = request.get("histogram")
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        raise ValueError("search: 'histogram' must be a list of numbers")
    return np.asarray(values, dtype=np.float32)


def _k(request: dict[str, Any]) -> int:
    k = request.get("k", DEFAULT_K)
    if not isinstance(k, int) or isinstance(k, bool):
        raise ValueError("search: 'k' must be an integer")
    return k


def _flag(request: dict[str, Any], name: str) -> bool:
    value = request.get(name, False)
    if not isinstance(value, bool):
        raise ValueError(f"{request.get('op')}: {name!r} must be true or false")
    return value


def _root_arg(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not os.path.isabs(value):
        raise ValueError(f"relocate: {name!r} must be an absolute path")
    return value


def handle(service: Service, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "ping":
        return {"pid": os.getpid()}
    if op == "status":
        return {"status": service.status()}
    if op == "failed":
        return {"failures": _failures(service)}
    if op == "search":
        started = time.perf_counter()
        if "ask" in request:
            found = service.find(Ask.from_json(request["ask"]), _k(request), _flag(request, "group_sidecars"))
            answer = found.to_json()
        else:
            answer = {"results": [r.to_json() for r in service.search(_query_histogram(request), _k(request),
                                                                       _flag(request, "group_sidecars"))]}
        logger.debug("search answered in %.1f ms", (time.perf_counter() - started) * 1000)
        return answer
    if op == "retry_failed":
        return {"requeued": service.submit_retry_failed().result(timeout=60)}
    if op == "compact":
        return {"compacted": service.submit_compact().result(timeout=3600)}
    if op == "roots":
        return {"roots": [v.to_json() for v in service.roots()]}
    if op == "relocate":
        old, new = _root_arg(request, "old"), _root_arg(request, "new")
        future = service.submit_relocate(old, new, bool(request.get("dry_run")), bool(request.get("force")))
        return {"relocated": future.result(timeout=3600)}
    raise ValueError(f"unknown op {op!r}")


class _Handler(socketserver.StreamRequestHandler):
    server: _UnixServer | _TcpServer
    timeout = CONNECTION_TIMEOUT_S  # set on the connection's socket by StreamRequestHandler.setup

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST)
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("request must be a JSON object")
            response = {"ok": True, **handle(self.server.service, request)}
        except ChromaticaError as exc:
            response = {"ok": False, "error": str(exc), "exit_code": exc.exit_code}
        except (ValueError, TimeoutError) as exc:
            response = {"ok": False, "error": str(exc)}
        except Exception as exc:  # one bad request must not take the daemon down
            logger.exception("request failed")
            response = {"ok": False, "error": f"internal error: {exc}"}
        try:
            self.wfile.write(json.dumps(response).encode() + b"\n")
        except OSError:
            pass


class _Bounded:
    """Connections answered on a pool of threads that outlive them, at most MAX_CONNECTIONS at once: the
    next ones are closed at once. Kept threads, not a thread per connection: a search's first one on a new
    thread page-faults in OpenBLAS's and glibc's per-thread memory (~1,000 faults, 2-5 ms at a million
    photos), every time."""

    slots: threading.BoundedSemaphore
    answering: ThreadPoolExecutor

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            logger.warning("refusing a connection: %d requests are already being answered", MAX_CONNECTIONS)
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        try:
            self.answering.submit(self._answer, request, client_address)
        except BaseException:
            self.slots.release()
            self.shutdown_request(request)  # type: ignore[attr-defined]
            raise

    def _answer(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)  # type: ignore[attr-defined]
        except Exception:
            self.handle_error(request, client_address)  # type: ignore[attr-defined]
        finally:
            self.shutdown_request(request)  # type: ignore[attr-defined]
            self.slots.release()

    def server_close(self) -> None:
        super().server_close()  # type: ignore[misc]
        self.answering.shutdown(wait=True)  # each connection ends within CONNECTION_TIMEOUT_S


class _UnixServer(_Bounded, socketserver.UnixStreamServer):
    def __init__(self, path: str, service: Service) -> None:
        self.service = service
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.answering = ThreadPoolExecutor(MAX_CONNECTIONS, thread_name_prefix="api-unix")
        super().__init__(path, _Handler)


class _TcpServer(_Bounded, socketserver.TCPServer):
    allow_reuse_address = True

    def __init__(self, port: int, service: Service) -> None:
        self.service = service
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.answering = ThreadPoolExecutor(MAX_CONNECTIONS, thread_name_prefix="api-tcp")
        super().__init__(("127.0.0.1", port), _Handler)


class SearchServer:
    def __init__(self, service: Service, socket_path: os.PathLike[str] | str, tcp_port: int = 0) -> None:
        self.service = service
        self.path = os.fspath(socket_path)
        self.tcp_port = tcp_port
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        private_dir(os.path.dirname(self.path))
        if os.path.exists(self.path):
            if _answers(self.path):
                raise ChromaticaError(f"another daemon already answers on {self.path}")
            os.unlink(self.path)  # stale, from a crash
        unix = _UnixServer(self.path, self.service)
        os.chmod(self.path, 0o600)
        self._servers.append(unix)
        if self.tcp_port:
            self._servers.append(_TcpServer(self.tcp_port, self.service))
        for srv in self._servers:
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                 name=f"api-{type(srv).__name__}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=5)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def private_dir(path: str) -> None:
    """The socket's folder, readable by its owner only (0700): made so, or made so if we own it."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_uid == os.geteuid():
        os.chmod(path, 0o700)


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except OSError:
            return False
    return True
