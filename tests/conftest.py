import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hypothesis  # noqa: E402
import keras  # noqa: E402
import pytest  # noqa: E402

# TensorFlow calls are slow next to hypothesis's default deadline.
hypothesis.settings.register_profile("keras_spp", deadline=None, max_examples=40, derandomize=True)
hypothesis.settings.load_profile("keras_spp")


@pytest.fixture(autouse=True)
def _float32_policy():
    """Tests that switch to mixed precision must not leak it into others."""
    yield
    keras.mixed_precision.set_global_policy("float32")
