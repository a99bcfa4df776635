import numpy as np
import pytest

from keras_spp.detection.boxes import context_boxes, expand_boxes_for_context
from keras_spp.detection.rcnn import WarpedWindowFeatures
from keras_spp.models import backbone
from keras_spp.ops.spatial_pyramid_pool import spatial_pyramid_pool


@pytest.fixture(scope="module")
def conv():
    return backbone("zf5", width=0.125)


def test_context_matches_the_numpy_box_helper():
    boxes = np.array([[10, 20, 110, 60], [0, 0, 1, 1]], np.float32)
    np.testing.assert_allclose(
        context_boxes(boxes, 224, 16).numpy(), expand_boxes_for_context(boxes, 224, 16), rtol=1e-6
    )


def test_whole_image_window_without_context_is_the_image_itself(conv):
    # A box covering the image exactly, warped to the image's own size, samples
    # every pixel centre unchanged: its features are the whole image's pyramid.
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    layer = WarpedWindowFeatures(conv, (2, 1), window_size=64, context=0, chunk_size=3)
    got = layer(image, np.array([[0, 0, 64, 64]], np.float32)).numpy()
    expected = spatial_pyramid_pool(conv(image), (2, 1)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_windows_are_independent_of_chunking_and_count(conv):
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (1, 50, 70, 3)).astype(np.float32)
    boxes = np.array([[0, 0, 20, 30], [10, 5, 50, 70], [30, 40, 45, 60], [-5, -5, 10, 10], [3, 3, 4, 4]], np.float32)
    one = WarpedWindowFeatures(conv, (2, 1), window_size=48, context=8, chunk_size=1)
    many = WarpedWindowFeatures(conv, (2, 1), window_size=48, context=8, chunk_size=4)
    a = one(image, boxes).numpy()
    np.testing.assert_allclose(many(image, boxes).numpy(), a, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(many(image, boxes[1:2]).numpy(), a[1:2], rtol=1e-4, atol=1e-4)
    assert many(image, np.zeros((0, 4), np.float32)).shape == (0, one.output_dim)


def test_outside_the_image_is_mid_grey(conv):
    # A window far outside the image sees only padding: the backbone's zero input.
    image = np.full((1, 30, 30, 3), 255.0, np.float32)
    layer = WarpedWindowFeatures(conv, (1,), window_size=32, context=0)
    far = layer(image, np.array([[100, 100, 140, 140]], np.float32)).numpy()
    grey = spatial_pyramid_pool(conv(np.full((1, 32, 32, 3), 127.5, np.float32)), (1,)).numpy()
    np.testing.assert_allclose(far, grey, rtol=1e-5, atol=1e-5)


def test_bad_context_is_rejected(conv):
    with pytest.raises(ValueError, match="`window_size` and `context` must be numbers"):
        WarpedWindowFeatures(conv, window_size=32, context=16)
