import sys

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from keras_spp.ops import boxes_to_cells, roi_pyramid_pool, spatial_pyramid_pool
from tests.ops import pooling_reference as ref

LEVELS = st.sampled_from([(6, 3, 2, 1), (4, 3, 2, 1), (1,), (5, 2), (3,), (8, 4)])
RULES = st.sampled_from(["spp", "roi_pool"])
SCALES = st.sampled_from([1 / 16, 1 / 8, 0.25, 1.0, 1 / 12])


@st.composite
def problems(draw, max_side=20, max_boxes=12):
    """A feature map and boxes, with corners on cell borders, at the map's edges and
    beyond them, degenerate (y2 < y1) and tiny boxes included."""
    b = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    scale = draw(SCALES)
    r = draw(st.integers(0, max_boxes))

    def coordinate(size):
        limit = size / scale
        return draw(
            st.one_of(
                st.floats(-0.5 * limit, 1.5 * limit, allow_nan=False, width=32),
                st.integers(-3, size + 3).map(lambda c: c / scale),
                st.sampled_from([0.0, limit, limit - 1, -1.0]),
            )
        )

    boxes = [[coordinate(h), coordinate(w), coordinate(h), coordinate(w)] for _ in range(r)]
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(b, h, w, 3)).astype(np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(r, 4)
    indices = rng.integers(0, b, size=r).astype(np.int32)
    return features, boxes, indices, scale


@given(problem=problems(), levels=LEVELS, rule=RULES)
def test_matches_reference(problem, levels, rule):
    features, boxes, indices, scale = problem
    got = roi_pyramid_pool(features, boxes, indices, levels, scale, rule).numpy()
    expected = ref.roi_pyramid_pool(features, boxes, indices, levels, scale, rule)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected.astype(np.float32))


@given(problem=problems(max_side=12, max_boxes=6), rule=RULES)
def test_cells_match_reference_and_stay_on_the_map(problem, rule):
    features, boxes, _, scale = problem
    _, h, w, _ = features.shape
    cells = boxes_to_cells(boxes, scale, h, w, rule).numpy()
    for box, got in zip(boxes, cells):
        assert tuple(got) == ref.box_cells(box, scale, h, w, rule)
        assert 0 <= got[0] <= got[2] < h and 0 <= got[1] <= got[3] < w


def test_spp_rule_on_the_papers_example_scale():
    # S = 16: [40, 40, 200, 120] -> floor(2.5) + 1 = 3, ceil(12.5) - 1 = 12, ceil(7.5) - 1 = 7.
    cells = boxes_to_cells([[40.0, 40.0, 200.0, 120.0]], 1 / 16, 43, 58, "spp").numpy()
    assert cells.tolist() == [[3, 3, 12, 7]]
    # 10..22 px: floor(0.625) + 1 = 1, ceil(1.375) - 1 = 1, one cell.
    cells = boxes_to_cells([[10.0, 10.0, 22.0, 22.0]], 1 / 16, 43, 58, "spp").numpy()
    assert cells.tolist() == [[1, 1, 1, 1]]
    # 10..16 px crosses (1 > ceil(1.0) - 1 = 0): both become floor((1 + 0) / 2) = 0.
    cells = boxes_to_cells([[10.0, 10.0, 16.0, 16.0]], 1 / 16, 43, 58, "spp").numpy()
    assert cells.tolist() == [[0, 0, 0, 0]]


def test_roi_pool_rule_rounds_half_away_from_zero_like_torchvision():
    cells = boxes_to_cells([[8.0, 24.0, 40.0, 56.0]], 1 / 16, 43, 58, "roi_pool").numpy()
    assert cells.tolist() == [[1, 2, 3, 4]]


@given(problem=problems(max_side=16, max_boxes=1), levels=LEVELS)
def test_whole_map_box_equals_image_level_pooling(problem, levels):
    features, _, _, scale = problem
    _, h, w, _ = features.shape
    # roi_pool rule: corners at cell 0 and cell h-1 exactly.
    box = np.array([[0, 0, (h - 1) / scale, (w - 1) / scale]], np.float32)
    for image in range(features.shape[0]):
        got = roi_pyramid_pool(features, box, [image], levels, scale, "roi_pool").numpy()
        np.testing.assert_array_equal(got, spatial_pyramid_pool(features[image : image + 1], levels).numpy())


