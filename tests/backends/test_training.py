"""recipes.train_classifier on the current Keras backend, and JAX's DataParallel."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from recipes import train_classifier
from tests.backends.conftest import BACKEND
from tests.recipes.test_train_classifier import SMALL, colour_folder  # noqa: F401 (a fixture)


def test_the_recipe_trains_and_evaluates_every_view(colour_folder, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    args = SMALL + ["--dataset", f"folder:{colour_folder}", "--sizes", "48,40", "--epochs", "2"]
    args += ["--views", "center,full,ten_view,multi_scale", "--out", str(out), "--verbose", "0"]
    assert train_classifier.main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["evaluation"]) == {"center", "full", "ten_view", "multi_scale"}
    assert all(r["examples"] == 12 for r in results["evaluation"].values())
    assert [int(row["epoch"]) for row in results["history"]] == [0, 1]
    assert {float(row["input_size"]) for row in results["history"]} == {48.0, 40.0}  # multi-size
    model = keras.saving.load_model(out / "model.keras")
    assert tuple(model.predict(np.zeros((1, 77, 51, 3), "float32"), verbose=0).shape) == (1, 3)


def test_tensorflow_strategies_and_jax_distribution_are_refused_elsewhere(tmp_path):
    if BACKEND != "tensorflow":
        with pytest.raises(
            SystemExit, match=f"--strategy mirrored is a tf.distribute strategy; Keras runs on {BACKEND}"
        ):
            train_classifier.main(["--strategy", "mirrored", "--out", str(tmp_path)])
    if BACKEND != "jax":
        with pytest.raises(SystemExit, match="--distribution data-parallel is keras.distribution on JAX"):
            train_classifier.main(["--distribution", "data-parallel", "--out", str(tmp_path)])


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution.DataParallel is JAX's")
def test_data_parallel_on_two_cpu_devices_matches_one_device(colour_folder, tmp_path):  # noqa: F811
    args = SMALL + ["--dataset", f"folder:{colour_folder}", "--sizes", "48", "--epochs", "1", "--views", "center"]
    args += ["--jitter", "0", "--verbose", "0"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    runs = {}
    for name, devices, extra in (("single", 1, []), ("parallel", 2, ["--distribution", "data-parallel"])):
        env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": root}
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        out = tmp_path / name
        done = subprocess.run(
            [sys.executable, "-m", "recipes.train_classifier", *args, *extra, "--out", str(out)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        runs[name] = out
    assert json.loads((runs["parallel"] / "results.json").read_text())["replicas_in_sync"] == 2
    assert json.loads((runs["single"] / "results.json").read_text())["replicas_in_sync"] == 1
    a = keras.saving.load_model(runs["single"] / "model.keras").get_weights()
    b = keras.saving.load_model(runs["parallel"] / "model.keras").get_weights()
    # The batch of 4 split over two devices: the same step up to float summation order.
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-4)
