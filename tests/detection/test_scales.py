import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from keras_spp.detection import scales


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
    got_tf = scales.assign_scales_tf(tf.constant(boxes), tf.constant(factors, tf.float32), 224).numpy()
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
    got = scales.scale_factors_tf(tf.constant(375), tf.constant(500), scales.PAPER_SCALES).numpy()
    np.testing.assert_allclose(got, scales.scale_factors(375, 500, scales.PAPER_SCALES), rtol=1e-6)


@pytest.mark.parametrize("bad", [(), (0,), (688, 688), "big", (-5,)])
def test_bad_scales_are_rejected(bad):
    with pytest.raises(ValueError, match="scales"):
        scales.validate_scales(bad)
