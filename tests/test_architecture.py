"""The layout docs/ARCHITECTURE.md draws: no import cycles among the package's modules, no function-level imports of
the project's own modules outside the CLI, and each layer importing only the layers below it."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("trajsv_jax", "input_pipeline")
# layer → the layers it may import (besides itself and trajsv_jax.errors / trajsv_jax.config); docs/ARCHITECTURE.md
ALLOWED = {
    "data": set(),
    "models": set(),
    "plots": {"data"},
    "input_pipeline": {"data"},
    "video": {"data", "plots"},
    "prepare": {"data", "plots", "input_pipeline"},
    "training": {"data", "models", "plots", "input_pipeline"},
    "retrieval": {"data", "models", "plots", "input_pipeline", "prepare", "training"},
    "demo": {"data", "prepare", "training", "retrieval"},
    "corpus": {"data", "input_pipeline", "video", "prepare"},
    "cli": {"data", "models", "plots", "input_pipeline", "video", "prepare", "training", "retrieval", "demo", "corpus"},
}
BASE = {"errors", "config", "files"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """The project modules an import statement names (a `from pkg import mod` names pkg.mod when it is a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        parent = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join([*parent, base] if base else parent)
    return [f"{base}.{a.name}" for a in node.names] + [base]


@functools.cache
def project_imports() -> dict[str, dict[str, set[str]]]:
    """module → {"top": imported project modules at module level, "inner": inside functions}."""
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        top = {n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))}
        found: dict[str, set[str]] = {"top": set(), "inner": set()}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = resolve(name, node, path.name == "__init__.py")
                hits = {n for n in names if n in modules and n != name}
                found["top" if node in top else "inner"] |= hits
        graph[name] = found
    return graph


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] != "trajsv_jax" else (parts[1] if len(parts) > 1 else "")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles_among_modules():
    graph = project_imports()
    full = {m: e["top"] | e["inner"] for m, e in graph.items()}
    # a package's __init__ importing its own submodules is how packages export names, not a cycle
    edges = {m: {n for n in e if not n.startswith(m + ".")} for m, e in full.items()}
    assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges))}"


def test_no_function_level_imports_of_project_modules_outside_the_cli():
    inner = {m: sorted(e["inner"]) for m, e in project_imports().items() if e["inner"] and layer(m) != "cli"}
    assert not inner, f"function-level imports (move them to the top, or break the cycle they hide): {inner}"


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for module, found in project_imports().items():
        mine = layer(module)
        if mine in BASE or mine == "":
            continue
        for target in found["top"] | found["inner"]:
            theirs = layer(target)
            if theirs not in BASE | {mine, ""} and theirs not in ALLOWED[mine]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, f"imports against the layering of docs/ARCHITECTURE.md: {wrong}"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
