"""keras_spp.layers and keras_spp.models on the current Keras backend: native
tensors out, the references' values, training steps, and .keras files that load
on the other backends."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_spp import models
from keras_spp.layers import LocalResponseNormalization, MinimumInputSize, RoiPyramidPooling, SpatialPyramidPooling
from tests.backends.conftest import BACKEND, is_native, numpy
from tests.ops import pooling_reference as ref

BACKENDS = ("tensorflow", "jax", "torch")


def lrn_reference(x, size, alpha, beta, bias):
    x = np.asarray(x, np.float64)
    c = x.shape[-1]
    out = np.empty_like(x)
    for d in range(c):
        window = x[..., max(0, d - size // 2) : min(c, d + size // 2 + 1)]
        out[..., d] = x[..., d] / (bias + alpha / size * (window**2).sum(-1)) ** beta
    return out


def test_pooling_layers_return_native_tensors_with_the_references_values():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 11, 14, 3)).astype(np.float32)
    out = SpatialPyramidPooling((4, 2, 1))(features)
    assert is_native(out)
    np.testing.assert_array_equal(numpy(out), ref.spatial_pyramid_pool(features, (4, 2, 1)).astype(np.float32))
    boxes = np.array([[0, 0, 170, 220], [20, 30, 90, 60]], np.float32)
    out = RoiPyramidPooling((3, 1), 1 / 16)(features, boxes, np.array([1, 0], np.int32))
    assert is_native(out)
    expected = ref.roi_pyramid_pool(features, boxes, [1, 0], (3, 1), 1 / 16, "spp").astype(np.float32)
    np.testing.assert_array_equal(numpy(out), expected)


@pytest.mark.parametrize("size, alpha, beta, bias", [(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.5, 1.0)])
def test_local_response_normalization_is_the_formula(size, alpha, beta, bias):
    x = np.random.default_rng(1).normal(scale=3.0, size=(2, 4, 5, 7)).astype(np.float32)
    out = LocalResponseNormalization(size, alpha, beta, bias)(x)
    assert is_native(out)
    np.testing.assert_allclose(numpy(out), lrn_reference(x, size, alpha, beta, bias), rtol=1e-5, atol=1e-6)


def test_minimum_input_size_is_a_value_error_naming_the_sizes():
    check = MinimumInputSize(29, name="check")
    assert is_native(check(np.zeros((1, 29, 40, 3), np.float32)))
    with pytest.raises(ValueError, match=r"at least 29 x 29 pixels.*\(height, width\) \(28, 40\)"):
        check(np.zeros((1, 28, 40, 3), np.float32))


@pytest.mark.parametrize("build", [models.zf5, models.convnet5, models.overfeat5, models.overfeat7])
def test_table_1_classifiers_take_any_size(build):
    net = build(7, head="spp", width=0.125, fc_units=32, levels=(4, 2, 1))
    for size in [(180, 180), (150, 97)]:
        out = net(np.random.default_rng(2).uniform(0, 255, size=(1, *size, 3)).astype(np.float32))
        assert is_native(out) and tuple(out.shape) == (1, 7)
        np.testing.assert_allclose(float(numpy(out).sum()), 1.0, rtol=1e-5)


def test_an_spp_classifier_trains_with_fit_on_two_sizes():
    model = models.spp_classifier(models.backbone("zf5", width=0.125), 3, fc_units=16, levels=(2, 1))
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    before = [numpy(w).copy() for w in model.trainable_weights]
    rng = np.random.default_rng(3)
    for size in (64, 48):
        x = rng.uniform(0, 255, size=(4, size, size, 3)).astype(np.float32)
        model.fit(x, np.array([0, 1, 2, 0]), batch_size=2, epochs=1, verbose=0)
    after = [numpy(w) for w in model.trainable_weights]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))  # every layer learned


LOADER = """
import json, sys
import numpy as np
import keras
import keras_spp  # registers the layers
model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
print(json.dumps({"backend": keras.backend.backend(), "out": keras.ops.convert_to_numpy(model(x)).tolist()}))
"""


def test_a_keras_file_saved_here_loads_and_predicts_alike_on_the_other_backends(tmp_path):
    model = models.spp_classifier(models.backbone("zf5", width=0.125), 4, fc_units=16, levels=(4, 2, 1))
    x = np.random.default_rng(4).uniform(0, 255, size=(2, 70, 90, 3)).astype(np.float32)
    expected = numpy(model(x))
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for other in BACKENDS:
        if other == BACKEND:
            continue
        env = {**os.environ, "KERAS_BACKEND": other, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run(
            [sys.executable, "-c", LOADER, str(tmp_path / "model.keras"), str(tmp_path / "x.npy")],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        loaded = json.loads(done.stdout.strip().splitlines()[-1])
        assert loaded["backend"] == other
        np.testing.assert_allclose(np.array(loaded["out"]), expected, rtol=1e-4, atol=1e-6)
