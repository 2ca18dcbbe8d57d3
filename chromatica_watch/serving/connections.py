"""The local API's connections: one JSON request line in, one JSON answer line out, and no client able to
starve the others.

One thread per listening socket (its door) accepts the connections and reads their request lines, all of
them at once and without blocking (a selector): an idle or slow client costs a file descriptor, never a
thread. A connection whose line has not come within `request_deadline` (REQUEST_DEADLINE_S) is told so and
closed; with MAX_PENDING connections still sending, the oldest of them is closed for the next one. A line
longer than MAX_REQUEST is refused at once. A whole line is answered on one of two lanes of kept threads:
the quick lane for QUICK_OPS (`status`, `ping`: cheap, so they are answered even when every worker is
busy), the workers for the rest. When its lane is full the client gets one line saying the daemon is busy,
not a reset. A malformed request (not UTF-8, not JSON, nested too deeply, not an object, no op) is
answered "bad request: ..." in one line. The log lines about all of these are throttled: one per
LOG_INTERVAL_S at most for each kind, with the count of those left out; never a traceback.
"""

from __future__ import annotations

import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from chromatica_watch.core.errors import ChromaticaError, UsageError
from chromatica_watch.core.throttle import Throttle

logger = logging.getLogger(__name__)

MAX_REQUEST = 1 << 20  # bytes in a request line
REQUEST_DEADLINE_S = 5.0  # a connection's whole request line must come within this, or it is closed
WRITE_TIMEOUT_S = 10.0  # an answer the client does not read for this long is dropped
MAX_WORKERS = 32  # threads answering the requests that are not quick
QUICK_WORKERS = 2  # threads answering QUICK_OPS
QUICK_IN_FLIGHT = 8  # quick requests answered or waiting for a quick thread at once
MAX_PENDING = 256  # connections whose request line is still being read
QUICK_OPS = frozenset({"ping", "status"})
QUICK_LINE = 4096  # a longer line is not looked at for a quick op: it goes to the workers
LOG_INTERVAL_S = 10.0
BACKLOG = 128

