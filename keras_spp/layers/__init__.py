"""Keras layers over the ops in ``keras_spp.ops``."""

from keras_spp.layers.local_response_normalization import LocalResponseNormalization
from keras_spp.layers.minimum_input_size import MinimumInputSize
from keras_spp.layers.roi_pyramid_pooling import RoiPyramidPooling
from keras_spp.layers.spatial_pyramid_pooling import SpatialPyramidPooling

__all__ = [
    "LocalResponseNormalization",
    "MinimumInputSize",
    "RoiPyramidPooling",
    "SpatialPyramidPooling",
]
