"""The web app at the HTTP level, on a real daemon: the guard (token, Host, cross-origin writes, no CORS,
CSP), searches identical to the CLI's, uploads and the bound on their decodes, ids that do not exist or
cannot, names that are not UTF-8, path traversal, thumbnails and placeholders."""

from __future__ import annotations

import http.client
import json
import os
import stat
import struct
import subprocess
import threading
import time
import zlib
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
    assert status == 400 and "a colour name" in error["error"]
    status, error = client.json("GET", "/api/search?color=dusty%20rse")
    assert status == 400 and "did you mean 'dusty rose'" in error["error"]
    status, named = client.json("GET", "/api/search?color=dusty%20rose:0.3&k=2")  # the xkcd survey's names too
    assert status == 200 and named
    status, listed = client.json("GET", "/api/colour-names")  # what the app resolves typed names with
    assert status == 200 and len(listed["names"]) == 949 + 147 - 49 and len(listed["css"]) == 147
    assert listed["names"]["mustard"] == "#ceb301" and listed["names"]["teal"] == "#008080"  # CSS first
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


def one_line_error(headers: dict[str, str], body: bytes) -> str:
    """The error of a refused request: one line of JSON, nothing of a traceback."""
    assert headers["content-type"].startswith("application/json"), (headers, body)
    error = json.loads(body)["error"]
    assert isinstance(error, str) and "\n" not in error and "Traceback" not in error, error
    return error


def no_traceback_since(env: DaemonEnv, mark: int) -> None:
    """Nothing the requests since `mark` (a length of the log) did was logged as an error or a traceback."""
    logged = env.log()[mark:]
    assert "Traceback" not in logged and " ERROR " not in logged, logged
    assert "Traceback" not in env.stderr(), env.stderr()[-3000:]


def test_a_name_that_is_not_utf8_is_shown_escaped_and_its_file_served(app: tuple[DaemonEnv, App]) -> None:
    env, client = app
    write_rgb(env.pictures / os.fsdecode(b"caf\xe9.jpg"), solid((200, 0, 200)))
    (env.pictures / os.fsdecode(b"d\xff")).mkdir()
    (env.pictures / os.fsdecode(b"d\xff") / "bad.png").write_bytes(b"not an image")
    wait_until(lambda: env.idle_with(5) and env.status()["counts"]["failed"] == 1, timeout=60)
    mark = len(env.log())

    status, found = client.json("GET", "/api/search?color=%23c800c8&k=1")
    assert status == 200 and found[0]["relative_path"] == "caf\\xe9.jpg"  # the byte, escaped: displayable
    assert found[0]["path"] == str(env.pictures) + "/caf\\xe9.jpg"
    image_id = found[0]["id"]
    status, detail = client.json("GET", f"/api/images/{image_id}")  # the detail view
    assert status == 200, detail
    assert detail["path"] == found[0]["path"] and detail["relative_path"] == "caf\\xe9.jpg"
    assert detail["dominant_colors"] == found[0]["dominant_colors"] and detail["width"] == 64
    for url in (detail["thumbnail"], detail["large"]):  # the file itself is still served
        status, headers, png = client.request("GET", url)
        assert status == 200 and headers["content-type"] == "image/png" and png.startswith(b"\x89PNG"), url
        text = png_text_chunks(png)
        assert text is not None and text["Thumb::URI"].endswith("/caf%E9.jpg")
    status, similar = client.json("GET", f"/api/similar/{image_id}?k=2")
    assert status == 200 and similar[0]["id"] == image_id and similar[0]["relative_path"] == "caf\\xe9.jpg"
    status, shown = client.json("GET", "/api/status")
    assert status == 200 and [f["path"] for f in shown["failures"]] == [str(env.pictures) + "/d\\xff/bad.png"]
    no_traceback_since(env, mark)


def test_bad_ids_and_bad_bytes_get_a_one_line_4xx(app: tuple[DaemonEnv, App]) -> None:
    env, client = app
    mark = len(env.log())
    cannot_exist = ("99999999999999999999999", "9223372036854775808", "18446744073709551616", "0", "9" * 5000)
    not_ids = ("-1", "abc", "1.5", "1e3", "%FF", "%EF%BC%91", "%20", "0x10")
    for route in ("/api/images/", "/thumbnails/", "/api/similar/"):
        for text in cannot_exist:
            status, headers, body = client.request("GET", route + text)
            assert status == 404 and one_line_error(headers, body) == "no such image in the index", (route, text)
        for text in not_ids:
            status, headers, body = client.request("GET", route + text)
            assert status == 400 and one_line_error(headers, body).startswith("bad image id "), (route, text, body)
    for method, path, expected in (
            ("GET", "/nothing/here", 404), ("GET", "/api/images/1/more", 404), ("PUT", "/api/status", 405),
            ("DELETE", "/api/images/1", 405), ("POST", "/api/images/1", 405), ("GET", "/static/%FF", 404),
            ("GET", "/thumbnails/1?size=%FF", 400), ("GET", "/api/search?color=%FF", 400),
            ("GET", "/api/search?color=teal&k=99999999999999999999999", 400),
            ("GET", "/api/search?color=teal&k=" + "9" * 5000, 400), ("GET", "/api/search?color=teal&k=-1", 400),
            ("GET", "/api/search?color=teal&in=%FF%FE", 400), ("GET", "/api/search?color=teal&taken_after=%00", 400),
            ("GET", "/api/similar/1?k=abc", 400)):
        status, headers, body = client.request(method, path, body=b"" if method != "GET" else None)
        assert status == expected, (method, path, status, body)
        one_line_error(headers, body)
    no_traceback_since(env, mark)


