"""keras_spp: SPP-net (He, Zhang, Ren, Sun) for TensorFlow and Keras 3."""

__version__ = "0.1.0"

from keras_spp import data
from keras_spp import layers
from keras_spp import models
from keras_spp import ops