def test_no_boxes_gives_empty_output():
    out = roi_pyramid_pool(tf.ones([2, 5, 5, 4]), tf.zeros([0, 4]), tf.zeros([0], tf.int32))
    assert out.shape == (0, 4 * 50)
    f = tf.function(roi_pyramid_pool, jit_compile=True)
    assert f(tf.ones([2, 5, 5, 4]), tf.zeros([0, 4]), tf.zeros([0], tf.int32)).shape == (0, 200)


@given(problem=problems(max_side=10, max_boxes=5), levels=LEVELS, rule=RULES)
def test_gradient_goes_to_the_argmax_cells(problem, levels, rule):
    features, boxes, indices, scale = problem
    b, h, w, c = features.shape
    # Distinct values, so every bin has one arg-max cell.
    features = np.random.default_rng(len(boxes)).permutation(features.size).reshape(features.shape).astype(np.float32)
    x = tf.constant(features)
    weights = np.random.default_rng(1).normal(size=(len(boxes), c * sum(n * n for n in levels))).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(roi_pyramid_pool(x, boxes, indices, levels, scale, rule) * weights)
    got = tape.gradient(loss, x)
    got = np.zeros_like(features) if got is None else got.numpy()

    def window(row):
        y1, x1, y2, x2 = ref.box_cells(boxes[row], scale, h, w, rule)
        return indices[row], y1, y2 + 1, x1, x2 + 1

    expected = ref.max_pool_gradient(features, weights, levels, window)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_xla_with_dynamic_boxes_and_map_matches_eager():
    sig = [
        tf.TensorSpec([None, None, None, 8]),
        tf.TensorSpec([None, 4]),
        tf.TensorSpec([None], tf.int32),
    ]
    xla = tf.function(roi_pyramid_pool, input_signature=sig, jit_compile=True)
    rng = np.random.default_rng(5)
    for b, h, w, r in [(1, 43, 58, 50), (2, 13, 13, 7), (1, 1, 1, 3), (3, 30, 9, 0), (1, 75, 100, 20)]:
        features = rng.normal(size=(b, h, w, 8)).astype(np.float32)
        boxes = rng.uniform(-50, 16 * max(h, w) + 50, size=(r, 4)).astype(np.float32)
        indices = rng.integers(0, b, size=r).astype(np.int32)
        expected = ref.roi_pyramid_pool(features, boxes, indices, (6, 3, 2, 1), 1 / 16, "spp")
        np.testing.assert_array_equal(xla(features, boxes, indices).numpy(), expected.astype(np.float32))


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
@given(problem=problems(max_side=70, max_boxes=12), levels=LEVELS, rule=RULES)
def test_small_boxes_on_large_maps_match_reference(mode, problem, levels, rule):
    # Eagerly and in graphs outside XLA the block-max table is only as deep as the
    # longest box needs; under XLA the map's sides set it. Every mode must agree
    # with the reference, whatever the boxes' sizes against the map's.
    features, boxes, indices, scale = problem
    boxes = boxes / 8.0  # most boxes a few cells wide on a map of up to 70
    op = {"eager": roi_pyramid_pool, "graph": graph_op(False), "xla": graph_op(True)}[mode]
    got = op(features, boxes, indices, levels, scale, rule) if mode == "eager" else None
    if got is None:
        fn = tf.function(
            lambda f, b, i: roi_pyramid_pool(f, b, i, levels, scale, rule),
            input_signature=ANY_SHAPES,
            jit_compile=mode == "xla",
        )
        got = fn(features, boxes, indices)
    expected = ref.roi_pyramid_pool(features, boxes, indices, levels, scale, rule)
    np.testing.assert_array_equal(got.numpy(), expected.astype(np.float32))


