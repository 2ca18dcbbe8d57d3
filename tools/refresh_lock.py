#!/usr/bin/env python3
"""Refresh constraints.txt, the lock both README commands install through, to the newest releases.

    python3 tools/refresh_lock.py            # resolve, install in a scratch venv, run the whole suite, rewrite
    python3 tools/refresh_lock.py --dry-run  # resolve and report only

It resolves the newest releases that pyproject.toml's ranges allow (uv pip compile, every extra, for
Python 3.11 and newer on any platform), installs them into a scratch virtual environment, runs the
README's test command there (ruff, mypy, pytest), and only if that passes writes the new constraints.txt.
It also names the newer releases that pyproject.toml's upper bounds keep out: widen a range only after
trying the release the same way. CI never runs this; it installs from the lock.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "constraints.txt"
COMPILE = ["pip", "compile", "--universal", "--fork-strategy", "fewest", "--python-version", "3.11", "--upgrade",
           "--no-header", "--quiet"]
HEADER = """\
# The tested set: both README commands install through this file (pip install -c constraints.txt ...).
# Made by `python3 tools/refresh_lock.py` (uv pip compile of pyproject.toml, every extra, Python >= 3.11),
# which rewrites it only after the whole suite passed with it. Do not edit by hand.
"""
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;]+)")


def run(cmd: list[str], **kw: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kw)  # type: ignore[call-overload]


def pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if m := _PIN.match(line):
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def upper_bounds() -> dict[str, str]:
    """Each package pyproject.toml names (the project's own extras left out) -> its upper bound ("" if none)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    bounds = {}
    for req in reqs:
        name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()
        if name != project["name"]:
            bound = re.search(r"<\s*([0-9][^,;\s]*)", req)
            bounds[name] = bound.group(1) if bound else ""
    return bounds


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version.split("+")[0])[:4])


def held_back(uv: str, scratch: Path, locked: dict[str, str]) -> list[str]:
    """Direct dependencies whose newest release pyproject.toml's upper bounds keep out of the lock."""
    bounds = upper_bounds()
    unbounded = scratch / "unbounded.in"
    unbounded.write_text("\n".join(sorted(bounds)) + "\n")
    out = scratch / "unbounded.txt"
    try:
        run([uv, *COMPILE, str(unbounded), "-o", str(out)])  # a plain list: no extras to ask for
    except subprocess.CalledProcessError:
        return ["(could not resolve the newest releases of all dependencies together)"]
    newest = pins(out.read_text())
    return [f"{name}: lock {locked.get(name, '-')}, newest {newest[name]} (pyproject.toml: <{bound})"
            for name, bound in sorted(bounds.items())
            if bound and name in newest and _numbers(newest[name]) >= _numbers(bound)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="resolve and report; install and test nothing")
    ap.add_argument("--keep", action="store_true", help="keep the scratch environment (its path is printed)")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="chromatica-lock-"))
    try:
        venv = scratch / "venv"
        run([sys.executable, "-m", "venv", str(venv)])
        bin_dir = venv / "bin"
        run([str(bin_dir / "pip"), "install", "--quiet", "uv"])
        uv = str(bin_dir / "uv")
        new_lock = scratch / "constraints.txt"
        run([uv, *COMPILE, "--all-extras", "pyproject.toml", "-o", str(new_lock)])
        new_lock.write_text(HEADER + new_lock.read_text())
        old, new = pins(LOCK.read_text()) if LOCK.exists() else {}, pins(new_lock.read_text())
        changed = [f"{n}: {old.get(n, '-')} -> {v}" for n, v in sorted(new.items()) if old.get(n) != v]
        print("\nchanged in the lock:\n  " + ("\n  ".join(changed) or "nothing"))
        kept_out = held_back(uv, scratch, new)
        print("newer releases outside pyproject.toml's ranges:\n  " + ("\n  ".join(kept_out) or "none"))
        if args.dry_run:
            return 0
        # the README's test command, in the scratch venv, installing through the new lock
        run([str(bin_dir / "pip"), "install", "--quiet", "-c", str(new_lock), "-e", ".[test]"])
        run([str(bin_dir / "ruff"), "check", "."])
        run([str(bin_dir / "mypy")])
        run([str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"])
        if not changed:
            print(f"\nthe suite passed with the newest releases, which {LOCK.relative_to(ROOT)} already pins")
            return 0
        shutil.copyfile(new_lock, LOCK)
        print(f"\nthe suite passed: {LOCK.relative_to(ROOT)} rewritten; commit it with the figures")
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"\nfailed: {' '.join(map(str, exc.cmd))} (exit {exc.returncode}); the lock is unchanged",
              file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"scratch environment kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
