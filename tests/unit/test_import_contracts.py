"""Apps import each other in one direction only, and ``worker.ml`` stays free of Django.

Two checks over the static import graph (grimp, the library behind import-linter):
- the contracts in ``pyproject.toml`` (``[tool.importlinter]``): layers, a pure ``worker.ml``, independent
  bottom apps;
- no cycle between the apps (``worker.ml`` counted as its own package), with the cycle named when there is one.
"""

from __future__ import annotations

import subprocess
import sys
from itertools import permutations
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
APPS = ("catalog", "accounts", "registry", "worker", "predictions")


def _package(module: str) -> str:
    """The app a module belongs to; ``worker.ml`` is a package of its own."""
    if module == "worker.ml" or module.startswith("worker.ml."):
        return "worker.ml"
    return module.split(".")[0]


def app_dependencies(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """``app -> apps it imports`` (module-level and function-body imports alike), from a grimp graph."""
    edges: dict[str, set[str]] = {}
    for importer in graph.modules:
        source = _package(importer)
        if source not in (*APPS, "worker.ml"):
            continue
        for imported in graph.find_modules_directly_imported_by(importer):
            target = _package(imported)
            if target != source and target in (*APPS, "worker.ml"):
                edges.setdefault(source, set()).add(target)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One dependency cycle as a list of packages (first repeated at the end), or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_names_a_cycle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}}) is None


def test_no_import_cycle_between_apps():
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*APPS, cache_dir=None)
    edges = app_dependencies(graph)
    assert find_cycle(edges) is None, f"import cycle between apps: {' -> '.join(find_cycle(edges))}"
    # The direction the layout promises, spelled out: nothing below imports what sits above it.
    order = ["worker.ml", "catalog", "accounts", "registry", "worker", "predictions"]
    for lower, upper in permutations(order, 2):
        if order.index(lower) < order.index(upper) and {lower, upper} != {"catalog", "accounts"}:
            assert upper not in edges.get(lower, set()), f"{lower} imports {upper}, which sits above it"


def test_import_linter_contracts_are_kept():
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