def test_graph_gradient_with_a_table_sized_by_the_boxes_matches_eager():
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(2, 60, 70, 4)).astype(np.float32))
    boxes = tf.constant([[10.0, 20, 70, 90], [300, 400, 900, 1100], [5, 5, 5, 5]])
    indices = tf.constant([0, 1, 0])

    def grad(x, boxes, indices):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = roi_pyramid_pool(x, boxes, indices)
            loss = tf.reduce_sum(y * tf.range(tf.cast(tf.size(y), tf.float32), dtype=tf.float32)[: tf.shape(y)[1]])
        return tape.gradient(loss, x)

    graph = tf.function(grad, input_signature=ANY_SHAPES)
    np.testing.assert_allclose(graph(x, boxes, indices).numpy(), grad(x, boxes, indices).numpy(), rtol=1e-6)


def test_xla_gradient_matches_eager_gradient():
    x = tf.random.stateless_normal([2, 20, 25, 4], seed=[3, 4])
    boxes = tf.random.stateless_uniform([30, 4], seed=[5, 6], maxval=400.0)
    indices = tf.random.stateless_uniform([30], seed=[7, 8], maxval=2, dtype=tf.int32)

    def grad(x, boxes, indices):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(roi_pyramid_pool(x, boxes, indices)))
        return tape.gradient(loss, x)

    np.testing.assert_allclose(
        tf.function(grad, jit_compile=True)(x, boxes, indices).numpy(), grad(x, boxes, indices).numpy(), rtol=1e-5
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_coordinates(bad):
    x, idx = tf.ones([1, 5, 5, 2]), tf.constant([0, 0])
    boxes = np.array([[0, 0, 32, 32], [0, bad, 32, 32]], np.float32)
    with pytest.raises(ValueError, match=r"finite coordinates; rows \[1\]"):
        roi_pyramid_pool(x, boxes, idx)
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite coordinates"):
        tf.function(roi_pyramid_pool)(x, boxes, idx)
    out = tf.function(roi_pyramid_pool, jit_compile=True)(x, boxes, idx).numpy()
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()


@pytest.mark.parametrize("index", [-1, 2, 7])
def test_box_index_out_of_range(index):
    x, boxes = tf.ones([2, 5, 5, 2]), tf.constant([[0.0, 0, 32, 32], [0, 0, 16, 16]])
    idx = tf.constant([0, index])
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        roi_pyramid_pool(x, boxes, idx)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"box_indices"):
        tf.function(roi_pyramid_pool)(x, boxes, idx)
    out = tf.function(roi_pyramid_pool, jit_compile=True)(x, boxes, idx).numpy()
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()


@pytest.mark.parametrize(
    "features, boxes, indices, kwargs, match",
    [
        (tf.ones([5, 5, 2]), tf.zeros([1, 4]), [0], {}, "`features` must be a rank-4"),
        (tf.ones([1, 0, 5, 2]), tf.zeros([1, 4]), [0], {}, "height and width >= 1"),
        (tf.ones([1, 5, 5, 2]), tf.zeros([1, 5]), [0], {}, "`boxes` must be \\[num_boxes, 4\\]"),
        (tf.ones([1, 5, 5, 2]), tf.zeros([4]), [0], {}, "`boxes` must be"),
        (tf.ones([1, 5, 5, 2]), tf.zeros([2, 4]), [0], {}, "must match"),
        (tf.ones([1, 5, 5, 2]), tf.zeros([1, 4]), [0.0], {}, "`box_indices` must be an integer"),
        (tf.ones([1, 5, 5, 2]), tf.zeros([1, 4]), [0], {"levels": (6, 0)}, "`levels`"),
        (tf.ones([1, 5, 5, 2]), tf.zeros([1, 4]), [0], {"spatial_scale": 0.0}, "`spatial_scale`"),
        (tf.ones([1, 5, 5, 2]), tf.zeros([1, 4]), [0], {"spatial_scale": float("nan")}, "`spatial_scale`"),
        (tf.ones([1, 5, 5, 2]), tf.zeros([1, 4]), [0], {"coordinate_rule": "align"}, "`coordinate_rule`"),
    ],
)
def test_bad_input_raises_value_error(features, boxes, indices, kwargs, match):
    with pytest.raises(ValueError, match=match):
        roi_pyramid_pool(features, boxes, tf.constant(indices), **kwargs)


