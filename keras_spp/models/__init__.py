"""Table 1 backbones and classification heads."""

from keras_spp.models.backbones import TABLE_1, backbone, feature_stride, min_input_side
from keras_spp.models.classifier import (
    convnet5,
    overfeat5,
    overfeat7,
    pool5_classifier,
    spp_classifier,
    table1_classifier,
    zf5,
)

__all__ = [
    "TABLE_1",
    "backbone",
    "feature_stride",
    "min_input_side",
    "convnet5",
    "overfeat5",
    "overfeat7",
    "pool5_classifier",
    "spp_classifier",
    "table1_classifier",
    "zf5",
]
