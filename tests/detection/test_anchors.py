"""anchor_grid, written once in keras.ops, against the old numpy and graph versions
(tests/detection/geometry_reference.py); test_rpn.py checks it against a per-cell loop."""

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from keras_spp.detection.anchors import AnchorConfig, anchor_grid, anchor_grid_np
from tests.detection import geometry_reference as ref

CONFIGS = st.builds(
    AnchorConfig,
    st.lists(st.one_of(st.integers(1, 512), st.floats(0.5, 1e4)), min_size=1, max_size=3).map(tuple),
    st.lists(st.floats(0.05, 20.0), min_size=1, max_size=3).map(tuple),
    st.sampled_from([1.0, 4.0, 12.5, 16.0, 32.0, 1e-3]),
)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 9), st.integers(0, 9), CONFIGS)
def test_anchor_grid_is_the_reference_bit_for_bit(h, w, config):
    expected = ref.anchor_grid(h, w, config)
    got = anchor_grid_np(h, w, config)
    assert got.dtype == np.float32 and got.shape == (h * w * config.per_cell, 4)
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    np.testing.assert_array_equal(ops.convert_to_numpy(anchor_grid(h, w, config, "float64")), expected)
    got32 = anchor_grid(tf.constant(h), tf.constant(w), config)
    assert got32.dtype == tf.float32
    np.testing.assert_array_equal(got32.numpy(), ref.anchor_grid(h, w, config, np.float32))


def test_large_maps_and_xla():
    config = AnchorConfig()
    fn = tf.function(
        lambda m: anchor_grid(tf.shape(m)[1], tf.shape(m)[2], config),
        input_signature=[tf.TensorSpec([1, None, None, 1])],
        jit_compile=True,
    )
    for h, w in ((0, 0), (1, 1), (63, 125), (0, 7)):
        np.testing.assert_array_equal(fn(tf.zeros([1, h, w, 1])).numpy(), ref.anchor_grid(h, w, config, np.float32))
    np.testing.assert_array_equal(anchor_grid_np(63, 125, config), ref.anchor_grid(63, 125, config).astype(np.float32))
