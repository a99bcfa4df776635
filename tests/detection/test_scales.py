import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st
from keras import ops

from keras_spp.detection import scales
from tests.detection import geometry_reference as ref


def reference_assign(boxes, factors, window):
    # In Python floats (float64), as assign_scales computes: in float32 a window of
    # 1e-8 px area ties at every scale, where float64 still tells them apart.
    out = []
    for y1, x1, y2, x2 in boxes:
        area = max(float(y2) - float(y1), 0.0) * max(float(x2) - float(x1), 0.0)
        best, best_d = 0, None
        for i, f in enumerate(factors):
            d = abs(area * (float(f) * float(f)) - window * window)
            if best_d is None or d < best_d:
                best, best_d = i, d
        out.append(best)
    return np.array(out, np.int64)


def test_paper_example_688_short_side():
    f = scales.scale_factors(375, 500, (688,))
    assert scales.scaled_size(375, 500, f[0]) == (688, 917)


def test_max_side_caps_long_images():
    f = scales.scale_factors(100, 1000, (688,), max_side=2000)
    assert scales.scaled_size(100, 1000, f[0]) == (200, 2000)


@given(
    st.lists(st.tuples(*[st.floats(0, 600, allow_nan=False)] * 4), min_size=0, max_size=30),
    st.integers(50, 700),
    st.integers(50, 700),
)
def test_assignment_matches_reference(raw, h, w):
    boxes = np.array([[a, b, a + abs(c - a), b + abs(d - b)] for a, b, c, d in raw], np.float32).reshape(-1, 4)
    factors = scales.scale_factors(h, w, scales.PAPER_SCALES)
    expected = reference_assign(boxes, factors.astype(np.float32), 224)
    np.testing.assert_array_equal(scales.assign_scales(boxes, factors.astype(np.float32), 224), expected)
    got_tf = scales.choose_scales(tf.constant(boxes), tf.constant(factors, tf.float32), 224).numpy()
    # The graph computes in float32: it may pick another scale only where that scale's
    # distance ties the best one to float32 precision.
    b = boxes.astype(np.float64)
    area = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    f2 = factors.astype(np.float32).astype(np.float64) ** 2
    distance = np.abs(area[:, None] * f2[None, :] - 224.0**2)
    rows = np.arange(len(boxes))
    tolerance = 8 * np.finfo(np.float32).eps * (area * f2.max() + 224.0**2)
    assert (distance[rows, got_tf] - distance[rows, expected] <= tolerance).all()


def test_small_windows_take_large_scales():
    factors = scales.scale_factors(375, 500, scales.PAPER_SCALES)
    small, large = [0, 0, 40, 40], [0, 0, 375, 500]
    chosen = scales.assign_scales(np.array([small, large], np.float32), factors)
    assert chosen[0] == len(factors) - 1 and chosen[1] == 0


def test_graph_factors_match_numpy():
    got = scales.resize_factors(tf.constant(375), tf.constant(500), scales.PAPER_SCALES).numpy()
    np.testing.assert_allclose(got, scales.scale_factors(375, 500, scales.PAPER_SCALES), rtol=1e-6)


SIDE = st.one_of(st.integers(1, 5000), st.sampled_from([1, 2, 3, 375, 500, 688, 2000, 2001, 4999]))
SCALES = st.one_of(
    st.sampled_from([scales.PAPER_SCALES, scales.SINGLE_SCALE, (1,), (1200, 480)]),
    st.lists(st.integers(1, 3000), min_size=1, max_size=5, unique=True),
)


