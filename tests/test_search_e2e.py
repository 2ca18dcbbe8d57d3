"""Search end to end: the CLI and the Python API, through a running daemon and without one."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from chromatica_watch.access.api import Match, search, search_daemon
from chromatica_watch.core import config as config_mod
from chromatica_watch.core.errors import UsageError
from chromatica_watch.search.query import color_query_histogram, parse_colors
from tests.conftest import photo, solid, wait_until, write_rgb
from tests.daemon_harness import DaemonEnv

COLORS = {"red": (255, 0, 0), "blue": (0, 68, 255), "teal": (0, 128, 128), "yellow": (255, 230, 0)}


def search_json(env: DaemonEnv, *args: str) -> list[dict[str, object]]:
    proc = env.cli("search", *args, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return list(json.loads(proc.stdout))


def paths(results: list[dict[str, object]]) -> list[str]:
    return [str(r["path"]) for r in results]


def test_search_by_color_and_by_image_same_with_and_without_the_daemon(daemon_env: DaemonEnv,
                                                                       tmp_path: Path) -> None:
    env = daemon_env
    env.start()
    for name, rgb in COLORS.items():
        write_rgb(env.pictures / "solid" / f"{name}.png", solid(rgb))
    for name in ("coffee", "astronaut", "rocket"):
        write_rgb(env.pictures / f"{name}.jpg", photo(name), IMWRITE_JPEG_QUALITY=90)
    example = write_rgb(tmp_path / "example.jpg", photo("coffee"), IMWRITE_JPEG_QUALITY=90)
    wait_until(lambda: env.idle_with(7), timeout=60)

    queries = {
        "red": ("--color", "#f00:1", "-k", "3"),  # weight 1: the whole palette (alone, "#f00" means contains)
        "teal+yellow": ("--color", "#008080:0.8", "--color", "#ffe600:0.2", "-k", "7"),
        "image": ("--image", str(example), "-k", "3"),
    }
    with_daemon = {name: search_json(env, *q) for name, q in queries.items()}
    assert paths(with_daemon["red"])[0] == str(env.pictures / "solid" / "red.png")
    assert with_daemon["red"][0]["score"] == 0.0
    assert paths(with_daemon["teal+yellow"])[0] == str(env.pictures / "solid" / "teal.png")
    assert len(with_daemon["teal+yellow"]) == 7
    assert paths(with_daemon["image"])[0] == str(env.pictures / "coffee.jpg")
    shares = [c["share"] for c in with_daemon["image"][0]["dominant_colors"]]  # type: ignore[union-attr]
    assert 1 <= len(shares) <= 5 and shares == sorted(shares, reverse=True) and 0.5 < sum(shares) <= 1.0001

    # The catalog is the daemon's: these answers came over the socket, and so does the API's.
    cfg = config_mod.load(env.config)
    direct = search_daemon(cfg.socket_path, color_query_histogram(parse_colors(["#f00"])), 3)
    assert [m.to_json() for m in direct] == with_daemon["red"]
    assert [m.to_json() for m in search(colors="#f00:1", k=3, config=cfg)] == with_daemon["red"]

    table = env.cli("search", "--color", "#f00:1", "-k", "2")
    assert table.returncode == 0, table.stderr
    assert str(env.pictures / "solid" / "red.png") in table.stdout.splitlines()[1]
    bad = env.cli("search", "--color", "#12345")
    assert bad.returncode == 2 and "bad color '#12345'" in bad.stderr
    with pytest.raises(UsageError, match="number of results"):
        search_daemon(cfg.socket_path, color_query_histogram(parse_colors(["#f00"])), 100_000)

    assert env.stop() == 0
    without_daemon = {name: search_json(env, *q) for name, q in queries.items()}
    assert without_daemon == with_daemon
    index_dir = search_json(env, "--color", "#f00:1", "-k", "3", "--index-dir", str(env.index_dir))
    assert index_dir == with_daemon["red"]


def test_bad_queries_exit_2_with_one_line(daemon_env: DaemonEnv, tmp_path: Path) -> None:
    env = daemon_env
    (tmp_path / "notes.jpg").write_text("not an image")
    for args, fragment in [
        ((), "nothing to search for"),
        (("--color", "#f00", "--image", "x.jpg"), "not both"),
        (("--color", "#f00:-1"), "negative"),
        (("--color", "#f00:0", "--color", "#00f:0"), "all weights are zero"),
        (("--image", str(tmp_path / "missing.jpg")), "missing.jpg"),
        (("--image", str(tmp_path / "notes.jpg")), "notes.jpg"),
        (("--color", "#f00", "-k", "0"), "-k"),
    ]:
        proc = env.cli("search", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], (args, proc.stderr)


# A client process: searches the daemon in a loop until told to stop, one JSON line per query.
CLIENT = """
import json, sys, time
from pathlib import Path
from chromatica_watch.access.api import search_daemon
from chromatica_watch.search.query import color_query_histogram, parse_colors
sock, out, stop, seed = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
queries = [color_query_histogram(parse_colors([c])) for c in ("#ff00ff", "#00ff00", "#ff00ff:0.7 #0000ff:0.3")]
deadline = time.monotonic() + 240
with out.open("w") as f:
    n = seed
    while not stop.exists() and time.monotonic() < deadline:
        sent = time.time()
        try:
            line = {"sent": sent, "paths": [m.path for m in search_daemon(sock, queries[n % 3], 20)]}
        except Exception as exc:
            line = {"sent": sent, "error": repr(exc)}
        f.write(json.dumps(line) + "\\n")
        f.flush()
        n += 1
