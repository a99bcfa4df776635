"""The detection geometry written once in keras.ops (keras_spp.detection.boxes,
scales, anchors) on the current Keras backend, eager and compiled, against the old
numpy formulas in float32: eager exact but for decode_boxes' exp() and JAX's
division, compiled within float32 rounding (a fused multiply-add rounds once)."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_spp.detection import anchors, boxes, scales
from tests.backends.conftest import BACKEND, compiled, is_native, numpy
from tests.detection import geometry_reference as ref

# No magnitudes under 1e-3 but 0: every backend flushes subnormal float32 results to
# zero on the CPU, where numpy keeps them.
COORD = st.one_of(
    st.integers(-2, 12).map(float), st.floats(-50, 600, width=32).filter(lambda v: v == 0 or abs(v) >= 1e-3)
)
BOXES = st.lists(st.lists(COORD, min_size=4, max_size=4), max_size=8).map(
    lambda b: np.asarray(b, np.float32).reshape(-1, 4)
)


def test_the_geometry_imports_no_tensorflow():
    code = "import sys, keras_spp.detection.boxes, keras_spp.detection.scales, keras_spp.detection.anchors\n"
    code += "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    if BACKEND == "tensorflow":
        pytest.skip("Keras on TensorFlow imports it")
    subprocess.run([sys.executable, "-c", code], check=True, env={"KERAS_BACKEND": BACKEND, "PATH": ""})


@settings(max_examples=30, deadline=None)
@given(a=BOXES, b=BOXES)
def test_iou_and_area(a, b):
    got = boxes.iou(a[:, None], b[None])
    assert is_native(got)
    np.testing.assert_array_equal(numpy(got), ref.pairwise_iou(a, b, np.float32))
    # Compiled, XLA (and Inductor) may fuse a multiply and an add into one rounding.
    np.testing.assert_allclose(
        numpy(compiled(boxes.iou)(a[:, None], b[None])), ref.pairwise_iou(a, b, np.float32), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_array_equal(numpy(boxes.area(a)), ref.area(a, np.float32))


@settings(max_examples=30, deadline=None)
@given(proposals=BOXES, k=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_decode_boxes(proposals, k, seed):
    deltas = np.random.default_rng(seed).normal(scale=2.0, size=(len(proposals), 4 * k)).astype(np.float32)
    expected = ref.decode_boxes(proposals, deltas, (10.0, 10.0, 5.0, 5.0), np.float32)
    for fn in (boxes.decode_boxes, compiled(lambda p, d: boxes.decode_boxes(p, d, (10.0, 10.0, 5.0, 5.0)))):
        got = fn(proposals, deltas) if fn is not boxes.decode_boxes else fn(proposals, deltas, (10.0, 10.0, 5.0, 5.0))
        assert is_native(got) and tuple(got.shape) == expected.shape
        magnitude = np.abs(expected).max(axis=-1, keepdims=True)
        assert (np.abs(numpy(got) - expected) <= 4e-6 * magnitude + 1e-30).all()


@given(height=st.integers(1, 3000), width=st.integers(1, 3000), raw=BOXES)
@settings(max_examples=30, deadline=None)
def test_scales(height, width, raw):
    factors = scales.resize_factors(height, width, scales.PAPER_SCALES)
    assert is_native(factors)
    expected = ref.scale_factors(height, width, scales.PAPER_SCALES, dtype=np.float32)
    # XLA on the CPU (JAX) divides to within an ulp, not always to the nearest float.
    np.testing.assert_allclose(numpy(factors), expected, rtol=0 if BACKEND == "tensorflow" else 2e-7)
    for i, f in enumerate(numpy(factors)):
        size = scales.resized_size(height, width, factors[i])
        assert tuple(numpy(size).tolist()) == ref.scaled_size_float32(height, width, f)
    chosen = scales.choose_scales(raw, factors)
    np.testing.assert_array_equal(numpy(chosen), ref.assign_scales(raw, numpy(factors), 224, np.float32))
    # Compiled, a fused multiply-add may break a float32 tie the other way.
    again = numpy(compiled(scales.choose_scales)(raw, factors))
    area = ref.area(raw)
    f2 = numpy(factors).astype(np.float64) ** 2
    distance = np.abs(area[:, None] * f2[None, :] - 224.0**2)
    rows = np.arange(len(raw))
    tolerance = 8 * np.finfo(np.float32).eps * (area * f2.max() + 224.0**2)
    assert (distance[rows, again] - distance[rows, numpy(chosen)] <= tolerance).all()


@pytest.mark.parametrize("h, w", [(0, 0), (1, 1), (5, 7), (38, 50)])
def test_anchor_grid(h, w):
    config = anchors.AnchorConfig()
    got = anchors.anchor_grid(h, w, config)
    assert is_native(got)
    np.testing.assert_array_equal(numpy(got), ref.anchor_grid(h, w, config, np.float32))


@settings(max_examples=30, deadline=None)
@given(raw=BOXES, setting=st.sampled_from([(224, 16), (100, 30), (64, 0)]))
def test_context_boxes(raw, setting):
    expected = ref.context_boxes_float32(raw, *setting)
    got = boxes.context_boxes(raw, *setting)
    assert is_native(got) and tuple(got.shape) == expected.shape
    np.testing.assert_array_equal(numpy(got), expected)
    again = numpy(compiled(lambda b: boxes.context_boxes(b, *setting))(raw))
    magnitude = np.abs(raw).max(axis=-1, keepdims=True)
    assert (np.abs(again - expected) <= 4e-7 * magnitude + 1e-30).all()


@pytest.mark.parametrize("n", [0, 1, 9])
def test_box_deltas(n):
    rng = np.random.default_rng(n)
    corners = rng.uniform(-50, 600, (2, n, 2))
    proposals, targets = (np.concatenate([c, c + rng.uniform(1, 300, (n, 2))], 1).astype(np.float32) for c in corners)
    weights = (10.0, 10.0, 5.0, 5.0)
    expected = ref.encode_boxes(proposals, targets, weights, np.float32)
    for fn in (boxes.box_deltas, compiled(lambda p, t: boxes.box_deltas(p, t, weights))):
        got = fn(proposals, targets, weights) if fn is boxes.box_deltas else fn(proposals, targets)
        assert is_native(got) and tuple(got.shape) == (n, 4)
        # log() and, on JAX, division round within an ulp or two of numpy's.
        np.testing.assert_allclose(numpy(got), expected, rtol=1e-5, atol=1e-5)
