"""Layers that point one way: no import circle among the project's modules (limuse_edge/, export/ as
limuse_export, runtime/ as limuse_runtime), counting every import statement, those inside functions too.

An import names the module it loads: `from a.b import c` is a.b.c where that is a module, else a.b.
A package's __init__ counts as the module of its own name; importing a.b.c is not counted as importing
a.b (every module would then depend on its package's re-exports)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOTS = {"limuse_edge": "limuse_edge", "limuse_export": "export", "limuse_runtime": "runtime"}


def project_modules() -> dict[str, tuple[Path, bool]]:
    """{dotted name: (file, is_package)}."""
    modules = {}
    for name, folder in ROOTS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [name, *path.relative_to(ROOT / folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph = {}
    for module, (path, is_package) in modules.items():
        package = module if is_package else module.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module
                for alias in node.names:
                    if f"{target}.{alias.name}" in modules:
                        deps.add(f"{target}.{alias.name}")
                    elif target in modules:
                        deps.add(target)
        deps.discard(module)
        graph[module] = deps
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports_inside_functions():
    graph = import_graph()
    assert "limuse_edge.data.dataset" in graph["limuse_edge.data"]  # a function-level import
    assert "limuse_edge.quant" in graph["limuse_edge.model.layers"]


def test_the_finder_reports_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_among_the_project_modules():
    graph = import_graph()
    found = circles(graph)
    detail = ["; ".join(f"{m} -> {sorted(d for d in graph[m] if d in c)}" for m in c) for c in found]
    assert not found, "import circles: " + " | ".join(detail)


def test_the_recipe_module_imports_nothing_of_the_project():
    assert import_graph()["limuse_edge.quant"] == set()