BUSY: dict[str, Any] = {"ok": False, "error": "the daemon is busy, try again in a moment", "busy": True}

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class BadRequest(UsageError):
    """A request the protocol cannot take: answered "bad request: <reason>", exit code 2 at the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"bad request: {reason}")
        self.reason = reason


def parse(line: bytes) -> dict[str, Any]:
    """The request a line holds: a JSON object with a string 'op'; BadRequest else."""
    if len(line) > MAX_REQUEST:
        raise BadRequest(f"longer than {MAX_REQUEST} bytes")
    try:
        request = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("not UTF-8") from None
    except RecursionError:
        raise BadRequest("JSON nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"not JSON ({exc})") from None
    if not isinstance(request, dict):
        raise BadRequest("not a JSON object")
    if not isinstance(request.get("op"), str):
        raise BadRequest("'op' must be a string")
    return request


def _is_quick(line: bytes) -> bool:
    if len(line) > QUICK_LINE:
        return False
    try:
        return parse(line)["op"] in QUICK_OPS
    except BadRequest:
        return False


def encode(response: dict[str, Any]) -> bytes:
    return json.dumps(response).encode() + b"\n"


@dataclass
class _Reading:
    """A connection whose request line is still coming."""

    sock: socket.socket
    deadline: float
    buf: bytearray = field(default_factory=bytearray)


class _Lane:
    """Kept threads (a search's first run on a new thread page-faults in OpenBLAS's and glibc's per-thread
    memory, every time) and a bound on the requests answered or waiting for them."""

    def __init__(self, name: str, threads: int, in_flight: int) -> None:
        self._slots = threading.BoundedSemaphore(in_flight)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=name)

    def try_submit(self, fn: Callable[[], None]) -> bool:
        if not self._slots.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                fn()
            finally:
                self._slots.release()
        try:
            self._pool.submit(run)
        except BaseException:
            self._slots.release()
            raise
        return True

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class Door:
    """A listening socket's connections, read by one thread and answered on the lanes (module docstring)."""

    def __init__(self, listener: socket.socket, name: str, handle: Handler, *,
                 request_deadline: float = REQUEST_DEADLINE_S, max_pending: int = MAX_PENDING,
                 workers: int = MAX_WORKERS, clock: Callable[[], float] = time.monotonic) -> None:
        listener.setblocking(False)
        self._listener = listener
        self._handle = handle
        self._deadline = request_deadline
        self._max_pending = max_pending
        self._clock = clock
        self._reading: dict[int, _Reading] = {}  # by fd, oldest first
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._workers = _Lane(f"api-{name}", workers, workers)
        self._quick = _Lane(f"api-{name}-quick", QUICK_WORKERS, QUICK_IN_FLIGHT)
        self._logs = {kind: Throttle(LOG_INTERVAL_S, clock) for kind in ("accept", "evict", "busy", "idle", "bad")}
        self._thread = threading.Thread(target=self._run, name=f"api-{name}-door")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop reading, close what is still being read, and wait for the answers under way."""
        self._stopping = True
        self._wake_w.send(b"x")
        self._thread.join()
        self._workers.shutdown()
        self._quick.shutdown()
        self._wake_w.close()

    def _warn(self, kind: str, msg: str, *args: object) -> None:
        self._logs[kind].log(logger, logging.WARNING, msg, *args)

    # -- the door's thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping:
                for key, _ in self._selector.select(self._timeout()):
                    try:
                        if key.fileobj is self._listener:
                            self._accept()
                        elif isinstance(key.data, _Reading):
                            self._read(key.data)
                    except Exception as exc:  # a bug: that connection is lost, the door stays open
                        logger.error("socket door: a connection failed: %s", exc)
                        logger.debug("socket door failed", exc_info=exc)  # the trace only at debug level
                        if isinstance(key.data, _Reading) and key.data.sock.fileno() in self._reading:
                            self._close(key.data)
                self._expire()
        finally:
            for r in list(self._reading.values()):
                self._close(r)
            self._selector.close()
            self._listener.close()
            self._wake_r.close()

    def _timeout(self) -> float | None:
        """Until the oldest connection's deadline (the soonest: deadlines come in the order of arrival)."""
        oldest = next(iter(self._reading.values()), None)
        return None if oldest is None else max(0.0, oldest.deadline - self._clock())

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of file descriptors, say: make room, or wait a moment
                self._warn("accept", "cannot accept a connection: %s", exc.strerror or exc)
                oldest = next(iter(self._reading.values()), None)
                if oldest is not None:
                    self._answer_now(oldest, BUSY)
                else:
                    time.sleep(0.05)
                return
            if len(self._reading) >= self._max_pending:
                self._warn("evict", "%d connections have not sent their request yet: closing the oldest of them "
                           "(the daemon is busy)", len(self._reading))
                self._answer_now(next(iter(self._reading.values())), BUSY)
            sock.setblocking(False)
            r = _Reading(sock, self._clock() + self._deadline)
            self._reading[sock.fileno()] = r
            self._selector.register(sock, selectors.EVENT_READ, r)

    def _read(self, r: _Reading) -> None:
        try:
            chunk = r.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            self._close(r)
            return
        if not chunk:  # the client is done sending: a last line without its newline still counts
            if r.buf:
                self._dispatch(r, bytes(r.buf))
            else:
                self._close(r)
            return
        start = len(r.buf)
        r.buf += chunk
        end = r.buf.find(b"\n", start)
        if end >= 0:
            self._dispatch(r, bytes(r.buf[:end]))
        elif len(r.buf) > MAX_REQUEST:
            self._warn("bad", "bad request on the socket: longer than %d bytes", MAX_REQUEST)
            self._answer_now(r, _failed(BadRequest(f"longer than {MAX_REQUEST} bytes")))

    def _expire(self) -> None:
        now = self._clock()
        while self._reading:
            oldest = next(iter(self._reading.values()))
            if oldest.deadline > now:
                return
            self._warn("idle", "closing a connection that sent no whole request within %g s", self._deadline)
            self._answer_now(oldest, _failed(BadRequest(f"no request line within {self._deadline:g} s")))

    def _dispatch(self, r: _Reading, line: bytes) -> None:
        self._forget(r)
        lane, name = (self._quick, "quick") if _is_quick(line) else (self._workers, "worker")
        sock = r.sock
        if not lane.try_submit(lambda: self._answer(sock, line)):
            self._warn("busy", "refusing a request: every %s thread is busy", name)
            _send_and_close(sock, encode(BUSY))

    def _answer_now(self, r: _Reading, response: dict[str, Any]) -> None:
        """One short line, sent without waiting (it fits in the empty socket buffer), then closed."""
        self._forget(r)
        _send_and_close(r.sock, encode(response))

    def _close(self, r: _Reading) -> None:
        self._forget(r)
        r.sock.close()

    def _forget(self, r: _Reading) -> None:
        self._reading.pop(r.sock.fileno(), None)
        self._selector.unregister(r.sock)

    # -- a lane's thread ----------------------------------------------------------------------------------
    def _answer(self, sock: socket.socket, line: bytes) -> None:
        try:
            sock.settimeout(WRITE_TIMEOUT_S)
            sock.sendall(self._respond(line))
        except OSError:
            pass  # the client went away or does not read: its loss alone
        finally:
            sock.close()

    def _respond(self, line: bytes) -> bytes:
        try:
            request = parse(line)
            return encode({"ok": True, **self._handle(request)})
        except BadRequest as exc:
            self._warn("bad", "bad request on the socket: %s", exc.reason)
            return encode(_failed(exc))
        except ChromaticaError as exc:
            return encode(_failed(exc))
        except (ValueError, TimeoutError) as exc:
            return encode({"ok": False, "error": str(exc)})
        except Exception as exc:  # a bug: one request must not take the daemon down
            logger.error("a socket request failed: %s", exc)
            logger.debug("socket request failed", exc_info=exc)  # the trace only at debug level
            return encode({"ok": False, "error": f"internal error: {exc}"})


def _failed(exc: ChromaticaError) -> dict[str, Any]:
    return {"ok": False, "error": str(exc), "exit_code": exc.exit_code}


def _send_and_close(sock: socket.socket, data: bytes) -> None:
    try:
        sock.setblocking(False)
        sock.send(data)
    except OSError:
        pass
    finally:
        sock.close()