def test_a_request_from_another_origin_cannot_change_anything(app: tuple[DaemonEnv, App]) -> None:
    env, client = app
    (env.pictures / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 64)
    wait_until(lambda: env.status().get("counts", {}).get("failed") == 1, timeout=60)
    reads_of_it = "broken.jpg: "  # each read of it logs why it cannot be indexed
    reads = env.log().count(reads_of_it)
    assert reads >= 1
    own = f"http://127.0.0.1:{client.port}"
    other_port = f"http://127.0.0.1:{client.port + 1}"  # another app on localhost: same-site, not same-origin
    refused = [{"Origin": "http://evil.example"}, {"Origin": other_port}, {"Origin": "null"},
               {"Origin": f"http://localhost:{client.port + 1}"}, {"Origin": f"https://127.0.0.1:{client.port}"},
               {"Sec-Fetch-Site": "same-site", "Origin": other_port}, {"Sec-Fetch-Site": "cross-site"},
               {"Sec-Fetch-Site": "same-site", "Origin": own}]
    for headers in refused:
        status, answer, body = client.request("POST", "/api/retry-failed", body=b"", headers=headers)
        assert status == 403, (headers, status, body)
        assert "may not change anything here" in one_line_error(answer, body), headers
        status, answer, body = client.request("POST", "/api/search?k=1", body=(env.pictures / "red.png").read_bytes(),
                                              headers=headers)
        assert status == 403, (headers, body)
    time.sleep(1.0)  # a file queued again is read within settle_seconds (0.3 s) and a batch's delay
    assert env.log().count(reads_of_it) == reads and env.status()["counts"]["failed"] == 1  # nothing was retried
    allowed = [{}, {"Sec-Fetch-Site": "same-origin", "Origin": own}, {"Sec-Fetch-Site": "none"}, {"Origin": own},
               {"Origin": f"http://localhost:{client.port}"}]
    for headers in allowed:  # the app's own page (an older browser: Origin alone), a script with the token
        status, answer, body = client.request("POST", "/api/retry-failed", body=b"", headers=headers)
        assert status == 200 and json.loads(body)["requeued"] == 1, (headers, body)
        wait_until(lambda: env.log().count(reads_of_it) > reads and env.status()["counts"]["failed"] == 1)
        reads = env.log().count(reads_of_it)
    status, _, body = client.request("POST", "/api/search?k=1", body=(env.pictures / "red.png").read_bytes(),
                                     headers={"Sec-Fetch-Site": "same-origin", "Origin": own})
    assert status == 200 and json.loads(body)[0]["path"].endswith("red.png")
    status, _, _ = client.request("GET", "/api/status", headers={"Origin": "http://evil.example",
                                                                "Sec-Fetch-Site": "cross-site"})
    assert status == 200  # reading is what the token is for; only changes are refused


def bilevel_png(width: int, height: int) -> bytes:
    """A 1-bit PNG of a striped grey: a few KB on disk, width x height RGB pixels once decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    row = b"\0" + b"\x55" * ((width + 7) // 8)
    squeeze = zlib.compressobj(9)
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_example_image_decodes_are_bounded_and_say_busy(app: tuple[DaemonEnv, App]) -> None:
    env, client = app
    assert env.proc is not None
    bomb = bilevel_png(12000, 12000)  # 144 million pixels, under max_pixels: ~300 MB to decode
    assert len(bomb) < 64 * 1024
    mark = len(env.log())
    Path(f"/proc/{env.proc.pid}/clear_refs").write_text("5")  # the peak (VmHWM) counts from here
    before = memory_kb(env.proc.pid, "VmRSS")
    start = threading.Barrier(6)
    answers: list[tuple[int, dict[str, str], bytes]] = []

    def upload() -> None:
        start.wait()
        answers.append(client.request("POST", "/api/search?k=1", body=bomb))
    uploads = [threading.Thread(target=upload) for _ in range(6)]
    for t in uploads:
        t.start()
    for t in uploads:
        t.join(timeout=120)
    peak_mb = (memory_kb(env.proc.pid, "VmHWM") - before) / 1024

    statuses = sorted(status for status, _, _ in answers)
    assert peak_mb < 700, f"six concurrent decodes took the daemon {peak_mb:.0f} MB above where it was {statuses}"
    assert len(answers) == 6 and set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    for status, headers, body in answers:
        if status == 503:
            assert one_line_error(headers, body).startswith("busy: ")
    status, found = client.json("POST", "/api/search?k=1", (env.pictures / "red.png").read_bytes())
    assert status == 200 and found[0]["path"].endswith("red.png")  # the slots and the budget are free again
    no_traceback_since(env, mark)


def test_an_example_image_declaring_more_than_max_pixels_is_413(app: tuple[DaemonEnv, App]) -> None:
    env, client = app
    mark = len(env.log())
    status, headers, body = client.request("POST", "/api/search?k=1", body=bilevel_png(13000, 12000))
    assert status == 413, body
    error = one_line_error(headers, body)
    assert error.startswith("the image is too large: 13000x12000") and "max_pixels" in error
    no_traceback_since(env, mark)
