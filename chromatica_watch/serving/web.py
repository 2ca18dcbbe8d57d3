"""The web app: search by colour or example image, see the results as thumbnails, watch the daemon.

Starlette does the HTTP work (routing, requests, responses; this is the only module importing it) and
uvicorn serves it on a thread of the daemon, beside the indexer (web_server.py). The page is plain HTML, CSS and
JavaScript shipped in `data/web/`, with no build step.

It is a local app on a machine other people may share, so every request must pass the guard (its rules,
which need no HTTP library, are in web_access.py):
- the `Host` header must name the loopback address (or `localhost`) on our port (DNS rebinding);
- a request that may change something must come from the app's own page (`Sec-Fetch-Site`, `Origin`);
- the per-install token (`web-token` in the state dir, mode 0600) must come with it: the URL that
  `chromatica-watch open` prints carries it once, the app trades it for an HttpOnly cookie and
  redirects to the same URL without it (as Jupyter does);
- no CORS header is ever sent, and every response carries a strict Content-Security-Policy.
Files are served by catalog id, never by a path taken from the request. Every answer is JSON (or a file),
a bad request one line of it with a 4xx; a name that is not UTF-8 is shown escaped (`display_path`).
Example images are decoded a few at a time within a pixel budget (upload_gate.py).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import Future
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from chromatica_watch.colour import names, rerank
from chromatica_watch.core.errors import ChromaticaError, UsageError
from chromatica_watch.core.paths import absolute_key, display_path
from chromatica_watch.core.records import Failure, StoredImage
from chromatica_watch.imaging.headers import declared_size
from chromatica_watch.search.ask import Ask, Filters, read_colours
from chromatica_watch.search.browse import MAX_PAGE, PALETTE_SWATCHES, Tile, WallPage
from chromatica_watch.search.finder import Found
from chromatica_watch.search.query import color_query_histogram, image_bytes_query_histogram, parse_colors
from chromatica_watch.search.searcher import DOMINANT_COLORS, Result
from chromatica_watch.serving.upload_gate import Busy, DecodeGate, TooLarge
from chromatica_watch.serving.web_access import cookie_value, cross_origin_refusal
from chromatica_watch.serving.web_access import load_token as load_token  # the daemon's composition takes it here
from chromatica_watch.serving.web_params import (
    ask_of,
    filters_of,
    grouped,
    has_filters,
    ids_of,
    k_of,
    parse_image_id,
    thumbnail_urls,
    whole_number,
)

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATIC_DIR = Path(__file__).parents[1] / "data" / "web"
COOKIE = "chromatica_token"
THUMBNAIL_SIZES = ("normal", "large", "x-large")
MAX_FAILURES_SHOWN = 100
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
                 ".ico": "image/x-icon"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
                    (b"cross-origin-resource-policy", b"same-origin")]


class WebService(Protocol):
    """What the app answers from: the daemon, seen from a request's thread."""

    def search(self, query: np.ndarray, k: int, group_sidecars: bool = False) -> list[Result]: ...

    def find(self, ask: Ask, k: int, group_sidecars: bool = False) -> Found: ...

    def stored(self, image_id: int) -> StoredImage | None: ...

    def located(self, image_id: int) -> tuple[str, bytes, bool] | None:
        """(root, path, live) of one id: no histogram read (a thumbnail needs only where the file is)."""
        ...

    def status(self) -> dict[str, Any]: ...

    def wall(self, filters: Filters, start: int, limit: int) -> WallPage: ...

    def wall_of(self, ids: list[int]) -> list[Tile]: ...

    def palette(self, filters: Filters, top: int = PALETTE_SWATCHES) -> dict[str, Any]: ...

    def failures(self) -> list[Failure]: ...

    def submit_retry_failed(self) -> Future[int]: ...


class Thumbnails(Protocol):
    def get(self, path: str, size: str) -> bytes | None: ...


