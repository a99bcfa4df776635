import argparse

import pytest

from recipes import arguments as a


def refused(parse, text):
    with pytest.raises(argparse.ArgumentTypeError) as error:
        parse(text)
    return str(error.value)


@pytest.mark.parametrize(
    "parse, good, bad",
    [
        (a.positive_int, {"1": 1, " 7 ": 7}, ["0", "-3", "1.5", "x", ""]),
        (a.nonnegative_int, {"0": 0, "12": 12}, ["-1", "nan"]),
        (a.seed, {"0": 0, str(2**32 - 1): 2**32 - 1}, ["-1", str(2**32)]),
        (a.int_range(2, 4), {"2": 2, "4": 4}, ["1", "5"]),
    ],
)
def test_whole_numbers(parse, good, bad):
    for text, value in good.items():
        assert parse(text) == value
    for text in bad:
        assert f"got {text!r}" in refused(parse, text)


@pytest.mark.parametrize(
    "parse, good, bad",
    [
        (a.positive_float, {"1e-4": 1e-4, "3": 3.0}, ["0", "-1", "nan", "inf", "-inf", "x"]),
        (a.nonnegative_float, {"0": 0.0}, ["-0.1", "nan", "inf"]),
        (a.finite_float, {"-2.5": -2.5}, ["nan", "inf", "INF", "-Infinity"]),
        (a.probability, {"0": 0.0, "1": 1.0, "0.3": 0.3}, ["-0.01", "1.01", "nan"]),
        (a.fraction, {"0": 0.0, "0.99": 0.99}, ["1", "nan"]),
        (a.float_range(0, 1, min_open=True, max_open=True), {"0.5": 0.5}, ["0", "1"]),
    ],
)
def test_finite_numbers(parse, good, bad):
    for text, value in good.items():
        assert parse(text) == value
    for text in bad:
        refused(parse, text)


def test_messages_say_what_is_taken():
    assert refused(a.positive_int, "0") == "takes a whole number >= 1; got '0'"
    assert refused(a.positive_float, "nan") == "takes a finite number > 0; got 'nan'"
    assert refused(a.fraction, "1") == "takes a number in [0, 1); got '1'"
    assert refused(a.int_list(), "6,0") == "takes comma-separated whole numbers, each >= 1; got '6,0'"


def test_lists():
    assert a.int_list()("6,3,2,1") == (6, 3, 2, 1)
    assert a.int_list(length=2)("3, 4") == (3, 4)
    for text in ["0", "6,,1", "", "6,x", "2.5", "6,-1"]:
        refused(a.int_list(), text)
    refused(a.int_list(length=2), "1,2,3")
    assert a.float_list(0, min_open=True)("1,2,3.5") == (1.0, 2.0, 3.5)
    for text in ["0", "1,nan", "inf", "1,", "a"]:
        refused(a.float_list(0, min_open=True), text)
    assert a.choice_list(("center", "full"))("full,center") == ("full", "center")
    assert "among center, full" in refused(a.choice_list(("center", "full")), "centre")


def test_paths(tmp_path):
    file = tmp_path / "f.txt"
    file.write_text("x")
    assert a.existing_file(str(file)) == str(file)
    assert "(a folder)" in refused(a.existing_file, str(tmp_path))
    assert "(not found)" in refused(a.existing_file, str(tmp_path / "nope"))
    assert a.existing_dir(str(tmp_path)) == str(tmp_path)
    assert "(a file)" in refused(a.existing_dir, str(file))
    assert "(not found)" in refused(a.existing_dir, str(tmp_path / "nope"))
    assert a.existing_path(str(file)) == str(file)
    refused(a.existing_path, str(tmp_path / "nope"))
    # A folder to write may be new, at any depth, but not a file nor under one.
    assert a.output_dir(str(tmp_path / "new" / "deeper")) == str(tmp_path / "new" / "deeper")
    assert a.output_dir(str(tmp_path)) == str(tmp_path)
    assert "is a file" in refused(a.output_dir, str(file))
    assert "is a file" in refused(a.output_dir, str(file / "below"))
    refused(a.output_dir, "")
    assert a.output_file(str(tmp_path / "new" / "out.md")) == str(tmp_path / "new" / "out.md")
    assert a.output_file(str(file)) == str(file)  # overwritten
    assert "(a folder)" in refused(a.output_file, str(tmp_path))
    assert "is a file" in refused(a.output_file, str(file / "out.md"))


