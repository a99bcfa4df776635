"""The ``keras-spp`` command (``keras_spp_cli.cli``): usage, dispatch, exit codes.

The installed wheel's command runs from outside the checkout in
``tests/packaging/check_wheel.sh`` (``bash scripts/run.sh package``); these tests run
the dispatcher in this process.
"""

import os
import sys
import types

import pytest

from keras_spp_cli import cli


@pytest.fixture(autouse=True)
def _paths_restored(monkeypatch):
    """The dispatcher puts the commands' folder on sys.path and PYTHONPATH for its own
    process; other tests' children must not inherit it from this one."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = os.environ.get("PYTHONPATH")
    yield
    if before is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = before


EXPECTED = {"main", "demo", "train-classifier", "ablation", "train-detector", "detect", "export", "verify", "client"}


def test_usage_names_every_command_and_its_module(capsys):
    assert set(cli.COMMANDS) == EXPECTED
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: keras-spp COMMAND [ARGS ...]")
    for name, (module, _) in cli.COMMANDS.items():
        assert f"\n  {name} " in out and f"({module})" in out


def test_no_command_prints_the_usage_to_stderr_and_exits_2(capsys):
    assert cli.main([]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("usage: keras-spp") and captured.out == ""


def test_an_unknown_command_is_named_in_one_line_with_the_choices(capsys):
    assert cli.main(["train-clasifier", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown command 'train-clasifier'; choose one of main, demo, train-classifier" in err


@pytest.fixture
def fake_command(monkeypatch):
    """A command whose main records what it was given and returns 3."""
    seen = {}

    def main(argv):
        seen.update(argv=argv, prog=sys.argv[0])
        return 3

    monkeypatch.setitem(sys.modules, "fake_keras_spp_command", types.SimpleNamespace(main=main))
    monkeypatch.setitem(cli.COMMANDS, "fake", ("fake_keras_spp_command", "a test command"))
    return seen


def test_the_arguments_go_through_and_the_command_s_exit_code_comes_back(fake_command):
    argv_before = list(sys.argv)
    assert cli.main(["fake", "--epochs", "1", "x y"]) == 3
    assert fake_command == {"argv": ["--epochs", "1", "x y"], "prog": "keras-spp fake"}
    assert sys.argv == argv_before
    # Children (recipes.ablation runs `python -m recipes.train_classifier`) find it too.
    assert sys.path[0] == str(cli.command_root())
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(cli.command_root())


def test_a_real_command_s_exit_code_and_usage(tmp_path, capsys):
    assert cli.main(["verify", str(tmp_path / "no-such-export")]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["verify", "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("usage: keras-spp verify [-h] [--json] export_dir")


def test_a_bad_flag_exits_with_argparse_s_code(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train-classifier", "--epochs", "many"])
    assert e.value.code == 2
    # The program name is the command's; the wording of the refusal is the recipe's own.
    assert "\nkeras-spp train-classifier: error: argument --epochs: " in capsys.readouterr().err


def test_missing_tensorflow_is_one_line_not_a_traceback(monkeypatch, capsys):
    def main(argv):
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

    monkeypatch.setitem(sys.modules, "fake_keras_spp_command", types.SimpleNamespace(main=main))
    monkeypatch.setitem(cli.COMMANDS, "fake", ("fake_keras_spp_command", "a test command"))
    assert cli.main(["fake"]) == 1
    assert capsys.readouterr().err == (
        "keras-spp fake: needs TensorFlow, and this Python has none; install it with "
        "`pip install keras-spp[cpu]` (or [gpu], or tensorflow-cpu alone)\n"
    )


def test_another_missing_module_is_not_blamed_on_tensorflow(monkeypatch):
    def main(argv):
        raise ModuleNotFoundError("No module named 'cv2'", name="cv2")

    monkeypatch.setitem(sys.modules, "fake_keras_spp_command", types.SimpleNamespace(main=main))
    monkeypatch.setitem(cli.COMMANDS, "fake", ("fake_keras_spp_command", "a test command"))
    with pytest.raises(ModuleNotFoundError, match="cv2"):
        cli.main(["fake"])


def test_the_commands_come_from_the_wheel_s_folder_or_else_the_checkout(tmp_path):
    package = tmp_path / "site-packages" / "keras_spp_cli"
    (package / "_commands" / "recipes").mkdir(parents=True)
    assert cli.command_root(package) == package / "_commands"
    checkout = tmp_path / "checkout" / "keras_spp_cli"
    checkout.mkdir(parents=True)
    assert cli.command_root(checkout) == checkout.parent
    root = cli.command_root()
    assert (root / "recipes" / "train_classifier.py").is_file() and (root / "export" / "saved_model.py").is_file()


def test_every_command_module_exists():
    root = cli.command_root()
    for module, _ in cli.COMMANDS.values():
        assert (root / (module.replace(".", "/") + ".py")).is_file(), module
