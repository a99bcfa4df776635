"""Imports run one way: ``keras_spp`` <- ``export`` <- ``recipes``, ``benchmarks``;
recipes and benchmarks never import each other, and no modules import each other
in a cycle. Read from the source with ``ast`` (imports inside functions too), not by
importing it."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("keras_spp", "export", "recipes", "benchmarks")
# Which of the project's packages each one may import (besides itself).
ALLOWED = {
    "keras_spp": set(),
    "export": {"keras_spp"},
    "recipes": {"keras_spp", "export"},
    "benchmarks": {"keras_spp", "export"},
}


def module_name(path, root=ROOT):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree, module, is_package, known):
    """The project modules (names in ``known``) that ``tree`` imports, wherever in the
    file: ``import a.b`` names ``a.b``; ``from a import b`` names ``a.b`` where that is
    a module, else ``a``. Relative imports are resolved against ``module``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            # The deepest project module the name is or lies in (``import a.b.c`` of a
            # function ``c`` names ``a.b``).
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(root=ROOT, packages=PACKAGES):
    """``{module: {project modules it imports}}`` for every .py file of ``packages``."""
    files = {module_name(p, root): p for package in packages for p in sorted((root / package).rglob("*.py"))}
    return {
        module: imported_modules(
            ast.parse(path.read_text(encoding="utf-8"), str(path)), module, path.name == "__init__.py", set(files)
        )
        for module, path in files.items()
    }


def wrong_way_imports(graph, allowed=ALLOWED):
    """``["a.x -> b.y", ...]``: imports from one package into another that ``allowed`` forbids."""
    wrong = []
    for module, targets in sorted(graph.items()):
        package = module.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other != package and other not in allowed.get(package, set()):
                wrong.append(f"{module} -> {target}")
    return wrong


def import_cycles(graph):
    """Every strongly connected set of modules (Tarjan's algorithm), each as a cycle
    through it ``[a, b, ..., a]``: modules that import each other, directly or not."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        # Iterative: an import chain may be deeper than Python's recursion limit.
        work = [(node, iter(sorted(graph.get(node, ()))))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[current] = min(low[current], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[current])
            if low[current] == index[current]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == current:
                        break
                if len(component) > 1 or current in graph.get(current, ()):
                    components.append(set(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(component, graph) for component in components]


def _cycle_through(component, graph):
    """One shortest cycle inside a strongly connected ``component``, from and back to
    its first module (breadth-first, within the component)."""
    start = min(component)
    paths, frontier = {}, [[start]]
    while frontier:
        following = []
        for path in frontier:
            for target in sorted(graph[path[-1]] & component):
                if target == start:
                    return path + [start]
                if target not in paths:
                    paths[target] = path + [target]
                    following.append(paths[target])
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def describe(graph):
    problems = [f"wrong-way import: {edge}" for edge in wrong_way_imports(graph)]
    problems += ["import cycle: " + " -> ".join(cycle) for cycle in import_cycles(graph)]
    return problems


def test_the_checker_reports_a_cycle_and_a_wrong_way_import():
    graph = {
        "keras_spp.a": {"keras_spp.b"},
        "keras_spp.b": {"keras_spp.c"},
        "keras_spp.c": {"keras_spp.a", "export.x"},  # a -> b -> c -> a, and the library importing export
        "export.x": set(),
        "recipes.r": {"export.x", "benchmarks.q"},  # recipes importing benchmarks
        "benchmarks.q": {"keras_spp.a"},
        "keras_spp.d": {"keras_spp.d"},  # a module importing itself counts as a cycle too
    }
    assert wrong_way_imports(graph) == ["keras_spp.c -> export.x", "recipes.r -> benchmarks.q"]
    assert sorted(import_cycles(graph)) == [
        ["keras_spp.a", "keras_spp.b", "keras_spp.c", "keras_spp.a"],
        ["keras_spp.d", "keras_spp.d"],
    ]
    acyclic = {"keras_spp.a": {"keras_spp.b"}, "keras_spp.b": set(), "export.x": {"keras_spp.a", "keras_spp.b"}}
    assert describe(acyclic) == []


def test_imports_inside_functions_and_relative_ones_are_found(tmp_path):
    (tmp_path / "keras_spp" / "sub").mkdir(parents=True)
    (tmp_path / "export").mkdir()
    (tmp_path / "keras_spp" / "__init__.py").write_text("from keras_spp import sub\n")
    (tmp_path / "keras_spp" / "sub" / "__init__.py").write_text("from .mod import f\n")
    (tmp_path / "keras_spp" / "sub" / "mod.py").write_text(
        "import os\n\ndef f():\n    from ..other import g\n    import export.tool\n    return g\n"
    )
    (tmp_path / "keras_spp" / "other.py").write_text("def g():\n    from keras_spp.sub.mod import f\n")
    (tmp_path / "export" / "tool.py").write_text("from keras_spp.sub import mod\n")
    graph = import_graph(tmp_path, ("keras_spp", "export"))
    assert graph == {
        "keras_spp": {"keras_spp.sub"},
        "keras_spp.sub": {"keras_spp.sub.mod"},
        "keras_spp.sub.mod": {"keras_spp.other", "export.tool"},
        "keras_spp.other": {"keras_spp.sub.mod"},
        "export.tool": {"keras_spp.sub.mod"},
    }
    assert describe(graph) == [
        "wrong-way import: keras_spp.sub.mod -> export.tool",
        "import cycle: export.tool -> keras_spp.sub.mod -> export.tool",
    ]


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_project_is_parsed(graph):
    assert {
        "keras_spp.detection.detector",
        "export.saved_model",
        "recipes.train_detector",
        "benchmarks.detection",
    } <= set(graph)
    assert "keras_spp.detection.detector_ops" in graph["keras_spp.detection.detector"]  # imported at the top
    assert "keras_spp.detection.proposals" in graph["keras_spp.detection.proposal_cache"]  # in a function


def test_imports_run_one_way(graph):
    assert wrong_way_imports(graph) == []


def test_no_modules_import_each_other(graph):
    cycles = import_cycles(graph)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
