"""One benchmark, this tree beside an earlier commit, in the same run: rounds alternate between the two.

    .venv/bin/python bench/against.py REF [--rounds N] -- bench_build.py --sections startup

The earlier commit is checked out as a git worktree in bench/out/against/<sha>/src with a venv of its own,
installed through this tree's constraints.txt (the same releases on both sides: only the code differs).
Both sides share the benchmark's cache folder (--out bench/out: the same corpus and data sets); after
each run its results JSON (the newest *.json the run wrote in bench/out) is kept as
bench/out/against/<label>-<round>.json. At the end every number both sides reported is printed with
both medians and their ratio (this tree / REF), for the keys whose name contains --keys (default all).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


def prepare(ref: str) -> tuple[Path, Path]:
    """The worktree of REF and its venv's python, made once."""
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    base = OUT / "against" / sha
    src, venv = base / "src", base / "venv"
    if not src.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(src), sha], cwd=ROOT, check=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"), "-e",
                        f"{src}[bench]"], check=True)
    return src, venv / "bin" / "python"


def newest_json(since: float) -> Path | None:
    found = [p for p in OUT.glob("*.json") if p.stat().st_mtime >= since]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a JSON value, by its path (a.b.0.c)."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, int | float):
        return {prefix: float(value)}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    out: dict[str, float] = {}
    for k, v in items:
        out.update(numbers(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ref", help="the earlier commit")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keys", default="", help="show only numbers whose path contains this")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    bench = argv[cut + 1:]  # -- SCRIPT [ARGS]: a script of bench/ and its arguments
    if not bench:
        ap.error("name the benchmark after --: -- SCRIPT [ARGS]")
    src, ref_python = prepare(args.ref)
    sides = {"ref": (ref_python, src / "bench" / bench[0]), "new": (Path(sys.executable), ROOT / "bench" / bench[0])}
    results: dict[str, list[dict[str, float]]] = {"ref": [], "new": []}
    (OUT / "against").mkdir(parents=True, exist_ok=True)
    for r in range(args.rounds):
        for label in (("ref", "new") if r % 2 == 0 else ("new", "ref")):  # alternate who goes first
            python, script = sides[label]
            started = time.time()
            print(f"== round {r + 1}, {label}: {script.relative_to(ROOT) if script.is_relative_to(ROOT) else script}",
                  flush=True)
            subprocess.run([str(python), str(script), *bench[1:], "--out", str(OUT)], cwd=script.parent.parent,
                           check=False)
            written = newest_json(started)
            if written is None:
                print(f"   ({label} wrote no results JSON)")
                continue
            kept = OUT / "against" / f"{label}-{r + 1}.json"
            kept.write_text(written.read_text())
            results[label].append(numbers(json.loads(written.read_text())))
    keys = sorted(set.intersection(*(set(d) for d in results["ref"] + results["new"]))) if all(results.values()) else []
    print(f"\n{'number':60s} {'ref':>12s} {'new':>12s} {'new/ref':>8s}")
    for key in keys:
        if args.keys and args.keys not in key:
            continue
        ref = statistics.median(d[key] for d in results["ref"])
        new = statistics.median(d[key] for d in results["new"])
        ratio = f"{new / ref:8.3f}" if ref else "       -"
        print(f"{key[:60]:60s} {ref:12.4g} {new:12.4g} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
