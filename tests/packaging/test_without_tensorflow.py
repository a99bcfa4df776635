"""keras_spp on Keras with JAX or PyTorch and no TensorFlow: ops, layers and models import and run;
keras_spp.data and keras_spp.detection say that they need TensorFlow.

A child process hides TensorFlow (its path finder finds no ``tensorflow``, so imports
and ``find_spec`` answer as Python without it would), so the check runs in the
project's own environment; ``tests/packaging/check_wheel.sh`` repeats it in a fresh
virtualenv that never had TensorFlow.
"""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = textwrap.dedent(
    """
    import importlib.machinery
    import sys

    class PathFinderWithoutTensorFlow(importlib.machinery.PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name.split(".")[0] == "tensorflow":
                return None
            return super().find_spec(name, path, target)

    sys.meta_path[:] = [
        PathFinderWithoutTensorFlow if finder is importlib.machinery.PathFinder else finder
        for finder in sys.meta_path
    ]
    BACKEND = sys.argv[1]
    import numpy as np
    import keras_spp
    from keras_spp.layers import RoiPyramidPooling, SpatialPyramidPooling
    from keras_spp.models import backbone, spp_classifier
    import keras

    assert keras.backend.backend() == BACKEND, keras.backend.backend()
    pooled = SpatialPyramidPooling((2, 1))(np.ones((2, 9, 7, 3), "float32"))
    assert tuple(pooled.shape) == (2, 15) and type(pooled).__module__.startswith(BACKEND), type(pooled)
    model = spp_classifier(backbone("zf5", width=0.125), num_classes=3, fc_units=8)
    assert tuple(model(np.zeros((1, 97, 131, 3), "float32")).shape) == (1, 3)
    boxes = np.array([[0, 0, 30, 40]], "float32")
    assert tuple(RoiPyramidPooling((2, 1))(np.ones((1, 5, 6, 4), "float32"), boxes, np.array([0])).shape) == (1, 20)
    assert "tensorflow" not in sys.modules
    for name in ("keras_spp.data", "keras_spp.data.multisize", "keras_spp.detection", "keras_spp.detection.nms"):
        try:
            __import__(name)
        except ModuleNotFoundError as e:
            print(name, "|", e)
        else:
            raise AssertionError(name + " imported without TensorFlow")
    try:
        keras_spp.data
    except ModuleNotFoundError as e:
        print("keras_spp.data attribute |", e)
    """
)


@pytest.fixture(scope="module", params=["jax", "torch"])
def child_output(request):
    env = dict(os.environ, KERAS_BACKEND=request.param, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, request.param], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_ops_layers_and_models_run_on_jax_and_torch_without_tensorflow(child_output):
    # The child asserts the shapes and the backend; reaching its refusals means it ran.
    assert "keras_spp.data |" in child_output


@pytest.mark.parametrize(
    "name", ["keras_spp.data", "keras_spp.data.multisize", "keras_spp.detection", "keras_spp.detection.nms"]
)
def test_data_and_detection_name_what_is_missing_and_the_fix(child_output, name):
    errors = dict(line.split(" | ", 1) for line in child_output.splitlines() if " | " in line)
    package = ".".join(name.split(".")[:2])  # a submodule is refused by its package, first
    assert errors[name].startswith(f"{package} needs TensorFlow installed"), errors[name]
    assert "pip install keras-spp[cpu]" in errors[name]
    assert "keras_spp.ops, keras_spp.layers and keras_spp.models run without it" in errors[name]


def test_the_data_attribute_gives_the_same_error(child_output):
    assert "keras_spp.data attribute | keras_spp.data needs TensorFlow installed" in child_output
