"""MultiScaleRoiFeatures runs the conv of a scale only on the crop its windows read
(``pool_cropped``): the features must be the whole map's."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_spp.detection.features import MultiScaleRoiFeatures, conv_crop
from keras_spp.models import backbone


@pytest.fixture(scope="module")
def conv():
    keras.utils.set_random_seed(3)
    return backbone("zf5", width=0.125)


def test_the_crop_geometry_of_zf5():
    # Strides 2 * 2 * 2 * 2; receptive field 139 px, rounded up to 9 cells.
    assert conv_crop(backbone("zf5", width=0.125)) == (16, 144)


def test_backbones_it_cannot_reason_about_run_whole():
    inputs = keras.Input((None, None, 3))
    dilated = keras.Model(inputs, keras.layers.Conv2D(4, 3, dilation_rate=2)(inputs))
    x = keras.layers.Conv2D(4, 3)(inputs)
    branched = keras.Model(inputs, keras.layers.Add()([x, keras.layers.Conv2D(4, 3)(inputs)]))
    assert conv_crop(dilated) is None and conv_crop(branched) is None


def small_boxes(rng, n, height, width):
    """Boxes of 2-60 px anywhere in the image, some past its edges, one upside down."""
    y = rng.uniform(-20, height, n)
    x = rng.uniform(-20, width, n)
    boxes = np.stack([y, x, y + rng.uniform(2, 60, n), x + rng.uniform(2, 60, n)], 1).astype(np.float32)
    boxes[0] = boxes[0, [2, 3, 0, 1]]
    return boxes


@pytest.mark.parametrize("rule", ["spp", "roi_pool"])
@pytest.mark.parametrize("count", [1, 3])
def test_cropped_features_are_the_whole_maps(conv, rule, count):
    layer = MultiScaleRoiFeatures(conv, (700,), (3, 2, 1), window_size=64, context=2.0, coordinate_rule=rule)
    rng = np.random.default_rng(count)
    for height, width in [(700, 900), (613, 1130), (1021, 700)]:
        resized = tf.constant(rng.uniform(0, 255, (1, height, width, 3)), tf.float32)
        boxes = tf.constant(small_boxes(rng, count, height, width))
        whole = layer.pool_scaled(resized, boxes).numpy()
        # float32 convs of another size may sum in another order: a rounding apart.
        np.testing.assert_allclose(layer.pool_cropped(resized, boxes).numpy(), whole, rtol=1e-5, atol=1e-5)


def test_a_margin_short_of_the_receptive_field_would_change_them(conv):
    layer = MultiScaleRoiFeatures(conv, (700,), (3, 2, 1), window_size=64, context=2.0)
    resized = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, 700, 900, 3)), tf.float32)
    boxes = tf.constant([[300.0, 400.0, 340.0, 430.0]])
    whole = layer.pool_scaled(resized, boxes).numpy()
    layer.conv_crop = (16, 16)
    assert np.abs(layer.pool_cropped(resized, boxes).numpy() - whole).max() > 1e-3


def test_the_layer_pools_from_the_crop_in_graphs_with_unknown_sizes(conv):
    layer = MultiScaleRoiFeatures(conv, (200, 700), (2, 1), window_size=64, context=2.0)
    image = tf.constant(np.random.default_rng(1).uniform(0, 255, (1, 300, 420, 3)), tf.float32)
    # Small boxes go to 700 px, large ones to 200: both scales pool.
    boxes = tf.constant([[10.0, 20.0, 26.0, 30.0], [200.0, 300.0, 215.0, 318.0], [0.0, 0.0, 290.0, 400.0]])
    traced = tf.function(
        lambda i, b: layer(i, b),
        input_signature=[tf.TensorSpec([1, None, None, 3]), tf.TensorSpec([None, 4])],
    )
    got = traced(image, boxes).numpy()
    layer.conv_crop = None
    np.testing.assert_allclose(got, layer(image, boxes).numpy(), rtol=1e-5, atol=1e-5)
