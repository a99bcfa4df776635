"""The ruff configuration in pyproject.toml (lint rules and formatting) holds for the
whole tree; the test suite runs it so that a change that breaks it does not land."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"


def ruff(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module", autouse=True)
def ruff_installed():
    if ruff("--version").returncode != 0:
        pytest.fail("ruff is not installed: it comes with the test extra (pip install -e '.[test]')")


def test_the_tree_passes_ruff_check():
    result = ruff("check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tree_is_ruff_formatted():
    result = ruff("format", "--no-cache", "--check", ".")
    assert result.returncode == 0, "run `ruff format .`:\n" + result.stdout + result.stderr


def test_the_configuration_catches_an_unused_import_and_bad_formatting(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx = {  'a':1}\n")
    checked = ruff("check", "--no-cache", "--config", str(CONFIG), str(bad), cwd=tmp_path)
    assert checked.returncode == 1 and "F401" in checked.stdout
    formatted = ruff("format", "--no-cache", "--config", str(CONFIG), "--check", str(bad), cwd=tmp_path)
    assert formatted.returncode == 1 and "bad.py" in formatted.stdout