def test_degenerate_boxes_are_single_cells():
    x = tf.reshape(tf.range(1 * 6 * 6 * 1, dtype=tf.float32), [1, 6, 6, 1])
    # y2 < y1: roi_pool keeps the first corner's cell, spp takes the midpoint.
    boxes = tf.constant([[64.0, 64.0, 16.0, 16.0]])
    out = roi_pyramid_pool(x, boxes, [0], (2,), 1 / 16, "roi_pool").numpy()
    assert out.tolist() == [[4 * 6 + 4] * 4]
    out = roi_pyramid_pool(x, boxes, [0], (1,), 1 / 16, "spp").numpy()
    assert out.tolist() == [[2 * 6 + 2]]  # cells 5 and 0 cross: midpoint floor(5/2) = 2


ANY_SHAPES = [
    tf.TensorSpec(None, tf.float32),
    tf.TensorSpec(None, tf.float32),
    tf.TensorSpec(None, tf.int32),
]


def graph_op(jit):
    return tf.function(roi_pyramid_pool, input_signature=ANY_SHAPES, jit_compile=jit)


def saved_op(tmp_path, jit):
    module = tf.Module()
    module.pool = graph_op(jit)
    tf.saved_model.save(module, str(tmp_path / "pool"))
    return tf.saved_model.load(str(tmp_path / "pool")).pool


# Under XLA the check fails the compile and names the failing check's op; a graph's
# assertion carries the message.
SIZE_ERRORS = {
    "count": ("one entry per box", "box_indices_must_have_one_entry_per_box"),
    "zero": (r"height and width >= 1", "features_must_have_height_and_width_at_least_1"),
    "width": (r"expected shape \[\?,4\]", r"expected shape \[\?,4\]"),
    "rank": (r"expected shape \[\?,\?,\?,\?\]", r"expected shape \[\?,\?,\?,\?\]"),
    "index_rank": (r"expected shape \[\?\]", r"expected shape \[\?\]"),
}
BAD_SIZES = [
    ("count", [1, 5, 5, 2], [[0.0, 0, 32, 32]], [0, 0, 0]),  # once 3 rows
    ("count", [1, 5, 5, 2], [[0.0, 0, 32, 32]] * 3, [0]),  # once broadcast
    ("zero", [1, 0, 5, 2], [[0.0, 0, 32, 32]], [0]),
    ("width", [1, 5, 5, 2], [[0.0, 0, 32]], [0]),
    ("rank", [5, 5, 2], [[0.0, 0, 32, 32]], [0]),
    ("index_rank", [1, 5, 5, 2], [[0.0, 0, 32, 32]], [[0]]),
]


@pytest.mark.parametrize("mode", ["graph", "xla", "saved_graph", "saved_xla"])
@pytest.mark.parametrize("kind, features, boxes, indices", BAD_SIZES)
def test_size_checks_hold_in_graphs_xla_and_saved_models(tmp_path, mode, kind, features, boxes, indices):
    jit = mode.endswith("xla")
    op = saved_op(tmp_path, jit) if mode.startswith("saved") else graph_op(jit)
    args = (tf.ones(features), tf.constant(boxes), tf.constant(indices))
    with pytest.raises(tf.errors.InvalidArgumentError, match=SIZE_ERRORS[kind][jit]):
        op(*args)
    with pytest.raises(ValueError):  # the eager call refuses them too
        roi_pyramid_pool(*args)


@pytest.mark.parametrize("mode", ["graph", "xla", "saved_graph", "saved_xla"])
def test_size_checks_pass_good_input_unchanged(tmp_path, mode):
    jit = mode.endswith("xla")
    op = saved_op(tmp_path, jit) if mode.startswith("saved") else graph_op(jit)
    rng = np.random.default_rng(9)
    features = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)
    boxes = rng.uniform(-20, 160, size=(5, 4)).astype(np.float32)
    indices = np.array([0, 1, 1, 0, 1], np.int32)
    expected = ref.roi_pyramid_pool(features, boxes, indices, (6, 3, 2, 1), 1 / 16, "spp")
    np.testing.assert_array_equal(op(features, boxes, indices).numpy(), expected.astype(np.float32))


