"""The import graph of gliomagen: packages import only downward, and no two files import each other.

Every import counts, at module top or inside a function: the graph is read from the source with
:mod:`ast`, not from what happens to be imported at run time. Type-only imports (``if
TYPE_CHECKING:``) count for the direction of the layers but not for file cycles (they never run).
The allowed direction is written once, in ``LAYERS`` below and in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "gliomagen"

# lowest first; a module may import its own package and any package of a lower layer
LAYERS: list[set[str]] = [
    {"", "errors"},  # "" = gliomagen/__init__.py (the package's constants)
    {"io", "reference"},  # reference: the shipped model file and its path
    {"config"},
    {"data"},
    {"models"},
    {"generation"},
    {"evaluation"},
    {"training"},
    {"report", "export"},
    {"bench"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}


def top_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    is_pkg = MODULES[module].name == "__init__.py"
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _import_nodes(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every import statement under ``node``, with whether it sits in an ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, type_only
        yield from _import_nodes(child, type_only or _is_type_checking(child))


def imports_of(module: str, with_type_only: bool = True) -> set[str]:
    """gliomagen modules that ``module`` imports (a name that is a submodule counts as it)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node, type_only in _import_nodes(tree):
        if type_only and not with_type_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            assert isinstance(node, ast.ImportFrom)
            target = resolve(module, node)
            subs = [f"{target}.{a.name}" for a in node.names]
            # ``from pkg import submodule`` depends on the submodule, not on the package's other names
            targets = subs if all(s in MODULES for s in subs) else [*subs, target]
        for t in targets:
            while t and t not in MODULES:  # ``from pkg import name``: name is not a module
                t = t.rpartition(".")[0]
            if t.startswith("gliomagen") and t != module:
                found.add(t)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}
# what runs at import time: ``if TYPE_CHECKING:`` imports cannot form a cycle
RUNTIME_GRAPH = {m: imports_of(m, with_type_only=False) for m in MODULES}


def upward(src: str, dst: str) -> bool:
    a, b = top_package(src), top_package(dst)
    if a == b:
        return False
    return RANK[b] >= RANK[a]  # two packages of one layer do not import each other


def test_every_package_has_a_layer():
    missing = {top_package(m) for m in MODULES} - set(RANK)
    assert not missing, f"packages without a layer in LAYERS: {sorted(missing)}"


def test_packages_import_only_downward():
    bad = sorted(
        f"{MODULES[s].relative_to(SRC)} imports {d}"
        for s, targets in GRAPH.items()
        for d in targets
        if upward(s, d)
    )
    assert not bad, "upward imports:\n" + "\n".join(bad)


def file_cycles(graph: dict[str, set[str]], limit: int = 20) -> list[list[str]]:
    """Cycles of the file graph: graphlib names one; drop its last edge and look again."""
    graph = {k: set(v) for k, v in graph.items()}
    found = []
    while len(found) < limit:
        try:
            tuple(graphlib.TopologicalSorter(graph).static_order())
            return found
        except graphlib.CycleError as e:
            cycle = e.args[1]  # [a, ..., a]: each node imports the one before it
            found.append(cycle)
            graph[cycle[1]].discard(cycle[0])
    return found


def test_no_file_cycles():
    # a package's __init__ re-exporting its own modules is not a cycle unless a module of it
    # imports the package back
    cycles = file_cycles(RUNTIME_GRAPH)
    assert not cycles, "import cycles between files:\n" + "\n".join(
        " -> ".join(reversed(c)) for c in cycles
    )


def test_the_checker_finds_every_cycle():
    g = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": set()}
    assert sorted(len(c) for c in file_cycles(g)) == [3, 4]


def test_the_checker_sees_an_upward_import_inside_a_function():
    """The graph is read from the source, function bodies included (a check that cannot pass)."""
    src = "def f():\n    from gliomagen.training import train\n"
    node = ast.parse(src).body[0].body[0]  # type: ignore[attr-defined]
    assert isinstance(node, ast.ImportFrom)
    assert upward("gliomagen.data.store", resolve("gliomagen.data.store", node))
    assert not upward("gliomagen.training.loop", "gliomagen.data.store")
