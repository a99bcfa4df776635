"""keras_spp: SPP-net (He, Zhang, Ren, Sun) for TensorFlow and Keras 3."""

__version__ = "0.1.0"

import importlib

from keras_spp import layers, models, ops

# ``data`` is left out: a star import must not need TensorFlow (see __getattr__).
__all__ = [
    "layers",
    "models",
    "ops",
]


def __getattr__(name):
    # keras_spp.data is tf.data throughout; loading it on first use keeps
    # ``import keras_spp`` working with Keras on JAX or PyTorch and no TensorFlow.
    if name == "data":
        return importlib.import_module("keras_spp.data")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