def test_value_checks_hold_in_a_saved_model(tmp_path):
    op = saved_op(tmp_path, jit=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="box_indices"):
        op(tf.ones([2, 5, 5, 2]), tf.constant([[0.0, 0, 32, 32]]), tf.constant([2]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite coordinates"):
        op(tf.ones([2, 5, 5, 2]), tf.constant([[0.0, np.nan, 32, 32]]), tf.constant([0]))


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 100])
def test_chunks_of_boxes_give_the_same_rows(chunk):
    rng = np.random.default_rng(11)
    features = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
    boxes = rng.uniform(-20, 200, size=(7, 4)).astype(np.float32)
    indices = rng.integers(0, 2, size=7).astype(np.int32)
    whole = roi_pyramid_pool(features, boxes, indices).numpy()
    np.testing.assert_array_equal(roi_pyramid_pool(features, boxes, indices, max_boxes_per_chunk=chunk).numpy(), whole)
    f = tf.function(lambda f, b, i: roi_pyramid_pool(f, b, i, max_boxes_per_chunk=chunk), jit_compile=True)
    np.testing.assert_array_equal(f(features, boxes, indices).numpy(), whole)


def test_eager_calls_chunk_many_boxes_automatically(monkeypatch):
    module = sys.modules[roi_pyramid_pool.__module__]
    features = np.random.default_rng(2).normal(size=(1, 8, 8, 4)).astype(np.float32)
    boxes = np.array([[0.0, 0, 127, 127], [16, 16, 64, 100], [0, 0, 20, 20]], np.float32)
    whole = roi_pyramid_pool(features, boxes, [0, 0, 0]).numpy()
    # One box's gathered corners: 4 * 36 * 4 channels * 4 bytes; a budget of two boxes.
    monkeypatch.setattr(module, "GATHER_BYTES_PER_CHUNK", 2 * 4 * 36 * 4 * 4)
    pooled = []
    original = module._pool_rows
    monkeypatch.setattr(module, "_pool_rows", lambda *a: pooled.append(a[-2]) or original(*a))
    np.testing.assert_array_equal(roi_pyramid_pool(features, boxes, [0, 0, 0]).numpy(), whole)
    assert pooled == [2, 1]


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", True])
def test_bad_chunk_size_raises_value_error(bad):
    with pytest.raises(ValueError, match="max_boxes_per_chunk"):
        roi_pyramid_pool(tf.ones([1, 5, 5, 2]), tf.zeros([1, 4]), [0], max_boxes_per_chunk=bad)


def test_traced_with_static_shapes_the_table_is_built_in_a_loop():
    # Unrolled, XLA fused the table's shifted maxima into the gathers and recomputed
    # them for every gathered value: 1342 ms forward against 90 ms with a loop.
    fn = tf.function(roi_pyramid_pool, jit_compile=True)
    graph = fn.get_concrete_function(tf.ones([1, 43, 58, 8]), tf.ones([5, 4]), tf.zeros([5], tf.int32)).graph
    assert {"While", "StatelessWhile"} & {op.type for op in graph.get_operations()}
    features, boxes, indices = (
        tf.random.uniform([1, 43, 58, 8]),
        tf.random.uniform([5, 4], 0, 900),
        tf.zeros([5], tf.int32),
    )
    np.testing.assert_array_equal(
        fn(features, boxes, indices).numpy(), roi_pyramid_pool(features, boxes, indices).numpy()
    )


@pytest.mark.parametrize("shape", [(2, 3), (2, 1), (4,), (2, 4, 1)])
def test_boxes_to_cells_refuses_boxes_that_are_not_r_by_4(shape):
    # [2, 3] and [2, 1] once broadcast against the corners into cells.
    with pytest.raises(ValueError, match=r"`boxes` must be \[num_boxes, 4\]"):
        boxes_to_cells(np.zeros(shape, np.float32), 1 / 16, 5, 5)
    graph = tf.function(lambda b: boxes_to_cells(b, 1 / 16, 5, 5), input_signature=[tf.TensorSpec(None)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected shape \[\?,4\]"):
        graph(tf.zeros(shape))
