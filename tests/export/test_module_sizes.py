"""No module of ``export/`` is over 400 lines (issue 27): past that, a file holds more
than one idea, and its reader has to find the one they came for. Split by idea,
as ``export.detector`` and its ``detector_*`` modules are."""

import pathlib

EXPORT = pathlib.Path(__file__).resolve().parents[2] / "export"
MAX_LINES = 400


def long_modules(folder=EXPORT, limit=MAX_LINES):
    """``["name.py (n lines)"]`` for every ``.py`` under ``folder`` longer than ``limit`` lines."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            found.append(f"{path.relative_to(folder).as_posix()} ({lines} lines)")
    return found


def test_no_export_module_is_over_400_lines():
    assert long_modules() == [], "split these by idea (a module of one idea each)"


def test_a_long_module_is_named(tmp_path):
    (tmp_path / "short.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert long_modules(tmp_path) == [f"inner/long.py ({MAX_LINES + 1} lines)"]
