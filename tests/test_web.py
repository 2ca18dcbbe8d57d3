"""The web app at the HTTP level, on a real daemon: the guard (token, Host, no CORS, CSP), searches
identical to the CLI's, uploads, ids that do not exist, path traversal, thumbnails and placeholders."""

from __future__ import annotations

import http.client
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from chromatica_watch.imaging.thumbnails import file_uri, png_text_chunks, thumbnail_name
from tests import format_files as F
from tests.conftest import CLI, photo, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv


class App:
    """A client of the running app: the token traded for its cookie, as a browser would."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.token = parts.query.removeprefix("token=")
        status, headers, _ = self.request("GET", f"/?token={self.token}", cookie=False)
        assert status == 303 and headers["location"] == "/"
        self.cookie = headers["set-cookie"].split(";")[0]
        assert "httponly" in headers["set-cookie"].lower() and "samesite=strict" in headers["set-cookie"].lower()

    def request(self, method: str, path: str, body: bytes | None = None, cookie: bool = True,
                host: str | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host if host is not None else f"{self.host}:{self.port}")
            if cookie:
                conn.putheader("Cookie", self.cookie)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        status, headers, data = self.request(method, path, body)
        assert headers["content-type"].startswith("application/json"), headers
        return status, json.loads(data)


@pytest.fixture
def app(daemon_env: DaemonEnv) -> Iterator[tuple[DaemonEnv, App]]:
    pictures = daemon_env.pictures
    for name, rgb in (("red.png", (220, 20, 20)), ("teal.png", (0, 128, 128)), ("yellow.png", (240, 220, 10))):
        write_rgb(pictures / name, solid(rgb))
    write_rgb(pictures / "trip" / "coffee.jpg", photo("coffee"), IMWRITE_JPEG_QUALITY=90)
    daemon_env.start()
    wait_until(lambda: daemon_env.idle_with(4), timeout=60)
    url = daemon_env.status()["web_url"]
    yield daemon_env, App(url)
    assert daemon_env.stop() == 0


def test_without_the_token_or_with_another_host_nothing_is_served(app: tuple[DaemonEnv, App]) -> None:
    env, client = app
    for path in ("/", "/api/status", "/api/search?color=teal", "/thumbnails/1", "/static/app.js"):
        status, headers, body = client.request("GET", path, cookie=False)
        assert status == 403 and b"chromatica-watch open" in body, (path, body)
        assert "access-control-allow-origin" not in headers
    status, _, _ = client.request("GET", "/?token=" + "x" * len(client.token), cookie=False)
    assert status == 403  # a wrong token
    for host in ("evil.example", f"evil.example:{client.port}", f"127.0.0.2:{client.port}", ""):
        status, _, body = client.request("GET", "/api/status", host=host)  # DNS rebinding: a name we are not
        assert status == 403 and b"loopback" in body, host
    status, headers, body = client.request("GET", "/", headers={"Origin": "http://evil.example"})
    assert status == 200 and b"<html" in body.lower()
    assert "access-control-allow-origin" not in headers  # no CORS, ever
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    token_file = env.state_dir / "web-token"
    assert token_file.read_text().strip() == client.token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((env.state_dir / "status.json").stat().st_mode) == 0o600


def test_searches_answer_what_the_cli_answers(app: tuple[DaemonEnv, App]) -> None:
    env, client = app
    cli = subprocess.run([CLI, "search", "--color", "teal:0.7", "--color", "#dc1414:0.3", "-k", "4", "--json",
                          "--config", str(env.config)], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    status, found = client.json("GET", "/api/search?color=teal:0.7&color=%23dc1414:0.3&k=4")
    assert status == 200
    assert [{k: v for k, v in m.items() if k not in ("thumbnail", "large")} for m in found] == json.loads(cli.stdout)
    assert found[0]["path"].endswith("teal.png")
    assert found[0]["thumbnail"] == f"/thumbnails/{found[0]['id']}?size=normal"

    status, similar = client.json("GET", f"/api/similar/{found[0]['id']}?k=2")
    assert status == 200 and similar[0]["id"] == found[0]["id"]  # more like this: itself first
    status, detail = client.json("GET", f"/api/images/{found[0]['id']}")
    assert status == 200 and detail["path"] == found[0]["path"] and detail["dominant_colors"][0]["hex"] == "#008080"

    upload = (env.pictures / "trip" / "coffee.jpg").read_bytes()
    status, by_image = client.json("POST", "/api/search?k=2", upload)
    assert status == 200 and by_image[0]["path"] == str(env.pictures / "trip" / "coffee.jpg")

    status, error = client.json("GET", "/api/search?color=notacolour")
    assert status == 400 and "CSS colour name" in error["error"]
    status, error = client.json("POST", "/api/search", b"this is not an image")
    assert status == 400 and "cannot use the uploaded image" in error["error"]

    # The filters and "contains" take the CLI's words; the image and "more like this" searches take filters too.
    cli = subprocess.run([CLI, "search", "--color", "teal:0.3", "--not", "#dc1414", "-k", "3", "--json",
                          "--config", str(env.config)], capture_output=True, text=True, timeout=60)
    status, contains = client.json("GET", "/api/search?color=teal:0.3&not=%23dc1414&k=3")
    assert status == 200 and cli.returncode == 0
    assert [{k: v for k, v in m.items() if k not in ("thumbnail", "large")} for m in contains] == json.loads(cli.stdout)
    assert contains[0]["path"].endswith("teal.png") and contains[0]["shares"][0]["share"] > 0.9
    trip = str(env.pictures / "trip")
    status, in_trip = client.json("POST", f"/api/search?k=5&in={trip}", upload)
    assert status == 200 and in_trip and all(m["path"].startswith(trip + "/") for m in in_trip)
    status, similar_in_trip = client.json("GET", f"/api/similar/{found[0]['id']}?k=5&in={trip}")
    assert status == 200 and all(m["path"].startswith(trip + "/") for m in similar_in_trip)
    status, error = client.json("GET", "/api/search?color=teal&taken_after=someday")
    assert status == 400 and error["error"].startswith("bad date") and "\n" not in error["error"]
    status, error = client.json("GET", "/api/search?tone=sepia")
    assert status == 400 and "bad tone" in error["error"]


def test_a_raw_and_its_jpeg_are_one_result_when_the_app_groups_and_two_through_the_socket(
        app: tuple[DaemonEnv, App]) -> None:
    env, client = app
    orange = np.zeros((120, 160, 3), np.uint8) + np.array([240, 140, 20], np.uint8)
    (env.pictures / "IMG_0007.DNG").write_bytes(F.dng(orange))
    (env.pictures / "IMG_0007.JPG").write_bytes(F.jpeg(orange))
    wait_until(lambda: env.idle_with(6), timeout=60)

    status, grouped = client.json("GET", "/api/search?color=%23f08c14&k=2&group_sidecars=1")
    status_plain, plain = client.json("GET", "/api/search?color=%23f08c14&k=2")
    cli = subprocess.run([CLI, "search", "--color", "#f08c14", "-k", "2", "--json", "--config", str(env.config)],
                         capture_output=True, text=True, timeout=60)

    assert status == status_plain == 200 and cli.returncode == 0, cli.stderr
    pair = {"IMG_0007.DNG", "IMG_0007.JPG"}
    assert {Path(grouped[0]["path"]).name, *(Path(p).name for p in grouped[0]["sidecars"])} == pair
    assert Path(grouped[1]["path"]).name not in pair and grouped[1]["sidecars"] == []
    assert {Path(m["path"]).name for m in plain} == pair  # not grouped: both files, as the CLI gives them
    assert [m["id"] for m in plain] == [m["id"] for m in json.loads(cli.stdout)]


def test_unknown_ids_are_404_and_no_path_from_the_request_is_served(app: tuple[DaemonEnv, App]) -> None:
    _, client = app
    for path in ("/api/images/999999", "/thumbnails/999999", "/api/similar/999999"):
        status, _, body = client.request("GET", path)
        assert status == 404 and b"no such image" in body, path
    secret = Path(__file__).read_bytes()[:40]
    for path in ("/static/..%2F..%2Fweb.py", "/static/../web.py", "/static/%2e%2e/web.py", "/thumbnails/..%2F1",
                 "/static/..%2F..%2F..%2Fetc%2Fpasswd", "/../../etc/passwd", "/thumbnails/1/../../../etc/passwd"):
        status, _, body = client.request("GET", path)
        assert status == 404, (path, status)
        assert b"root:" not in body and secret not in body and b"import " not in body


def test_a_50_mb_upload_is_refused_with_a_clear_message(app: tuple[DaemonEnv, App]) -> None:
    env, client = app
    status, error = client.json("POST", "/api/search", b"\xff" * (50 * 2**20))
    assert status == 413 and "larger than 32 MB" in error["error"]
    assert env.proc is not None and env.proc.poll() is None


def test_thumbnails_in_the_freedesktop_cache_and_a_placeholder_for_a_broken_file(app: tuple[DaemonEnv, App]) -> None:
    env, client = app
    cache = env.config.parent / "thumbnails"
    # Made while indexing, before any page asked: every photo's grid thumbnail, valid for its file as it is.
    photos = sorted(p for p in env.pictures.rglob("*") if p.is_file())
    made = {p: cache / "normal" / thumbnail_name(file_uri(str(p))) for p in photos}
    for photo_path, thumb in made.items():
        text = png_text_chunks(thumb.read_bytes())
        assert text is not None and text["Thumb::URI"] == file_uri(str(photo_path)), photo_path
        assert text["Thumb::MTime"] == str(photo_path.stat().st_mtime_ns // 10**9)
    _, found = client.json("GET", "/api/search?color=%23704030&k=1")
    assert found[0]["path"].endswith("coffee.jpg")
    status, headers, png = client.request("GET", found[0]["thumbnail"])
    assert status == 200 and headers["content-type"] == "image/png" and png.startswith(b"\x89PNG")
    assert made[env.pictures / "trip" / "coffee.jpg"].read_bytes() == png  # served from the cache
    status, _, large = client.request("GET", found[0]["large"])  # the detail view's size: made on demand
    assert status == 200 and len(large) > len(png)
    assert len(list((cache / "x-large").glob("*.png"))) == 1

    red = env.pictures / "red.png"
    _, hits = client.json("GET", "/api/search?color=%23dc1414&k=1")
    st = red.stat()
    red.write_bytes(b"\0" * st.st_size)  # broken, with its stat kept: still indexed, cannot be shown
    os.utime(red, ns=(st.st_atime_ns, st.st_mtime_ns))
    made[red].unlink()  # (its thumbnail from indexing would still be served: same mtime, same size)
    status, headers, body = client.request("GET", hits[0]["thumbnail"])
    assert status == 200 and headers["content-type"].startswith("image/svg+xml") and b"<svg" in body


def test_status_shows_the_app_and_open_prints_its_address(app: tuple[DaemonEnv, App]) -> None:
    env, client = app
    status, data = client.json("GET", "/api/status")
    assert status == 200 and data["counts"]["indexed"] == 4 and data["failures"] == []
    shown = env.cli("open", "--no-browser")
    assert shown.returncode == 0 and shown.stdout.strip() == env.status()["web_url"]
    assert f"web app {env.status()['web_url']}" in env.cli("status").stdout
    live = json.loads(env.cli("status", "--json").stdout)
    assert live["status"]["web_url"].startswith(f"http://127.0.0.1:{client.port}/?token=")
