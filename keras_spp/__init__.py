"""keras_spp: SPP-net (He, Zhang, Ren, Sun) for TensorFlow and Keras 3."""

__version__ = "0.1.0"

from keras_spp import data, layers, models, ops

__all__ = [
    "data",
    "layers",
    "models",
    "ops",
]
