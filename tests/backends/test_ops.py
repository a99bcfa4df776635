"""keras_spp.ops on the current Keras backend against the numpy references: exact
for max pooling, within 1e-6 for average pooling, with gradients and compiled."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_spp.ops import boxes_to_cells, roi_pyramid_pool, spatial_pyramid_pool
from keras_spp.ops.bins import bin_edges
from tests.backends.conftest import compiled, gradient, is_native, numpy
from tests.ops import pooling_reference as ref
from tests.ops.test_roi_pyramid_pool import LEVELS, RULES, problems

MAPS = st.tuples(st.integers(1, 3), st.integers(1, 16), st.integers(1, 16), st.integers(1, 4))


def feature_map(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@given(a=st.integers(1, 300), n=st.integers(1, 12))
def test_bin_edges_of_both_rules_are_the_references(a, n):
    start, end = bin_edges(a, n, "adaptive")
    assert list(zip(numpy(start).tolist(), numpy(end).tolist())) == ref.adaptive_bins(a, n)
    start, end = bin_edges(a, n, "paper")
    assert list(zip(numpy(start).tolist(), numpy(end).tolist())) == ref.paper_bins(a, n)


@given(shape=MAPS, levels=LEVELS, pooling=st.sampled_from(["max", "avg"]), seed=st.integers(0, 2**31))
def test_spatial_pyramid_pool_matches_the_reference(shape, levels, pooling, seed):
    features = feature_map(shape, seed)
    got = spatial_pyramid_pool(features, levels, pooling)
    assert is_native(got)
    expected = ref.spatial_pyramid_pool(features, levels, pooling).astype(np.float32)
    if pooling == "max":
        np.testing.assert_array_equal(numpy(got), expected)
    else:
        np.testing.assert_allclose(numpy(got), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [(12, 18), (7, 13), (24, 6)])
def test_paper_rule_where_it_is_valid_and_refused_where_not(size):
    features = feature_map((2, *size, 3), 1)
    got = spatial_pyramid_pool(features, (3, 2, 1), bin_rule="paper")
    np.testing.assert_array_equal(numpy(got), ref.spatial_pyramid_pool(features, (3, 2, 1), bin_rule="paper"))
    with pytest.raises(ValueError, match="bin_rule='paper' cannot split a height of 10 into \\[6\\] bins"):
        spatial_pyramid_pool(feature_map((1, 10, 12, 3), 0), (6, 1), bin_rule="paper")


@given(problem=problems(), levels=LEVELS, rule=RULES)
def test_roi_pyramid_pool_matches_the_reference(problem, levels, rule):
    features, boxes, indices, scale = problem
    got = roi_pyramid_pool(features, boxes, indices, levels, scale, rule)
    assert is_native(got)
    expected = ref.roi_pyramid_pool(features, boxes, indices, levels, scale, rule)
    np.testing.assert_array_equal(numpy(got), expected.astype(np.float32))


@given(problem=problems(max_side=12, max_boxes=6), rule=RULES)
def test_box_cells_match_the_reference(problem, rule):
    features, boxes, _, scale = problem
    _, h, w, _ = features.shape
    cells = numpy(boxes_to_cells(boxes, scale, h, w, rule))
    assert [tuple(c) for c in cells.tolist()] == [ref.box_cells(b, scale, h, w, rule) for b in boxes]


@settings(max_examples=15)
@given(shape=MAPS, levels=LEVELS, seed=st.integers(0, 2**31))
def test_spatial_pyramid_pool_gradient_is_the_max_cells(shape, levels, seed):
    features = feature_map(shape, seed)  # continuous values: no ties
    dim = shape[3] * sum(n * n for n in levels)
    weights = np.random.default_rng(seed + 1).normal(size=(shape[0], dim)).astype(np.float32)
    got = gradient(lambda x: spatial_pyramid_pool(x, levels), features, weights)
    expected = ref.max_pool_gradient(features, weights, levels, lambda row: (row, 0, shape[1], 0, shape[2]))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@settings(max_examples=15)
@given(problem=problems(max_side=14, max_boxes=6), levels=LEVELS, rule=RULES)
def test_roi_pyramid_pool_gradient_is_the_max_cells(problem, levels, rule):
    features, boxes, indices, scale = problem
    _, h, w, c = features.shape
    weights = np.random.default_rng(len(boxes)).normal(size=(len(boxes), c * sum(n * n for n in levels)))
    weights = weights.astype(np.float32)

    def window(row):
        y1, x1, y2, x2 = ref.box_cells(boxes[row], scale, h, w, rule)
        return indices[row], y1, y2 + 1, x1, x2 + 1

    got = gradient(lambda x: roi_pyramid_pool(x, boxes, indices, levels, scale, rule), features, weights)
    # A cell that is the max of several bins sums their weights in an order the
    # backend's threads choose (a run in the full suite was 1.7e-6 off): float32
    # rounding, bounded by the size of a row's weights. A wrong cell is off by a weight.
    atol = 4 * np.finfo(np.float32).eps * max(1.0, float(np.abs(weights).sum(axis=1).max(initial=0.0)))
    np.testing.assert_allclose(got, ref.max_pool_gradient(features, weights, levels, window), rtol=1e-5, atol=atol)


def test_compiled_ops_give_the_eager_results():
    # XLA on TensorFlow, jax.jit (one trace per input shape), torch.compile.
    features = feature_map((2, 20, 27, 4), 3)
    boxes = np.array([[0, 0, 319, 431], [16, 40, 200, 90], [60, 50, 20, 10], [-50, 500, 900, 900]], np.float32)
    indices = np.array([0, 1, 1, 0], np.int32)
    roi = compiled(lambda f, b, i: roi_pyramid_pool(f, b, i))
    spp = compiled(lambda f: spatial_pyramid_pool(f, (4, 2, 1)))
    np.testing.assert_array_equal(
        numpy(roi(features, boxes, indices)), numpy(roi_pyramid_pool(features, boxes, indices))
    )
    np.testing.assert_array_equal(numpy(spp(features)), numpy(spatial_pyramid_pool(features, (4, 2, 1))))
    # Another size, and no boxes at all.
    other = feature_map((1, 9, 11, 4), 4)
    none = np.zeros((0, 4), np.float32)
    assert tuple(roi(other, none, np.zeros((0,), np.int32)).shape) == (0, 4 * 50)
    np.testing.assert_array_equal(numpy(spp(other)), ref.spatial_pyramid_pool(other, (4, 2, 1)).astype(np.float32))


def test_empty_inputs_are_valid():
    features = feature_map((2, 5, 6, 3), 0)
    assert tuple(roi_pyramid_pool(features, np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)).shape) == (0, 150)
    assert tuple(spatial_pyramid_pool(np.zeros((0, 5, 6, 3), np.float32)).shape) == (0, 150)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: spatial_pyramid_pool(np.zeros((4, 4, 3), np.float32)), "must be a rank-4 tensor"),
        (lambda: spatial_pyramid_pool(np.zeros((1, 0, 4, 3), np.float32)), "has height 0"),
        (lambda: spatial_pyramid_pool(np.zeros((1, 4, 4, 3), np.int32)), "floating-point tensor; got int32"),
        (lambda: spatial_pyramid_pool(np.zeros((1, 4, 4, 3), np.float32), levels=(0,)), "positive integers"),
        (lambda: spatial_pyramid_pool(np.zeros((1, 4, 4, 3), np.float32), pooling="min"), "`pooling` must be"),
        (
            lambda: roi_pyramid_pool(
                np.zeros((1, 4, 4, 3), np.float32), np.array([[0, 0, np.nan, 4]], np.float32), np.array([0])
            ),
            r"finite coordinates; rows \[0\]",
        ),
        (
            lambda: roi_pyramid_pool(
                np.zeros((2, 4, 4, 3), np.float32), np.array([[0, 0, 4, 4]] * 2, np.float32), np.array([0, 2])
            ),
            r"must lie in \[0, 2\).*rows \[1\] hold \[2\]",
        ),
        (
            lambda: roi_pyramid_pool(np.zeros((1, 4, 4, 3), np.float32), np.zeros((2, 3), np.float32), np.zeros(2)),
            r"\[num_boxes, 4\]",
        ),
        (
            lambda: roi_pyramid_pool(
                np.zeros((1, 4, 4, 3), np.float32), np.zeros((2, 4), np.float32), np.zeros(2, np.float32)
            ),
            "integer vector",
        ),
        (
            lambda: roi_pyramid_pool(
                np.zeros((1, 4, 4, 3), np.float32), np.zeros((1, 4), np.float32), np.zeros(1, int), spatial_scale=0
            ),
            "`spatial_scale` must be a positive",
        ),
    ],
)
def test_bad_input_raises_the_same_value_errors_on_every_backend(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_boxes_under_compilation_are_nan_rows_never_valid_numbers():
    # Compiled code cannot raise on values (XLA drops assertions; jax.jit and
    # torch.compile have none): the affected rows are NaN, the others exact.
    features = feature_map((1, 6, 6, 2), 5)
    boxes = np.array([[0, 0, 90, 90], [0, 0, np.inf, 10], [10, 10, 50, 50]], np.float32)
    out = numpy(
        compiled(lambda f, b, i: roi_pyramid_pool(f, b, i, (2, 1)))(features, boxes, np.array([0, 0, 3], np.int32))
    )
    assert np.isnan(out[1]).all() and np.isnan(out[2]).all()
    np.testing.assert_array_equal(out[0], ref.roi_pyramid_pool(features, boxes[:1], [0], (2, 1), 1 / 16, "spp")[0])


def test_outputs_keep_the_input_dtype():
    for dtype in ("float16", "bfloat16", "float32"):
        x = keras.ops.cast(feature_map((1, 7, 9, 3), 0), dtype)
        assert keras.backend.standardize_dtype(spatial_pyramid_pool(x, (2, 1)).dtype) == dtype
        boxes = np.array([[0, 0, 100, 100]], np.float32)
        assert keras.backend.standardize_dtype(roi_pyramid_pool(x, boxes, np.array([0])).dtype) == dtype