@given(height=SIDE, width=SIDE, chosen=SCALES, max_side=st.sampled_from([1, 1000, 2000, 10**6]))
def test_factors_and_sizes_are_the_references_bit_for_bit(height, width, chosen, max_side):
    """The numpy views are the old numpy functions exactly (float64, Python's round);
    the keras.ops run in float32 is the old graph version exactly."""
    factors = scales.scale_factors(height, width, chosen, max_side)
    expected = ref.scale_factors(height, width, chosen, max_side)
    assert factors.dtype == np.float64
    np.testing.assert_array_equal(factors, expected)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(scales.resize_factors(height, width, chosen, max_side, "float64")), expected
    )
    factors32 = scales.resize_factors(tf.constant(height), tf.constant(width), chosen, max_side)
    np.testing.assert_array_equal(factors32.numpy(), ref.scale_factors(height, width, chosen, max_side, np.float32))
    for f, f32 in zip(factors, factors32.numpy()):
        assert scales.scaled_size(height, width, f) == ref.scaled_size(height, width, f)
        assert scales.scaled_size(height, width, float(f)) == ref.scaled_size(height, width, f)
        got = scales.resized_size(tf.constant(height), tf.constant(width), tf.constant(f32))
        assert got.dtype == tf.int32 and tuple(got.numpy().tolist()) == ref.scaled_size_float32(height, width, f32)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 9, 11, 13, 125, 375, 1001])
def test_halves_round_to_even_as_before(size):
    # size * 0.5 ends in .5 for odd sizes: Python's round and the graph's both go to even.
    assert scales.scaled_size(size, size, 0.5) == ref.scaled_size(size, size, 0.5) == (max(1, round(size / 2)),) * 2
    got = scales.resized_size(size, size, 0.5)
    assert tuple(ops.convert_to_numpy(got).tolist()) == ref.scaled_size_float32(size, size, 0.5)
    assert scales.scaled_size(size, size, 1e-9) == (1, 1)


ADVERSARIAL_BOX = st.one_of(
    st.tuples(*[st.floats(0, 600, allow_nan=False, width=32)] * 4),
    st.tuples(*[st.sampled_from([0.0, 1e-30, 1.0, 224.0, 3e18, 1e30, -5.0])] * 4),
)


@given(st.lists(ADVERSARIAL_BOX, max_size=20), SIDE, SIDE, st.sampled_from([224, 48, 1]))
def test_assignment_is_the_reference_bit_for_bit(raw, h, w, window):
    boxes = np.asarray(raw, np.float32).reshape(-1, 4)  # inverted and zero-area boxes too
    factors = scales.scale_factors(h, w, scales.PAPER_SCALES)
    expected = ref.assign_scales(boxes, factors, window)
    got = scales.assign_scales(boxes, factors, window)
    assert got.dtype == np.int32 and got.shape == (len(boxes),)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(scales.choose_scales(boxes, factors, window, "float64")), expected
    )
    f32 = factors.astype(np.float32)
    got32 = scales.choose_scales(tf.constant(boxes), tf.constant(f32), window)
    np.testing.assert_array_equal(got32.numpy(), ref.assign_scales(boxes, f32, window, np.float32))


def test_in_a_graph_with_xla_and_dynamic_sizes():
    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([None, None, 3]), tf.TensorSpec([None, 4])])
    def plan(image, boxes):
        shape = tf.shape(image)
        factors = scales.resize_factors(shape[0], shape[1], scales.PAPER_SCALES)
        return factors, scales.resized_size(shape[0], shape[1], factors[2]), scales.choose_scales(boxes, factors)

    boxes = np.array([[0, 0, 40, 40], [0, 0, 375, 500], [5, 5, 5, 5]], np.float32)
    factors, size, chosen = plan(tf.zeros([375, 500, 3]), boxes)
    np.testing.assert_array_equal(factors.numpy(), ref.scale_factors(375, 500, scales.PAPER_SCALES, dtype=np.float32))
    assert size.numpy().tolist() == [688, 917]
    assert chosen.numpy().tolist() == [4, 0, 0]
    assert plan(tf.zeros([20, 30, 3]), tf.zeros([0, 4]))[2].shape == (0,)


def test_empty_and_bad_sizes():
    assert scales.assign_scales(np.zeros((0, 4)), [1.0, 2.0]).shape == (0,)
    with pytest.raises(ValueError, match="image size must be positive"):
        scales.scale_factors(0, 10, (688,))


@pytest.mark.parametrize("bad", [(), (0,), (688, 688), "big", (-5,)])
def test_bad_scales_are_rejected(bad):
    with pytest.raises(ValueError, match="scales"):
        scales.validate_scales(bad)