# -- the guard -----------------------------------------------------------------------------------
class Guard:
    """Pure ASGI middleware in front of every route: Host check, cross-origin writes refused, token check,
    security headers; and no exception past it (the app's handler has answered it and logged one line)."""

    def __init__(self, app: ASGIApp, token: str, hosts: frozenset[str], origins: frozenset[str]) -> None:
        self.app = app
        self.token = token
        self.hosts = hosts
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        send, started = _with_security_headers(send)
        if headers.get("host", "") not in self.hosts:
            await _deny("this app answers only when called by its loopback address", scope, receive, send)
            return
        refused = cross_origin_refusal(scope["method"], headers.get("sec-fetch-site"), headers.get("origin"),
                                       self.origins)
        if refused is not None:
            await _deny(refused, scope, receive, send)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        given = query.get("token")
        if given is not None and self._ok(given):
            # Trade the token for a cookie, and show the address without it (no token in the history).
            rest = urlencode([(k, v) for k, v in parse_qsl(scope["query_string"].decode("latin-1")) if k != "token"])
            target = scope["path"] + (f"?{rest}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
            await response(scope, receive, send)
            return
        if not self._ok(cookie_value(headers.get("cookie", ""), COOKIE)):
            await _deny("open the app with the address `chromatica-watch open` prints: it carries the access token",
                        scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except Exception:  # re-raised by Starlette after `_internal_error` answered and logged it: not again
            if not started():  # (uvicorn would log the whole traceback at ERROR)
                await _Json({"error": "internal error"}, status_code=500)(scope, receive, send)

    def _ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def _with_security_headers(send: Send) -> tuple[Send, Callable[[], bool]]:
    """The send that adds our headers, and whether a response has started through it."""
    started = False

    async def sending(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
            date = (b"date", formatdate(usegmt=True).encode())  # uvicorn's own comes from a timer we do not run
            message["headers"] = [*message.get("headers", []), date, *SECURITY_HEADERS]
        await send(message)
    return sending, lambda: started


async def _deny(why: str, scope: Scope, receive: Receive, send: Send) -> None:
    await _Json({"error": f"forbidden: {why}"}, status_code=403)(scope, receive, send)


class _Json(JSONResponse):
    """Every JSON answer of the app. Paths come as `display_path` made them (a name that is not UTF-8
    escaped: caf\\xe9.jpg); should any other text still hold an undecodable byte (a surrogate), it is sent
    as its JSON escape instead of failing the request."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                          separators=(",", ":")).encode("utf-8", "backslashreplace")


# -- the routes ----------------------------------------------------------------------------------
class WebApp:
    """The routes, over a WebService; handlers are small and map domain errors to 4xx JSON."""

    def __init__(self, service: WebService, thumbnails: Thumbnails, max_dimension: int, max_pixels: int,
                 max_upload: int) -> None:
        self.service = service
        self.thumbnails = thumbnails
        self.max_dimension = max_dimension
        self.max_pixels = max_pixels
        self.max_upload = max_upload
        self.gate = DecodeGate(max_pixels)

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index),
            Route("/static/{name}", self.static),
            Route("/api/search", self.search_colors, methods=["GET"]),
            Route("/api/search", self.search_image, methods=["POST"]),
            Route("/api/similar/{image_id}", self.similar),
            Route("/api/images/{image_id}", self.image),
            Route("/api/wall", self.wall),
            Route("/api/palette", self.palette),
            Route("/api/status", self.status),
            Route("/api/colour-names", self.colour_names),
            Route("/api/retry-failed", self.retry_failed, methods=["POST"]),
            Route("/thumbnails/{image_id}", self.thumbnail),
        ]

    def index(self, request: Request) -> Response:
        # Cached like the scripts it loads: a reopened tab shows at once (the page holds no data, and no
        # token: the cookie does; an expired one makes the app's requests, not the page, say so).
        return _file(STATIC_DIR / "index.html", cache=True)

    def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _static_names():  # never a path from the request: only files shipped in data/web
            return _error(404, f"no such file: {name}")
        return _file(STATIC_DIR / name, cache=True)

    def search_colors(self, request: Request) -> Response:
        """GET /api/search?color=...: the same words as the CLI: `color` (repeatable; weights summing below 1 or
        a lone colour: photos containing it), `not`, `in` (absolute folders or globs), `taken_after`,
        `taken_before`, `camera`, `orientation`, `tone` (monochrome or colorful). The answer is the list of
        results; its `x-chromatica-pending` header counts the photos the filters could not judge yet."""
        params = request.query_params
        colors = params.getlist("color")

        def find() -> Response | list[dict[str, Any]]:
            if not has_filters(params) and not read_colours(colors)[0]:
                return self._search(color_query_histogram(parse_colors(colors)), request)
            return self._find(ask_of(params, colors), request)
        return _answer(find)

    async def search_image(self, request: Request) -> Response:
        """POST /api/search: an example image as the body, at most `max_upload` bytes, decoded within the
        gate (a few at a time, a pixel budget read from the header first): 413 too large, 503 busy."""
        too_big = _error(413, f"the image is larger than {self.max_upload // 2**20} MB, the most this app "
                              "accepts; search with a smaller copy of it")
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_upload:
            return too_big  # refused before a byte of it is read
        try:
            with self.gate.slot():
                body = bytearray()
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > self.max_upload:
                        return too_big
                if not body:
                    return _error(400, "no image in the request: send the image file as the body")
                return await run_in_threadpool(_answer, lambda: self._search_example(bytes(body), request))
        except Busy as exc:
            return _error(503, str(exc))

    def _search_example(self, data: bytes, request: Request) -> Response | list[dict[str, Any]]:
        with self.gate.pixels(declared_size(data)):  # TooLarge, Busy: before a pixel is decoded
            hist = image_bytes_query_histogram(data, "the uploaded image", self.max_dimension, self.max_pixels)
        return self._search(hist, request)

    def similar(self, request: Request) -> Response:
        def search() -> Response | list[dict[str, Any]]:
            image_id = parse_image_id(request.path_params["image_id"])
            stored = None if image_id is None else self.service.stored(image_id)
            if stored is None:
                return _error(404, "no such image in the index")
            return self._search(stored.histogram, request)
        return _answer(search)

    def image(self, request: Request) -> Response:
        def describe() -> Response | dict[str, Any]:
            image_id = parse_image_id(request.path_params["image_id"])
            stored = None if image_id is None else self.service.stored(image_id)
            if image_id is None or stored is None or not stored.live:
                return _error(404, "no such image in the index")
            return {
                "id": image_id, "path": display_path(absolute_key((stored.root, stored.path))),
                "relative_path": display_path(stored.path), "root": display_path(stored.root),
                "width": stored.width, "height": stored.height, "offline": not os.path.isdir(stored.root),
                "dominant_colors": [{"hex": h, "share": round(s, 4)}
                                    for h, s in rerank.dominant_colors(stored.histogram, top=DOMINANT_COLORS)],
                **thumbnail_urls(image_id)}
        return _answer(describe)

    def wall(self, request: Request) -> Response:
        """GET /api/wall: the colour wall, a page at a time (`start`, `limit`) of the photos passing the filters
        (`in`, `taken_after`...), in the order the table keeps; or, with `ids`, those photos (a search's results)
        in that order. Each tile: its id, main colours and thumbnail."""
        params = request.query_params

        def page() -> dict[str, Any]:
            ids = ids_of(params, MAX_PAGE)
            if ids is not None:  # the results shown: one page holding them all
                tiles = self.service.wall_of(ids)
                page = WallPage(tiles, start=0, total=len(tiles), pending=0)
            else:
                page = self.service.wall(filters_of(params), whole_number(params, "start", 0, 0, 2**62),
                                         whole_number(params, "limit", 120, 1, MAX_PAGE))
            found = page.to_json()
            found["tiles"] = [{**t, **thumbnail_urls(t["id"])} for t in found["tiles"]]
            return found
        return _answer(page)

    def palette(self, request: Request) -> Response:
        """GET /api/palette: the colours held by the most photos passing the filters, as swatches."""
        params = request.query_params
        return _answer(lambda: self.service.palette(filters_of(params),
                                                    whole_number(params, "top", PALETTE_SWATCHES, 1, 144)))

    def status(self, request: Request) -> Response:
        failures = [f.to_json() for f in self.service.failures()[:MAX_FAILURES_SHOWN]]
        return _Json({**self.service.status(), "failures": failures})

    def colour_names(self, request: Request) -> Response:
        """Every colour name the daemon reads (CSS, then the xkcd survey's) -> '#rrggbb': the app resolves
        typed names with it, so that it reads a name as a search does. Loaded once a page."""
        return _Json({"names": names.all_names(), "css": names.css_names()},
                     headers={"cache-control": "private, max-age=86400"})

    def retry_failed(self, request: Request) -> Response:
        return _Json({"requeued": self.service.submit_retry_failed().result(timeout=60)})

    def thumbnail(self, request: Request) -> Response:
        size = request.query_params.get("size", "normal")
        if size not in THUMBNAIL_SIZES:
            return _error(400, f"size must be one of {', '.join(THUMBNAIL_SIZES)}")
        try:
            image_id = parse_image_id(request.path_params["image_id"])
        except UsageError as exc:
            return _error(400, str(exc))
        found = None if image_id is None else self.service.located(image_id)
        if found is None or not found[2]:
            return _error(404, "no such image in the index")
        png = self.thumbnails.get(os.fsdecode(absolute_key((found[0], found[1]))), size)
        if png is None:  # a file that cannot be shown: a placeholder, never an error page
            return _file(STATIC_DIR / "placeholder.svg", cache=False)
        # An id is one content (a changed file gets a new id): the thumbnail of an id never changes.
        return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=86400"})

    def _search(self, query: np.ndarray, request: Request) -> Response | list[dict[str, Any]]:
        """A whole palette (an example image, a photo's "more like this", colours): with the query string's
        filters (`not`, `in`, `taken_after`...) if it has any."""
        params = request.query_params
        if has_filters(params):
            return self._find(ask_of(params, (), query), request)
        results = self.service.search(query, k_of(params), grouped(params))
        return [{**r.to_json(), **thumbnail_urls(r.id)} for r in results]

    def _find(self, ask: Ask, request: Request) -> Response:
        found = self.service.find(ask, k_of(request.query_params), grouped(request.query_params))
        return _Json([{**r.to_json(), **thumbnail_urls(r.id)} for r in found.results],
                     headers={"x-chromatica-pending": str(found.pending)})


def _answer(work: Callable[[], Any]) -> Response:
    """JSON of the work's result; a bad query is a 400, an example image with too many pixels a 413, anything
    the daemon refuses (busy) a 503, each one line."""
    try:
        result = work()
        return result if isinstance(result, Response) else _Json(result)
    except UsageError as exc:
        return _error(400, str(exc))
    except TooLarge as exc:
        return _error(413, str(exc))
    except ChromaticaError as exc:
        return _error(503, str(exc))


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return _Json({"error": message}, status_code=status, headers=headers)


def _static_names() -> frozenset[str]:
    return frozenset(p.name for p in STATIC_DIR.iterdir() if p.is_file())


def _file(path: Path, cache: bool = False) -> Response:
    headers = {"cache-control": "private, max-age=300" if cache else "no-cache"}
    return Response(path.read_bytes(), media_type=CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                    headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, a method a route does not take) as one line of JSON."""
    assert isinstance(exc, HTTPException)
    words = {404: f"no such page: {request.url.path}", 405: f"{request.method} is not allowed here"}
    return _error(exc.status_code, words.get(exc.status_code, str(exc.detail).lower()), headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """One request failing must not show a traceback: one line in the log (the trace at debug level)."""
    logger.error("web request %s %s failed: %s", request.method, request.url.path, exc)
    logger.debug("web request failed", exc_info=exc)
    return _error(500, f"internal error: {exc}")


def build_app(web: WebApp, token: str, hosts: frozenset[str], origins: frozenset[str]) -> ASGIApp:
    app = Starlette(routes=web.routes(), exception_handlers={HTTPException: _http_error, Exception: _internal_error})
    return Guard(app, token, hosts, origins)
