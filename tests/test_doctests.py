"""Every ``>>>`` example in keras_spp and export runs, one test per module that
has one (found by its text, so a new example is collected without a list)."""

import doctest
import importlib
import io
import pathlib
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("keras_spp", "export")


def _module_names():
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if ">>>" in path.read_text():
                names.append(".".join(parts))
    return names


MODULES = _module_names()


def test_every_package_module_is_collected():
    assert "keras_spp.layers.spatial_pyramid_pooling" in MODULES
    assert "export.encoding" in MODULES
    assert len(MODULES) >= 29


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name, tmp_path, monkeypatch):
    # Examples that write files take tempfile.mkdtemp(): keep them under tmp_path.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    module = importlib.import_module(name)
    tests = [test for test in doctest.DocTestFinder().find(module) if test.examples]
    # Collected for a ">>>" in its text: finding none means one sits where doctest does not look.
    assert tests, f"{name} holds '>>>' but doctest finds no example in it (outside a docstring?)"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    for test in tests:
        runner.run(test, out=report.write)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} examples in {name} failed:\n{report.getvalue()}"
