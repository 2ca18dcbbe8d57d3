"""The web app's server: uvicorn on a thread of the daemon, serving `web.build_app`; the only module
importing uvicorn (the app itself, Starlette, is web.py's)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time

import uvicorn

from chromatica_watch.serving.web import WebApp, build_app
from chromatica_watch.serving.web_access import allowed_hosts, own_origins

logger = logging.getLogger(__name__)


# -- the server thread ---------------------------------------------------------------------------
class _QuietServer(uvicorn.Server):
    """uvicorn without its 10 Hz timer: the timer only refreshes the Date header (the Guard sets one on
    each response instead) and polls `should_exit`; this server sleeps until `exit` wakes it, so an idle
    app costs no CPU (the timer alone was ~0.3% of a core)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop, self._exit = asyncio.get_running_loop(), asyncio.Event()
        if not self.should_exit:
            await self._exit.wait()

    def exit(self) -> None:
        """From any thread: stop serving (connections are closed as uvicorn's shutdown does)."""
        self.should_exit = True
        loop, event = self._loop, self._exit
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed already
                loop.call_soon_threadsafe(event.set)


class WebServer:
    """uvicorn on its own thread and event loop. The socket is bound by `start` itself, so a port in use
    is an OSError there (the daemon then runs without the app and says why), and port 0 works."""

    def __init__(self, web: WebApp, token: str, host: str, port: int) -> None:
        self.web = web
        self.token = token
        self.host = host
        self.port = port
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def start(self, timeout: float = 10.0) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY on accepted connections only for a socket made
        # so, and without it a response's body waits ~40 ms for the client's delayed ACK on a kept-alive
        # connection (measured: 44 ms per static file, 1.2 ms on a fresh connection).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        app = build_app(self.web, self.token, allowed_hosts(self.host, self.port), own_origins(self.host, self.port))
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_keep_alive=5,
                                server_header=False, date_header=False)
        self._server = _QuietServer(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="web",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise OSError(f"the web app did not start on {self.host}:{self.port}")
        logger.info("web app on http://%s:%d/", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.exit()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None
