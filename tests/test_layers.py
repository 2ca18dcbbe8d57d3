"""The folder tree is the architecture, and the imports keep it so: read from the source (ast), every
import of the package goes down the layer order or stays in its own subpackage, nothing imports in a
cycle, and each outside library with an owner is imported by its owner alone. Also the size limits."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "chromatica_watch"

# Lowest first: a module may import its own subpackage and those before it, never one after it.
LAYERS = ["core", "colour", "imaging", "storage", "ingest", "search", "offline", "serving", "daemon", "access",
          "cli"]

# Outside library -> the one module (or subpackage, ending in "/") that may import it.
OWNERS = {
    "duckdb": "storage/catalog/", "pyarrow": "storage/catalog/",
    "faiss": "storage/index.py",
    "watchdog": "daemon/watcher.py",
    "starlette": "serving/web.py", "uvicorn": "serving/web_server.py",
    "dask": "ingest/cluster.py", "distributed": "ingest/cluster.py",
    "pebble": "ingest/pool.py",
    "cv2": "imaging/", "PIL": "imaging/", "rawpy": "imaging/", "pillow_heif": "imaging/", "pillow_jxl": "imaging/",
    "xxhash": "core/hashing.py",
    "webcolors": "colour/names.py",
    "platformdirs": "core/config.py",
    "numba": "colour/kernels.py",
    "libxmp": "imaging/sidecars.py",
    "tqdm": "cli/progress.py",
}
MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 300


def modules() -> dict[str, ast.Module]:
    return {p.relative_to(PACKAGE).as_posix(): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def dotted(rel: str) -> str:
    parts = rel.removesuffix(".py").split("/")
    return ".".join(["chromatica_watch", *(parts[:-1] if parts[-1] == "__init__" else parts)])


def imported(rel: str, tree: ast.Module) -> tuple[set[str], set[str]]:
    """(modules of the package, top-level outside libraries) that a module imports, anywhere in it."""
    inside, outside = set(), set()
    package = dotted(rel) if rel.endswith("__init__.py") else dotted(rel).rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                (inside if a.name.startswith("chromatica_watch") else outside).add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
                inside.add(name)
            elif node.module and node.module.startswith("chromatica_watch"):
                inside.add(node.module)
                inside.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
            elif node.module:
                outside.add(node.module)
    return inside, {m.split(".")[0] for m in outside}


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_is_in_a_layer() -> None:
    loose = [rel for rel in modules() if "/" not in rel and rel not in ("__init__.py", "__main__.py")]
    assert loose == [], "modules belong in a subpackage by purpose"
    assert {rel.split("/")[0] for rel in modules() if "/" in rel} == set(LAYERS)


def test_imports_go_down_the_layers() -> None:
    wrong = []
    for rel, tree in modules().items():
        mine = layer_of(dotted(rel))
        if mine is None:
            continue  # the package's own __init__ and __main__ stand on top
        for name in imported(rel, tree)[0]:
            theirs = layer_of(name)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine):
                wrong.append(f"{rel} ({mine}) imports {name} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    trees = modules()
    known = {dotted(rel): rel for rel in trees}
    graph: dict[str, set[str]] = defaultdict(set)
    for rel, tree in trees.items():
        for name in imported(rel, tree)[0]:
            if name in known and name != dotted(rel) and not rel.endswith("__init__.py"):
                graph[dotted(rel)].add(name)
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
                return True
            if nxt not in state and visit(nxt, [*path, nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(graph):
        if start not in state and visit(start, [start]):
            break
    assert not cycle, " -> ".join(cycle)


def test_each_outside_library_has_one_owner() -> None:
    wrong = []
    for rel, tree in modules().items():
        for lib in imported(rel, tree)[1]:
            owner = OWNERS.get(lib)
            if owner is not None and not (rel.startswith(owner) if owner.endswith("/") else rel == owner):
                wrong.append(f"{rel} imports {lib}, which {owner} owns")
    assert not wrong, "\n".join(wrong)
    assert [owner for owner in OWNERS.values() if not (PACKAGE / owner).exists()] == []  # owners named exist


def test_sizes() -> None:
    big_modules, big_classes = [], []
    for rel, tree in modules().items():
        lines = len((PACKAGE / rel).read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            big_modules.append(f"{rel}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                n = node.end_lineno - node.lineno + 1
                if n > MAX_CLASS_LINES:
                    big_classes.append(f"{rel}: class {node.name}: {n} lines")
    assert not big_modules and not big_classes, "\n".join(big_modules + big_classes)
