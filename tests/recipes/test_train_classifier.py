import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

import keras_spp  # noqa: F401  (registers the custom layers that load_model meets)
from recipes import train_classifier

SMALL = [
    "--width",
    "0.125",
    "--fc-units",
    "32",
    "--dropout",
    "0",
    "--levels",
    "2,1",
    "--batch-size",
    "4",
    "--min-side",
    "56",
    "--jitter",
    "0.2",
    "--max-eval",
    "12",
]


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """A real image folder: three colour classes, images of many sizes, three splits."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for split, count in (("train", 48), ("validation", 12), ("test", 12)):
        for i in range(count):
            label = ("red", "green", "blue")[i % 3]
            h, w = int(rng.integers(40, 120)), int(rng.integers(40, 120))
            image = rng.integers(0, 90, size=(h, w, 3)).astype(np.uint8)
            image[..., i % 3] += 160
            os.makedirs(root / split / label, exist_ok=True)
            Image.fromarray(image).save(root / split / label / f"{i:03d}.png")
    return root


def history(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_trains_multi_size_and_writes_everything(colour_folder, tmp_path):
    out = tmp_path / "run"
    code = train_classifier.main(
        SMALL
        + [
            "--dataset",
            f"folder:{colour_folder}",
            "--sizes",
            "48,40",
            "--epochs",
            "4",
            "--out",
            str(out),
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    rows = history(out / "history.csv")
    assert [int(float(r["input_size"])) for r in rows] == [48, 40, 48, 40]
    results = json.loads((out / "results.json").read_text())
    assert set(results["evaluation"]) == {"center", "full", "ten_view", "multi_scale"}
    assert results["classes"] == ["blue", "green", "red"]
    assert results["steps_per_epoch"] == 12
    # Colour is easy: the network must learn it in four short epochs.
    assert results["evaluation"]["full"]["top1"] >= 0.75, results["evaluation"]
    model = keras.saving.load_model(out / "model.keras")
    assert model.predict(np.zeros((1, 77, 51, 3), "float32"), verbose=0).shape == (1, 3)
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "best.keras").exists() and any((out / "tensorboard").iterdir())
    assert not (out / "backup").exists()  # cleared after a finished run


def test_pool_head_takes_one_size(colour_folder, tmp_path):
    assert (
        train_classifier.main(
            SMALL
            + ["--dataset", f"folder:{colour_folder}", "--head", "pool", "--sizes", "48,40", "--out", str(tmp_path)]
        )
        == 2
    )


def test_a_crop_below_the_sizes_is_enlarged_in_training_and_tested_at_its_own_size(
    colour_folder, tmp_path, monkeypatch
):
    from keras_spp.data import views

    crops = []

    def evaluate(model, source, **kwargs):
        crops.append(kwargs["crop"])
        return real_evaluate(model, source, **kwargs)

    real_evaluate = views.evaluate
    monkeypatch.setattr(views, "evaluate", evaluate)
    out = tmp_path / "run"
    args = ["--dataset", f"folder:{colour_folder}", "--sizes", "40,48", "--crop", "40", "--epochs", "2"]
    assert train_classifier.main(SMALL + args + ["--views", "center", "--out", str(out), "--verbose", "0"]) == 0
    assert [int(float(r["input_size"])) for r in history(out / "history.csv")] == [40, 48]
    assert crops == [40]
    assert json.loads((out / "results.json").read_text())["config"]["crop"] == 40


@pytest.mark.parametrize("crop", ["64", "0", "-4"])
def test_a_crop_outside_the_image_is_refused(capsys, crop):
    with pytest.raises(SystemExit):
        train_classifier.parse_args(SMALL + ["--crop", crop])
    assert f"--crop must be a side in pixels from 1 to --min-side (56); got {crop}" in capsys.readouterr().err


def test_pool_head_takes_no_other_crop(colour_folder, tmp_path, capsys):
    args = ["--dataset", f"folder:{colour_folder}", "--head", "pool", "--sizes", "48", "--crop", "40"]
    assert train_classifier.main(SMALL + args + ["--out", str(tmp_path)]) == 2
    assert "--head pool takes one fixed size" in capsys.readouterr().err


def run_recipe(args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "recipes.train_classifier", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_a_killed_run_resumes_where_it_stopped(colour_folder, tmp_path):
    args = SMALL + [
        # Dropout draws its masks from a seed generator whose state the backup must hold.
        "--dropout",
        "0.5",
        "--dataset",
        f"folder:{colour_folder}",
        "--sizes",
        "48,40",
        "--epochs",
        "3",
        "--backup-every",
        "2",
        "--views",
        "center",
        "--verbose",
        "2",
        "--seed",
        "3",
    ]
    # Uninterrupted reference run.
    reference = run_recipe(args + ["--out", str(tmp_path / "reference")])
    assert reference.wait(timeout=600) == 0, reference.stdout.read()

    out = tmp_path / "killed"
    state = out / "backup" / "state.json"
    run = run_recipe(args + ["--out", str(out)])
    deadline = time.time() + 600
    # Kill it mid-epoch at the first backup from batch 4 of epoch 2 on: any later
    # mid-epoch backup (the poll may miss the first ones on a fast machine) is as good.
    while time.time() < deadline:
        if state.exists():
            saved = json.loads(state.read_text())
            if (saved["epoch"], saved["batches_done"]) >= (1, 4) and saved["batches_done"] > 0:
                break
        assert run.poll() is None, "the run finished before it could be killed: " + run.stdout.read()
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    saved = json.loads(state.read_text())
    assert saved["batches_done"] > 0

    resumed = run_recipe(args + ["--out", str(out)])
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert f"resuming from the backup: epoch {saved['epoch'] + 1}, after batch {saved['batches_done']}" in output
    rows = history(out / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    # The resumed epoch's row averages all its batches, those before the kill too.
    for want, got in zip(history(tmp_path / "reference" / "history.csv"), rows):
        assert {k: float(v) for k, v in got.items()} == pytest.approx({k: float(v) for k, v in want.items()}, rel=1e-6)
    # Same data order, same augmentation, same dropout masks, same weights: the runs end alike.
    ref = keras.saving.load_model(tmp_path / "reference" / "model.keras")
    got = keras.saving.load_model(out / "model.keras")
    for a, b in zip(ref.get_weights(), got.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_mirrored_strategy_on_two_cpu_devices_matches_single_device(colour_folder, tmp_path):
    args = SMALL + [
        "--dataset",
        f"folder:{colour_folder}",
        "--sizes",
        "48",
        "--epochs",
        "1",
        "--views",
        "center",
        "--jitter",
        "0",
        "--verbose",
        "0",
        "--no-jit",
    ]
    single = run_recipe(args + ["--out", str(tmp_path / "single")])
    assert single.wait(timeout=600) == 0, single.stdout.read()
    mirrored = run_recipe(args + ["--out", str(tmp_path / "mirrored"), "--strategy", "mirrored", "--cpu-devices", "2"])
    output, _ = mirrored.communicate(timeout=600)
    assert mirrored.returncode == 0, output
    a = keras.saving.load_model(tmp_path / "single" / "model.keras").get_weights()
    b = keras.saving.load_model(tmp_path / "mirrored" / "model.keras").get_weights()
    # Two replicas of batch 2 average their gradients: the same step as one batch of 4
    # up to float summation order.
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-4)


def test_a_backup_of_another_configuration_is_refused(tmp_path):
    from keras_spp.callbacks import ResumableBackup

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    saver = ResumableBackup(str(tmp_path), config={"lr": 0.1})
    saver.set_model(model)
    saver._save(2, 5)
    assert ResumableBackup(str(tmp_path), config={"lr": 0.1}).restore(model) == (2, 5)
    with pytest.raises(ValueError, match="another configuration"):
        ResumableBackup(str(tmp_path), config={"lr": 0.2}).restore(model)


def test_a_backup_killed_between_its_weights_and_its_state_is_the_previous_one(tmp_path, monkeypatch):
    from keras_spp.callbacks import ResumableBackup

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    saver = ResumableBackup(str(tmp_path), config={})
    saver.set_model(model)
    saver._save(1, 4)
    saved = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1 for w in saved])

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed after the weights, before the state")

    monkeypatch.setattr(json, "dump", killed)
    with pytest.raises(KeyboardInterrupt):
        saver._save(1, 6)
    monkeypatch.undo()
    assert ResumableBackup(str(tmp_path), config={}).restore(model) == (1, 4)
    for got, want in zip(model.get_weights(), saved):
        np.testing.assert_array_equal(got, want)
    saver._save(2, 0)  # the next save leaves one weights file, its own
    assert sorted(p.name for p in tmp_path.glob("*.weights.h5")) == ["e2-b0.weights.h5"]
    saver.clear()
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_xla_is_used_where_it_pays_unless_told(monkeypatch):
    import tensorflow as tf

    def use_xla(*argv):
        return train_classifier._use_xla(train_classifier.parse_args(list(argv)))

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert not use_xla() and not use_xla("--jit", "auto")  # a CPU: TensorFlow's kernels are faster
    assert use_xla("--jit", "on") and not use_xla("--jit", "on", "--no-jit") and not use_xla("--jit", "off")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu:0"] if kind == "GPU" else [])
    assert use_xla() and not use_xla("--no-jit")


def test_a_step_schedule_drops_the_rate_for_the_last_steps_and_logs_it(colour_folder, tmp_path):
    out = tmp_path / "run"
    code = train_classifier.main(
        SMALL
        + [
            "--dataset",
            f"folder:{colour_folder}",
            "--sizes",
            "48",
            "--epochs",
            "4",
            "--lr-schedule",
            "step",
            "--lr-drop",
            "0.25",
            "--lr",
            "0.001",
            "--views",
            "center",
            "--out",
            str(out),
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    # 12 steps an epoch: steps 1-36 at the rate, 37-48 at a tenth.
    rates = [float(r["learning_rate"]) for r in history(out / "history.csv")]
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 1e-3, 1e-4], rtol=1e-6)


@pytest.mark.parametrize("drop", ["0", "1", "-0.5", "1.5"])
def test_a_drop_outside_zero_one_is_refused(drop, capsys):
    with pytest.raises(SystemExit):
        train_classifier.parse_args(["--lr-schedule", "step", "--lr-drop", drop])
    assert "--lr-drop must be a fraction of the steps in (0, 1)" in capsys.readouterr().err


def test_mixed_bfloat16_trains_saves_its_policy_and_leaves_the_global_one(colour_folder, tmp_path):
    from keras_spp.detection.features import MultiScaleRoiFeatures, backbone_of

    out = tmp_path / "run"
    code = train_classifier.main(
        SMALL
        + [
            "--dataset",
            f"folder:{colour_folder}",
            "--sizes",
            "48",
            "--epochs",
            "4",
            "--dtype-policy",
            "mixed_bfloat16",
            "--views",
            "full",
            "--out",
            str(out),
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    assert keras.config.dtype_policy().name == "float32"  # what is built next is unaffected
    results = json.loads((out / "results.json").read_text())
    assert results["evaluation"]["full"]["top1"] >= 0.75, results["evaluation"]
    model = keras.saving.load_model(out / "model.keras")
    conv = backbone_of(model)
    assert {layer.dtype_policy.name for layer in conv.layers if layer.weights} == {"mixed_bfloat16"}
    assert model.get_layer("fc8").dtype_policy.name == "float32"  # the softmax stays in float32
    # The detector pools the bfloat16 conv5 into float32 window features.
    roi = MultiScaleRoiFeatures(conv, scales=(64, 96), levels=(2, 1), window_size=32)
    boxes = np.array([[0, 0, 30, 40], [10, 5, 60, 70]], "float32")
    features = roi(np.full((1, 70, 80, 3), 128, "float32"), boxes)
    assert features.dtype == "float32" and features.shape == (2, roi.output_dim)
    assert np.all(np.isfinite(features))


@pytest.mark.parametrize(
    "flag, value, takes",
    [
        ("--lr", "0", "a finite number > 0"),  # was silently the default rate
        ("--lr", "nan", "a finite number > 0"),
        ("--batch-size", "0", "a whole number >= 1"),  # was a ZeroDivisionError
        ("--max-train", "0", "a whole number >= 1"),  # was "need at least one array to concatenate"
        ("--max-eval", "-2", "a whole number >= 1"),
        ("--epochs", "0", "a whole number >= 1"),
        ("--levels", "0", "comma-separated whole numbers, each >= 1"),
        ("--levels", "6,,1", "comma-separated whole numbers, each >= 1"),
        ("--sizes", "48,0", "comma-separated whole numbers, each >= 1"),
        ("--width", "inf", "a finite number > 0"),
        ("--fc-units", "0", "a whole number >= 1"),
        ("--dropout", "1", "a number in [0, 1)"),
        ("--momentum", "nan", "a number in [0, 1)"),
        ("--weight-decay", "-0.1", "a finite number >= 0"),
        ("--jitter", "nan", "a finite number >= 0"),
        ("--plateau-start-gain", "nan", "a number in [0, 1)"),
        ("--stop-patience", "-1", "a whole number >= 0"),
        ("--backup-every", "-5", "a whole number >= 0"),
        ("--min-side", "0", "a whole number >= 1"),
        ("--seed", "-1", "a whole number from 0 to 4294967295"),
        ("--cpu-devices", "-2", "a whole number >= 0"),
        ("--views", "center,centre", "comma-separated names among center, full, ten_view, multi_scale"),
    ],
)
def test_bad_flag_values_end_the_parse_with_one_line(flag, value, takes, capsys):
    with pytest.raises(SystemExit) as exit:
        train_classifier.main(SMALL + [flag, value])
    assert exit.value.code == 2
    assert f"error: argument {flag}: takes {takes}; got {value!r}" in capsys.readouterr().err


def test_an_explicit_lr_is_kept():
    assert train_classifier.parse_args(["--lr", "1e-5"]).lr == 1e-5
    assert train_classifier.parse_args(["--optimizer", "sgd"]).lr == 0.01


def test_paths_that_cannot_be_used_are_refused_before_any_work(tmp_path, capsys):
    file = tmp_path / "a-file"
    file.write_text("")
    for flags, message in (
        (["--out", str(file)], f"argument --out: takes a folder to write into; got {str(file)!r} ({file} is a file)"),
        (["--out", str(file / "run")], "argument --out: takes a folder to write into"),
        (["--dataset", f"folder:{tmp_path / 'none'}"], "argument --dataset: takes folder:<an existing folder>"),
        (["--manual-dir", str(file)], "argument --manual-dir: takes an existing folder"),
        (["--data-dir", str(file)], "argument --data-dir: takes a folder to write into"),
    ):
        with pytest.raises(SystemExit) as exit:
            train_classifier.main(SMALL + flags)
        assert exit.value.code == 2
        assert message in capsys.readouterr().err


def test_an_unknown_dataset_or_reversed_random_sizes_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"^--dataset nosuch: Unknown source `name` 'nosuch'; known: "):
        train_classifier.main(SMALL + ["--dataset", "nosuch", "--sizes", "48", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        train_classifier.parse_args(SMALL + ["--size-mode", "random", "--sizes", "48,40"])
    assert "--size-mode random takes --sizes LOW,HIGH with LOW <= HIGH; got 48,40" in capsys.readouterr().err


def test_an_output_folder_with_another_runs_backup_is_one_line(colour_folder, tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "e1-b0.weights.h5").write_bytes(b"")
    (backup / "state.json").write_text(json.dumps({"epoch": 1, "batches_done": 0, "weights": "e1-b0.weights.h5"}))
    argv = SMALL + ["--dataset", f"folder:{colour_folder}", "--sizes", "48", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match=r"^--out .*: The backup in .* is of a run with another configuration"):
        train_classifier.main(argv)