def test_argparse_names_the_flag_and_exits_2(capsys):
    p = argparse.ArgumentParser(prog="recipe")
    p.add_argument("--batch-size", type=a.positive_int, default=32)
    p.add_argument("--levels", type=a.int_list(), default="6,3,2,1")
    assert p.parse_args([]).levels == (6, 3, 2, 1)  # the default string is parsed too
    with pytest.raises(SystemExit) as exit:
        p.parse_args(["--batch-size", "0"])
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "recipe: error: argument --batch-size: takes a whole number >= 1; got '0'"
    with pytest.raises(SystemExit):
        a.refuse(p, "--sizes", "two sizes", "1,2,3")
    assert "recipe: error: argument --sizes: takes two sizes; got '1,2,3'" in capsys.readouterr().err


# The recipes refuse bad values at parse time, before loading data or training.


@pytest.mark.parametrize(
    "flag, value, takes",
    [
        ("--levels", "0", "comma-separated whole numbers, each >= 1"),
        ("--levels", "4,x", "comma-separated whole numbers, each >= 1"),
        ("--width", "nan", "a finite number > 0"),
        ("--width", "0", "a finite number > 0"),
    ],
)
def test_demo_refuses_bad_values(flag, value, takes, capsys):
    from recipes import demo

    with pytest.raises(SystemExit) as exit:
        demo.main([flag, value])
    assert exit.value.code == 2
    assert f"error: argument {flag}: takes {takes}; got {value!r}" in capsys.readouterr().err


def test_demo_refuses_an_output_folder_that_is_a_file(tmp_path, capsys):
    from recipes import demo

    (tmp_path / "demo").write_text("")
    with pytest.raises(SystemExit):
        demo.main(["--out", str(tmp_path / "demo")])
    assert "argument --out: takes a folder to write into" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value, takes",
    [
        ("--max-epochs", "0", "a whole number >= 1"),
        ("--stop-patience", "-1", "a whole number >= 0"),
        ("--start-gain", "nan", "a number in [0, 1)"),
        ("--large", "0", "a whole number >= 1"),
        ("--small", "0", "a whole number >= 1"),  # was a ZeroDivisionError
        ("--width", "inf", "a finite number > 0"),
        ("--max-train", "0", "a whole number >= 1"),
        ("--seeds", "0,-1", "comma-separated whole numbers, each from 0 to 4294967295"),
        ("--seeds", "", "comma-separated whole numbers, each from 0 to 4294967295"),
        ("--seeds", "1,1", "comma-separated distinct seeds"),
    ],
)
def test_ablation_refuses_bad_values(flag, value, takes, capsys):
    from recipes import ablation

    with pytest.raises(SystemExit) as exit:
        ablation.parse_args([flag, value])
    assert exit.value.code == 2
    assert f"error: argument {flag}: takes {takes}; got {value!r}" in capsys.readouterr().err


def test_ablation_refuses_paths_it_cannot_write(tmp_path, capsys):
    from recipes import ablation

    file = tmp_path / "file"
    file.write_text("")
    for flag, value in (("--results", file), ("--out", file), ("--markdown", tmp_path), ("--plot", file / "a.png")):
        with pytest.raises(SystemExit):
            ablation.parse_args([flag, str(value)])
        assert f"error: argument {flag}: takes a" in capsys.readouterr().err


def test_ablation_refuses_a_bad_classifier_flag_before_the_first_run(tmp_path, monkeypatch, capsys):
    from recipes import ablation

    def no_training(*args, **kwargs):
        raise AssertionError("a run was started")

    monkeypatch.setattr(ablation.subprocess, "run", no_training)
    argv = ["--results", str(tmp_path), "--out", str(tmp_path), "--variants", "spp-single", "--", "--batch-size", "0"]
    with pytest.raises(SystemExit) as exit:
        ablation.main(argv)
    assert exit.value.code == 2
    assert "argument --batch-size: takes a whole number >= 1; got '0'" in capsys.readouterr().err


def test_check_gives_the_parsers_error_after_the_parse(tmp_path, capsys):
    p = argparse.ArgumentParser(prog="recipe")
    assert a.check(p, "--out", a.output_dir, str(tmp_path)) == str(tmp_path)
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as exit:
        a.check(p, "--out", a.output_dir, str(tmp_path / "f"))
    assert exit.value.code == 2
    assert "recipe: error: argument --out: takes a folder to write into" in capsys.readouterr().err
