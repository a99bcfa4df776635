"""The >>> examples of the ops, layers and models run on the current backend too
(tests/test_doctests.py runs every module's on TensorFlow)."""

import doctest
import importlib

import pytest

MODULES = [
    "keras_spp.ops.spatial_pyramid_pool",
    "keras_spp.ops.roi_pyramid_pool",
    "keras_spp.layers.spatial_pyramid_pooling",
    "keras_spp.layers.roi_pyramid_pooling",
    "keras_spp.layers.local_response_normalization",
    "keras_spp.layers.minimum_input_size",
    "keras_spp.models.backbones",
    "keras_spp.models.classifier",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
