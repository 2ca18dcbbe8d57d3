"""What `pip install .` ships: every file the package reads at run time (the README's first command is a
plain install, which an editable install used by the tests would not catch)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_every_data_file(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("chromatica_watch-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    data = ROOT / "chromatica_watch" / "data"
    wanted = {p.relative_to(ROOT).as_posix() for p in data.rglob("*") if p.is_file()}
    assert {"chromatica_watch/data/config.toml", "chromatica_watch/data/web/index.html"} <= wanted
    assert wanted - shipped == set()
    # A plain `pip install .` reads every format and draws its progress bars: no extra needed for them.
    metadata = zipfile.ZipFile(wheel).read(next(n for n in shipped if n.endswith(".dist-info/METADATA")))
    plain = {line.split(":", 1)[1].strip().split(">")[0].split("<")[0].strip()
             for line in metadata.decode().splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert {"rawpy", "pillow-jxl-plugin", "tqdm", "pillow-heif"} <= plain, plain


def _readme_commands() -> list[str]:
    """The shell commands of the README's first two code blocks: install-and-run, install-and-test."""
    blocks = (ROOT / "README.md").read_text().split("```sh\n")[1:3]
    return [block.split("```")[0].strip() for block in blocks]


def test_both_readme_commands_install_through_the_lock_and_ci_runs_the_test_command() -> None:
    run, test = _readme_commands()
    assert run.endswith("chromatica-watch run") and test.endswith("python -m pytest -q")
    for command in (run, test):
        assert "pip install -c constraints.txt " in command, command
    assert "ruff check ." in test and "bin/mypy" in test
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test  # CI runs exactly the README's test command


def test_the_lock_pins_every_dependency_within_pyproject_ranges() -> None:
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            pinned[name.lower().replace("_", "-")] = version
    wanted = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        wanted += [Requirement(r) for r in extra]
    wanted = [r for r in wanted if r.name != project["name"]]
    assert len(wanted) > 20
    for req in wanted:
        name = req.name.lower().replace("_", "-")
        assert name in pinned, f"{name} is not in constraints.txt"
        assert req.specifier.contains(pinned[name]), f"{name}=={pinned[name]} is outside {req.specifier}"
        assert any(s.operator == ">=" for s in req.specifier), f"{name} has no lower bound"
        assert any(s.operator == "<" for s in req.specifier), f"{name} has no upper bound"
