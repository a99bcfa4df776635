"""No function outside the tests is longer than a reader can hold: at most 80 lines
from its ``def`` to its last line, docstring included. Read with ``ast``."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("keras_spp", "export", "recipes", "benchmarks")
MAX_LINES = 80


def long_functions(root=ROOT, packages=PACKAGES, limit=MAX_LINES):
    """``["path:line name (n lines)"]`` for every function (nested ones and methods
    too) whose ``def`` line to last line spans more than ``limit`` lines."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_over_80_lines():
    assert long_functions() == [], "split these into parse / build / run / report helpers"


def test_a_long_function_is_named(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    (package / "mod.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    assert long_functions(tmp_path, ("pkg",)) == ["pkg/mod.py:5 long (81 lines)"]