"""


def test_searches_during_heavy_indexing_never_fail_or_return_deleted_files(daemon_env: DaemonEnv,
                                                                          tmp_path: Path) -> None:
    env = daemon_env
    env.write_config(workers=2, batch_size=128)
    doomed = [write_rgb(env.pictures / "doomed" / f"m{i:02d}.png", solid((255, 0, 255), (8, 8)))
              for i in range(20)]
    env.start()
    wait_until(lambda: env.idle_with(20), timeout=60)
    cfg = config_mod.load(env.config)
    stop = tmp_path / "stop"
    outs = [tmp_path / f"client{i}.jsonl" for i in range(3)]
    clients = [subprocess.Popen([sys.executable, "-c", CLIENT, str(cfg.socket_path), str(out), str(stop), str(i)],
                                stderr=subprocess.PIPE) for i, out in enumerate(outs)]
    try:
        wait_until(lambda: all(out.exists() and out.read_text().count("\n") > 0 for out in outs), timeout=60)
        rng = np.random.default_rng(1)
        created = []
        deleted_at = confirmed_at = 0.0
        for i in range(2000):
            color = tuple(int(c) for c in rng.integers(0, 200, 3))  # never magenta
            created.append(write_rgb(env.pictures / f"burst{i // 200}" / f"{i:04d}.png",
                                     solid(color, (8, 8))))  # type: ignore[arg-type]
            if i == 600:
                deleted_at = time.time()
                for p in doomed:
                    p.unlink()
            if i > 600 and not confirmed_at and env.status().get("counts", {}).get("tombstoned") == 20:
                confirmed_at = time.time()
        wait_until(lambda: env.status().get("counts", {}).get("tombstoned") == 20, timeout=60)
        confirmed_at = confirmed_at or time.time()
        wait_until(lambda: env.idle_with(2000), timeout=240)
        last_query = time.time()
        wait_until(lambda: all(json.loads(out.read_text().splitlines()[-1])["sent"] > last_query for out in outs),
                   timeout=30)
    finally:
        stop.touch()
        for c in clients:
            c.wait(timeout=30)
    assert env.proc is not None and env.proc.poll() is None, env.stderr()
    for c in clients:
        assert c.returncode == 0, c.stderr.read().decode() if c.stderr else ""

    lines = [json.loads(line) for out in outs for line in out.read_text().splitlines()]
    errors = [line for line in lines if "error" in line]
    assert not errors, errors[:3]
    assert len(lines) >= 30, f"only {len(lines)} queries ran"
    doomed_paths = {str(p) for p in doomed}
    known = doomed_paths | {str(p) for p in created}
    assert all(set(line["paths"]) <= known for line in lines)
    # The deleted files were found while they existed (so the check below can fail) ...
    assert any(doomed_paths & set(line["paths"]) for line in lines if line["sent"] < deleted_at)
    # ... and never once their tombstones were committed, while 2,000 files were being indexed.
    after = [line for line in lines if line["sent"] > confirmed_at]
    assert after and not any(doomed_paths & set(line["paths"]) for line in after)
    assert env.stop() == 0


def test_match_round_trips_through_json() -> None:
    m = Match(path="/p/a.jpg", relative_path="a.jpg", root="/p", id=3, score=1.5, similarity=0.9,
              dominant_colors=(("#ff0000", 0.75), ("#0000ff", 0.25)))
    assert Match.from_json(json.loads(json.dumps(m.to_json()))) == m


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) listening on this port."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                    found.add(address)
    return found


def test_socket_is_private_and_tcp_only_on_loopback_when_configured(daemon_env: DaemonEnv) -> None:
    env = daemon_env
    port = free_port()
    env.write_config(tcp_port=port)
    write_rgb(env.pictures / "red.png", solid((255, 0, 0)))
    env.start()
    wait_until(lambda: env.idle_with(1), timeout=60)
    cfg = config_mod.load(env.config)
    assert stat.S_IMODE(os.stat(cfg.socket_path).st_mode) == 0o600
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else
    query = color_query_histogram(parse_colors(["#f00"]))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(json.dumps({"op": "search", "histogram": query.tolist(), "k": 1}).encode() + b"\n")
        response = json.loads(s.makefile("rb").readline())
    assert response["ok"] and response["results"][0]["path"] == str(env.pictures / "red.png")
    assert env.stop() == 0
