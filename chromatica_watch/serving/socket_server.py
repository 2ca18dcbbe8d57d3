"""The local API: JSON lines over a Unix socket (mode 0600) in the runtime dir; loopback TCP if configured.

One request line, one response line: what each op answers is here (`handle`); how connections are read
and answered, kept from starving one another, is `connections.Door`. Reads run on the thread that answers
the request (one of a pool); anything that writes the catalog is handed to the indexer thread.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from concurrent.futures import Future
from typing import Any, Protocol

import numpy as np

from chromatica_watch.core.errors import ChromaticaError
from chromatica_watch.core.records import Failure
from chromatica_watch.ingest.roots import RootView
from chromatica_watch.search.ask import Ask, Filters
from chromatica_watch.search.browse import PALETTE_SWATCHES
from chromatica_watch.search.finder import Found
from chromatica_watch.search.searcher import DEFAULT_K, Result
from chromatica_watch.serving.connections import BACKLOG, REQUEST_DEADLINE_S, BadRequest, Door

logger = logging.getLogger(__name__)


class Service(Protocol):
    """What the socket answers from: the daemon, seen from a connection's thread."""

    def search(self, query: np.ndarray, k: int, group_sidecars: bool = False) -> list[Result]: ...

    def find(self, ask: Ask, k: int, group_sidecars: bool = False) -> Found: ...

    def status(self) -> dict[str, Any]: ...

    def palette(self, filters: Filters, top: int = PALETTE_SWATCHES) -> dict[str, Any]: ...

    def failures(self) -> list[Failure]: ...

    def submit_retry_failed(self) -> Future[int]:
        """Queue the failed files again, on the indexer thread (the only writer)."""
        ...

    def submit_compact(self) -> Future[dict[str, int]]:
        """Rebuild the live index without its tombstones now, on the indexer thread."""
        ...

    def roots(self) -> list[RootView]: ...

    def keywords(self, action: str, folder: str | None, dry_run: bool) -> dict[str, Any]:
        """Colour keywords written to or removed from the photos' XMP sidecars (on this thread)."""
        ...

    def submit_relocate(self, old: str, new: str, dry_run: bool, force: bool) -> Future[dict[str, Any]]:
        """Rewrite OLD's rows to NEW, on the indexer thread."""
        ...


def _failures(service: Service) -> list[dict[str, Any]]:
    return [f.to_json() for f in service.failures()]


def _query_histogram(request: dict[str, Any]) -> np.ndarray:
    values = request.get("histogram")
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        raise BadRequest("search: 'histogram' must be a list of numbers")
    return np.asarray(values, dtype=np.float32)


def _k(request: dict[str, Any]) -> int:
    k = request.get("k", DEFAULT_K)
    if not isinstance(k, int) or isinstance(k, bool):
        raise BadRequest("search: 'k' must be an integer")
    return k


def _top(request: dict[str, Any]) -> int:
    top = request.get("top", PALETTE_SWATCHES)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 144:
        raise BadRequest("'top' must be a whole number from 1 to 144")
    return top


def _flag(request: dict[str, Any], name: str) -> bool:
    value = request.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{request.get('op')}: {name!r} must be true or false")
    return value


def _root_arg(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not os.path.isabs(value):
        raise BadRequest(f"relocate: {name!r} must be an absolute path")
    return value


def _keywords_args(request: dict[str, Any]) -> tuple[str, str | None, bool]:
    action, folder = request.get("action"), request.get("folder")
    if action not in ("write", "remove"):
        raise BadRequest("keywords: 'action' must be write or remove")
    if folder is not None and (not isinstance(folder, str) or not os.path.isabs(folder)):
        raise BadRequest("keywords: 'folder' must be an absolute path")
    return action, folder, _flag(request, "dry_run")


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
    if op == "palette":
        return {"palette": service.palette(Filters.from_json(request.get("filters")), _top(request))}
    if op == "retry_failed":
        return {"requeued": service.submit_retry_failed().result(timeout=60)}
    if op == "compact":
        return {"compacted": service.submit_compact().result(timeout=3600)}
    if op == "roots":
        return {"roots": [v.to_json() for v in service.roots()]}
    if op == "keywords":
        return {"keywords": service.keywords(*_keywords_args(request))}
    if op == "relocate":
        old, new = _root_arg(request, "old"), _root_arg(request, "new")
        future = service.submit_relocate(old, new, bool(request.get("dry_run")), bool(request.get("force")))
        return {"relocated": future.result(timeout=3600)}
    raise BadRequest(f"unknown op {op!r}")


class SearchServer:
    """The socket API's doors: the Unix socket, and loopback TCP when a port is configured.
    `request_deadline`: how long a connection may take to send its request line."""

    def __init__(self, service: Service, socket_path: os.PathLike[str] | str, tcp_port: int = 0, *,
                 request_deadline: float = REQUEST_DEADLINE_S) -> None:
        self.service = service
        self.path = os.fspath(socket_path)
        self.tcp_port = tcp_port
        self.request_deadline = request_deadline
        self._doors: list[Door] = []

    def start(self) -> None:
        private_dir(os.path.dirname(self.path))
        if os.path.exists(self.path):
            if _answers(self.path):
                raise ChromaticaError(f"another daemon already answers on {self.path}")
            os.unlink(self.path)  # stale, from a crash
        listeners = {"unix": socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)}
        try:
            listeners["unix"].bind(self.path)
            os.chmod(self.path, 0o600)
            listeners["unix"].listen(BACKLOG)
            if self.tcp_port:
                listeners["tcp"] = socket.create_server(("127.0.0.1", self.tcp_port), backlog=BACKLOG)
        except BaseException:
            for listener in listeners.values():
                listener.close()
            raise
        handle_here = functools.partial(handle, self.service)
        for name, listener in listeners.items():
            door = Door(listener, name, handle_here, request_deadline=self.request_deadline)
            door.start()
            self._doors.append(door)

    def stop(self) -> None:
        for door in self._doors:
            door.stop()
        self._doors.clear()
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
