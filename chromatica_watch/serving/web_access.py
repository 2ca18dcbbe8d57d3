"""Who may ask the web app for what: the guard's rules, apart from the HTTP library (serving/web.py
applies them; only it imports Starlette and uvicorn).

- The token: a per-install secret (`web-token` in the state dir, mode 0600), traded for a cookie.
- Host: the `Host` header must name the loopback address (or `localhost`) on our port, so that a page
  elsewhere cannot reach us by pointing a DNS name at 127.0.0.1 (DNS rebinding).
- Cross-origin writes: a request that may change something (any method but GET, HEAD and OPTIONS) must come
  from the app's own page. The rule is Go's `net/http.CrossOriginProtection` (fetch metadata first, then
  `Origin`, as Django's CSRF check and Jupyter's `check_origin` compare the origin with the host):
  `Sec-Fetch-Site: same-origin` or `none` (typed by the user) passes and any other value is refused;
  without it (an older browser) an `Origin` must be one of our own origins (scheme, host and port: for
  the default bind http://127.0.0.1:PORT and http://localhost:PORT); a request with neither header is no
  browser's (curl, a script holding the token) and passes. The SameSite=Strict cookie alone would not
  do: a page on another port of localhost is same-site, and its requests carry the cookie.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path

from chromatica_watch.core.fsutil import atomic_write

TOKEN_FILE = "web-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})


def load_token(state_dir: Path) -> str:
    """The per-install secret: made once, kept mode 0600 in the state dir (only this user can read it)."""
    path = Path(state_dir) / TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        token = path.read_text().strip()
        if len(token) >= 32:
            return token
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (token + "\n").encode(), mode=0o600)
    return token


def cookie_value(header: str, name: str) -> str | None:
    """One cookie's value from a `Cookie` header."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The `Host` headers that name us: any loopback name, with our port or without."""
    names = {_url_host(host), "127.0.0.1", "localhost", "[::1]"}
    return frozenset({*names, *(f"{n}:{port}" for n in names)})


def own_origins(host: str, port: int) -> frozenset[str]:
    """The origins of the app's own page: the address it is bound to and `localhost`, which reaches it
    (`localhost` itself is bound as 127.0.0.1); the port is left out of an origin only when it is 80."""
    names = {_url_host(host), "localhost"} | ({"127.0.0.1"} if host == "localhost" else set())
    origins = {f"http://{n}:{port}" for n in names}
    return frozenset(origins | ({f"http://{n}" for n in names} if port == 80 else set()))


def cross_origin_refusal(method: str, fetch_site: str | None, origin: str | None,
                         origins: frozenset[str]) -> str | None:
    """Why a request may not change anything here, or None when it may (the rule is in the docstring above)."""
    if method.upper() in SAFE_METHODS:
        return None
    if fetch_site is not None:
        if fetch_site.strip().lower() in SAME_ORIGIN_FETCH:
            return None
        return (f"a request from another site or port (Sec-Fetch-Site: {shown(fetch_site)}) may not change "
                "anything here; use the app's own page (`chromatica-watch open`)")
    if origin is None or origin.strip().lower() in origins:
        return None
    return (f"a request from {shown(origin)} may not change anything here; only the app's own page may "
            f"({', '.join(sorted(origins))})")


def shown(text: str, most: int = 60) -> str:
    """A request's text in a one-line message: quoted, escaped, cut short."""
    return repr(text if len(text) <= most else text[:most] + "...")
