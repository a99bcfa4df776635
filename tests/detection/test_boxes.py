import doctest
import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st
from keras import ops

from keras_spp.detection import boxes as box_ops
from keras_spp.detection.boxes import (
    box_area,
    box_deltas,
    clip_boxes,
    context_boxes,
    decode_boxes,
    encode_boxes,
    expand_boxes_for_context,
    iou,
    iou_matrix,
    remove_small_boxes,
    unique_boxes,
)
from tests.detection import geometry_reference as ref

# Corners on a small integer grid give identical, touching, nested and degenerate
# (y2 <= y1) boxes often; the float ones give everything else.
COORD = st.one_of(st.integers(-2, 12).map(float), st.floats(-20, 40, allow_nan=False, width=32))
BOX = st.lists(COORD, min_size=4, max_size=4)


def box_lists(max_size=8):
    return st.lists(BOX, max_size=max_size).map(lambda b: np.asarray(b, np.float32).reshape(-1, 4))


def slow_iou(a, b):
    """One pair, straight from the definition."""
    ih = min(a[2], b[2]) - max(a[0], b[0])
    iw = min(a[3], b[3]) - max(a[1], b[1])
    if ih <= 0 or iw <= 0:
        return 0.0
    inter = ih * iw
    area_a = max(a[2] - a[0], 0) * max(a[3] - a[1], 0)
    area_b = max(b[2] - b[0], 0) * max(b[3] - b[1], 0)
    return inter / (area_a + area_b - inter)


def decoded(*args, **kwargs):
    return ops.convert_to_numpy(decode_boxes(*args, **kwargs))


def devkit_iou(bb, gt):
    """VOCevaldet.m's overlap on 1-based inclusive [xmin, ymin, xmax, ymax]."""
    iw = min(bb[2], gt[2]) - max(bb[0], gt[0]) + 1
    ih = min(bb[3], gt[3]) - max(bb[1], gt[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    ua = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1) - iw * ih
    return iw * ih / ua


@given(a=box_lists(), b=box_lists())
def test_iou_matrix_matches_definition(a, b):
    got = iou_matrix(a, b)
    assert got.shape == (len(a), len(b)) and got.dtype == np.float32
    expected = np.array([[slow_iou(x, y) for y in b.astype(np.float64)] for x in a.astype(np.float64)])
    np.testing.assert_allclose(got, expected.reshape(got.shape), rtol=1e-6, atol=1e-7)
    assert np.isfinite(got).all() and (got >= 0).all() and (got <= 1).all()
    np.testing.assert_array_equal(got, iou_matrix(b, a).T)


@given(a=box_lists())
def test_iou_of_a_box_with_itself_is_one_unless_degenerate(a):
    diagonal = np.diag(iou_matrix(a, a))
    positive = box_area(a) > 0
    np.testing.assert_array_equal(diagonal, positive.astype(np.float32))


@given(st.lists(st.tuples(*[st.integers(1, 30)] * 4), min_size=1, max_size=6), st.data())
def test_voc_conversion_gives_the_devkits_iou(corners, data):
    # VOC [xmin, ymin, xmax, ymax], 1-based inclusive, xmin <= xmax.
    voc = [(min(a, c), min(b, d), max(a, c), max(b, d)) for a, b, c, d in corners]
    other = data.draw(st.sampled_from(voc))
    ours = np.array([[ymin - 1, xmin - 1, ymax, xmax] for xmin, ymin, xmax, ymax in voc], np.float32)
    other_ours = np.array([[other[1] - 1, other[0] - 1, other[3], other[2]]], np.float32)
    got = iou_matrix(ours, other_ours)[:, 0]
    expected = [devkit_iou(v, other) for v in voc]
    np.testing.assert_allclose(got, expected, rtol=1e-7)


def test_degenerate_and_empty_inputs():
    degenerate = np.array([[5, 5, 5, 9], [5, 5, 3, 9], [0, 0, 0, 0]], np.float32)
    assert iou_matrix(degenerate, degenerate).tolist() == [[0.0] * 3] * 3
    assert box_area(degenerate).tolist() == [0.0, 0.0, 0.0]
    assert iou_matrix(np.zeros((0, 4)), degenerate).shape == (0, 3)
    assert iou_matrix([], []).shape == (0, 0)
    assert box_area([]).shape == (0,)
    assert clip_boxes(np.zeros((0, 4)), 10, 10).shape == (0, 4)
    assert remove_small_boxes([], 1).tolist() == []
    assert unique_boxes([]).tolist() == []
    assert encode_boxes([], []).shape == (0, 4)
    assert decode_boxes(np.zeros((0, 4)), np.zeros((0, 8))).shape == (0, 2, 4)
    assert decode_boxes(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)
    assert decode_boxes(np.zeros((0, 4)), np.zeros((0, 3, 4))).shape == (0, 3, 4)
    assert iou(np.zeros((0, 1, 4)), np.zeros((1, 3, 4))).shape == (0, 3)
    assert expand_boxes_for_context([]).shape == (0, 4)


def test_box_area_and_clip():
    assert box_area([[1, 2, 4, 7]]).tolist() == [15.0]
    boxes = np.array([[-3, -1, 12, 9], [2, 3, 4, 5], [20, 30, 25, 35]], np.float32)
    got = clip_boxes(boxes, height=10, width=8)
    assert got.dtype == np.float32
    assert got.tolist() == [[0, 0, 10, 8], [2, 3, 4, 5], [10, 8, 10, 8]]


@given(boxes=box_lists(12), min_size=st.sampled_from([0, 1, 2.5, 5, 16]))
def test_remove_small_boxes_matches_definition(boxes, min_size):
    expected = [i for i, (y1, x1, y2, x2) in enumerate(boxes) if y2 - y1 >= min_size and x2 - x1 >= min_size]
    assert remove_small_boxes(boxes, min_size).tolist() == expected


def test_remove_small_boxes_keeps_exactly_min_size():
    boxes = [[0, 0, 16, 16], [0, 0, 15.9, 16], [0, 0, 16, 15.9], [0, 0, 30, 40]]
    assert remove_small_boxes(boxes, 16).tolist() == [0, 3]


@given(
    boxes=st.lists(
        st.sampled_from([[0, 0, 1, 1], [0, 0, 1, 2], [-0.0, 0, 1, 1], [3, 3, 2, 2], [0.5, 0, 1, 1]]),
        max_size=12,
    )
)
def test_unique_boxes_matches_definition(boxes):
    seen, expected = set(), []
    for i, box in enumerate(boxes):
        key = tuple(float(v) for v in box)  # -0.0 == 0.0 as Python floats
        if key not in seen:
            seen.add(key)
            expected.append(i)
    assert unique_boxes(np.asarray(boxes, np.float32).reshape(-1, 4)).tolist() == expected


# Sizes 2..100: a scale change under the 62.5 clamp, so decoding inverts encoding.
POSITIVE_BOX = st.tuples(
    st.floats(-50, 50, width=32), st.floats(-50, 50, width=32), st.floats(2, 100, width=32), st.floats(2, 100, width=32)
).map(lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])
WEIGHTS = st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (0.5, 2.0, 3.0, 1.5)])


@given(pairs=st.lists(st.tuples(POSITIVE_BOX, POSITIVE_BOX), max_size=8), weights=WEIGHTS)
def test_encode_matches_definition_and_decode_inverts_it(pairs, weights):
    proposals = np.array([p for p, _ in pairs], np.float32).reshape(-1, 4)
    targets = np.array([t for _, t in pairs], np.float32).reshape(-1, 4)
    deltas = encode_boxes(proposals, targets, weights)
    for row, (p, t) in enumerate(zip(proposals.astype(np.float64), targets.astype(np.float64))):
        ph, pw, th, tw = p[2] - p[0], p[3] - p[1], t[2] - t[0], t[3] - t[1]
        expected = [
            weights[0] * ((t[0] + th / 2) - (p[0] + ph / 2)) / ph,
            weights[1] * ((t[1] + tw / 2) - (p[1] + pw / 2)) / pw,
            weights[2] * math.log(th / ph),
            weights[3] * math.log(tw / pw),
        ]
        np.testing.assert_allclose(deltas[row], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(decoded(proposals, deltas, weights), targets, rtol=1e-5, atol=1e-3)


def test_zero_deltas_give_the_proposal_and_known_values():
    proposals = np.array([[10, 20, 30, 60]], np.float32)
    assert decoded(proposals, np.zeros((1, 4))).tolist() == proposals.tolist()
    # Shift by half a size, double both sides: centre (20, 40) -> (30, 60), size 20x40 -> 40x80.
    got = decoded(proposals, [[0.5, 0.5, math.log(2), math.log(2)]])
    np.testing.assert_allclose(got, [[10, 20, 50, 100]], atol=1e-4)
    expected = [[0.5, 0.5, math.log(2), math.log(2)]]
    np.testing.assert_allclose(encode_boxes(proposals, [[10, 20, 50, 100]]), expected, rtol=1e-6)


def test_decode_clamps_the_scale_and_never_overflows():
    proposals = np.array([[0, 0, 16, 32], [5, 5, 5, 5]], np.float32)
    deltas = np.array([[0, 0, 1e4, 50.0], [1e4, -1e4, 1e4, 1e4]], np.float32)
    for dtype in ("float32", "float64"):
        got = decoded(proposals, deltas, dtype=dtype)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got[0, 2] - got[0, 0], 1000.0, rtol=1e-5)  # 16 * 1000 / 16
        np.testing.assert_allclose(got[0, 3] - got[0, 1], 2000.0, rtol=1e-5)
        assert got[1].tolist() == [5, 5, 5, 5]  # degenerate stays degenerate, no NaN


@given(
    proposals=st.lists(POSITIVE_BOX, max_size=6),
    k=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    weights=WEIGHTS,
)
def test_class_specific_deltas(proposals, k, seed, weights):
    proposals = np.asarray(proposals, np.float32).reshape(-1, 4)
    deltas = np.random.default_rng(seed).normal(scale=2.0, size=(len(proposals), 4 * k)).astype(np.float32)
    # float64: in float32, exp() of another length of array may differ in its last bit.
    got = decoded(proposals, deltas, weights, "float64")
    per_class = [decoded(proposals, deltas[:, 4 * c : 4 * c + 4], weights, "float64") for c in range(k)]
    expected = np.stack(per_class, axis=1) if per_class else np.zeros((0, k, 4))
    if k == 1:
        assert got.shape == (len(proposals), 4)
        expected = expected[:, 0]
    else:
        assert got.shape == (len(proposals), k, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(
        decoded(proposals, deltas.reshape(-1, k, 4), weights, "float64"), got.reshape(-1, k, 4)
    )
    reference = ref.decode_boxes(proposals, deltas, weights)
    np.testing.assert_allclose(got, reference, rtol=1e-14, atol=1e-12)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_decode_with_dynamic_shapes_in_a_graph(jit_compile):
    fn = tf.function(
        lambda p, d: decode_boxes(p, d, (10.0, 10.0, 5.0, 5.0)),
        input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None, 12], tf.float32)],
        jit_compile=jit_compile,
    )
    for n in (0, 1, 7):
        rng = np.random.default_rng(n)
        # Sorting along axis 1 puts (y1, x1) before (y2, x2).
        proposals = np.sort(rng.uniform(0, 100, (n, 2, 2)), axis=1).reshape(n, 4).astype(np.float32)
        deltas = rng.normal(size=(n, 12)).astype(np.float32)
        got = fn(proposals, deltas)
        assert got.shape == (n, 3, 4)
        expected = ref.decode_boxes(proposals, deltas, (10, 10, 5, 5), np.float32).reshape(n, 3, 4)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-4)


@given(box=POSITIVE_BOX, size=st.sampled_from([224, 227, 100]), context=st.sampled_from([0, 16, 8, 30]))
def test_context_expansion_leaves_context_pixels_after_warping(box, size, context):
    box = np.asarray([box], np.float32)
    out = expand_boxes_for_context(box, output_size=size, context=context).astype(np.float64)[0]
    y1, x1, y2, x2 = box[0].astype(np.float64)
    sy, sx = size / (out[2] - out[0]), size / (out[3] - out[1])
    # Where the original box lands in the warped size x size crop.
    np.testing.assert_allclose([(y1 - out[0]) * sy, (x1 - out[1]) * sx], [context] * 2, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose([(y2 - out[0]) * sy, (x2 - out[1]) * sx], [size - context] * 2, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose((out[:2] + out[2:]) / 2, (box[0, :2] + box[0, 2:]) / 2, rtol=1e-5, atol=1e-3)


def test_context_expansion_example_and_no_clipping():
    got = expand_boxes_for_context([[0, 0, 192, 96], [5, 5, 5, 5]], output_size=224, context=16)
    assert got.tolist() == [[-16, -8, 208, 104], [5, 5, 5, 5]]


def random_boxes(rng, n=200):
    """Boxes at every magnitude, inverted and degenerate ones among them."""
    magnitude = 10.0 ** rng.integers(-30, 38, size=(n, 1))
    return (rng.uniform(-1, 1, (n, 4)) * magnitude).astype(np.float32)


# Corners and sides at float32's edges: its largest, sides that overflow, inf, NaN,
# subnormals, -0.0, degenerate and inverted boxes.
BIG = np.finfo(np.float32).max
ADVERSARIAL = np.array(
    [
        [-BIG, -BIG, BIG, BIG],
        [-1.6e38, 0, 1.6e38, 1],
        [0, 0, 3e38, 3e38],
        [3e38, 3e38, 3e38, 3e38],
        [1e-45, -1e-45, 3e-45, 2e-38],
        [-0.0, -0.0, 0.0, 0.0],
        [5, 5, 5, 5],
        [10, 10, 2, 3],
        [0, 0, np.inf, 1],
        [-np.inf, 0, np.inf, 1],
        [np.nan, 0, 1, 1],
        [16777216, 16777217, 16777218, 16777221],
    ],
    np.float32,
)
CONTEXTS = [(224, 16), (227, 16), (100, 30), (64, 0), (48, 8)]


@pytest.mark.parametrize("size, context", CONTEXTS)
def test_context_expansion_is_the_old_numpy_bit_for_bit(size, context):
    boxes = np.concatenate([random_boxes(np.random.default_rng(size)), ADVERSARIAL])
    with np.errstate(over="ignore", invalid="ignore"):
        got = expand_boxes_for_context(boxes, size, context)
    expected = ref.expand_boxes_for_context(boxes, size, context)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_context_boxes_in_a_graph_is_the_old_graph_twin(jit_compile):
    # Halving before scaling instead of after gives the same float32 (both round the
    # one product d * scale / 2) except where d * scale overflows: there the old twin
    # gave inf and context_boxes the finite box. Subnormals are left out: TensorFlow
    # flushes them to zero on the CPU, numpy does not.
    fn = tf.function(
        lambda b: context_boxes(b, 224, 16, "float32"),
        input_signature=[tf.TensorSpec([None, 4], tf.float32)],
        jit_compile=jit_compile,
    )
    normal = ADVERSARIAL[np.all((ADVERSARIAL == 0) | ~(np.abs(ADVERSARIAL) < 1e-37), axis=1)]
    boxes = np.concatenate([random_boxes(np.random.default_rng(7)), normal])
    got = fn(boxes).numpy()
    old = ref.context_boxes_float32(boxes, 224, 16)
    overflowed = np.isinf(old).any(axis=1) & np.isfinite(got).all(axis=1)
    assert overflowed.sum() == 2  # sides of 3.2e38 and 3e38: scaled by 7/6, over float32's largest
    np.testing.assert_array_equal(got[~overflowed].view(np.uint32), old[~overflowed].view(np.uint32))
    with np.errstate(over="ignore", invalid="ignore"):
        exact = ref.expand_boxes_for_context(boxes[overflowed], 224, 16)
    np.testing.assert_allclose(got[overflowed], exact, rtol=1e-6)
    # Against the float64 numpy version, float32 rounds after each op: a few ulps of
    # the box's largest coordinate (and inf where a float32 sum overflows).
    finite = np.isfinite(got).all(axis=1)
    tolerance = 4 * np.finfo(np.float32).eps * np.abs(boxes[finite]).max(axis=1, keepdims=True) * (224 / 192)
    difference = np.abs(got[finite].astype(np.float64) - ref.expand_boxes_for_context(boxes[finite], 224, 16))
    assert (difference <= tolerance).all()


@pytest.mark.parametrize("size, context", CONTEXTS)
def test_context_boxes_dtypes_and_shapes(size, context):
    boxes = random_boxes(np.random.default_rng(3), 12).reshape(3, 4, 4)
    got = context_boxes(boxes, size, context)
    assert got.dtype == tf.float32 and got.shape == (3, 4, 4)
    np.testing.assert_array_equal(got.numpy().reshape(-1, 4), ref.context_boxes_float32(boxes, size, context))
    assert context_boxes(boxes.astype(np.float64), size, context).dtype == tf.float64
    assert context_boxes(np.zeros((0, 4), np.int32), size, context).dtype == tf.float32
    numpy = context_boxes(boxes.astype(np.float64), size, context, xp=box_ops.NUMPY_OPS)
    assert isinstance(numpy, np.ndarray) and numpy.dtype == np.float64


POSITIVE = st.floats(0.0625, 1e6, width=32)


@given(
    sides=st.lists(st.tuples(COORD, COORD, POSITIVE, POSITIVE, COORD, COORD, POSITIVE, POSITIVE), max_size=8),
    weights=WEIGHTS,
)
def test_encode_is_the_old_formula_bit_for_bit(sides, weights):
    rows = np.asarray(sides, np.float32).reshape(-1, 8)
    proposals = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1)
    targets = np.concatenate([rows[:, 4:6], rows[:, 4:6] + rows[:, 6:]], axis=1)
    # Rounding can make a tiny side 0 next to a large corner: encode refuses those.
    keep = (proposals[:, 2:] > proposals[:, :2]).all(axis=1) & (targets[:, 2:] > targets[:, :2]).all(axis=1)
    proposals, targets = proposals[keep], targets[keep]
    got = encode_boxes(proposals, targets, weights)
    expected = ref.encode_boxes(proposals, targets, weights).astype(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    float32 = ref.encode_boxes(proposals, targets, weights, np.float32)
    np.testing.assert_allclose(box_deltas(proposals, targets, weights).numpy(), float32, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_box_deltas_in_a_graph_with_dynamic_shapes(jit_compile):
    fn = tf.function(
        lambda p, t: box_deltas(p, t, (10.0, 10.0, 5.0, 5.0)),
        input_signature=[tf.TensorSpec([None, 4], tf.float32)] * 2,
        jit_compile=jit_compile,
    )
    for n in (0, 1, 9):
        rng = np.random.default_rng(n)
        corners = rng.uniform(0, 100, (2, n, 2))
        proposals, targets = (
            np.concatenate([c, c + rng.uniform(1, 50, (n, 2))], 1).astype(np.float32) for c in corners
        )
        got = fn(proposals, targets).numpy()
        expected = ref.encode_boxes(proposals, targets, (10.0, 10.0, 5.0, 5.0), np.float32)
        assert got.shape == (n, 4)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(decode_boxes(proposals, got, (10.0, 10.0, 5.0, 5.0)), targets, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: box_area([[0, 0, 1]]), r"`boxes` must be \[num_boxes, 4\]"),
        (lambda: box_area([0, 0, 1, 1]), r"got shape \(4,\)"),
        (lambda: box_area([["a", "b", "c", "d"]]), "real numbers"),
        (lambda: iou_matrix(np.zeros((2, 4)), np.zeros((2, 5))), "`b` must be"),
        (lambda: clip_boxes([[0, 0, 1, 1]], 0, 5), "`height` must be a positive"),
        (lambda: clip_boxes([[0, 0, 1, 1]], 5, float("nan")), "`width` must be a positive"),
        (lambda: remove_small_boxes([[0, 0, 1, 1]], -1), "`min_size`"),
        (lambda: encode_boxes([[0, 0, 1, 1]], [[0, 0, 1, 1]] * 2), "pairs them row by row"),
        (lambda: encode_boxes([[0, 0, 0, 1]], [[0, 0, 1, 1]]), r"`proposals` must have positive height .* rows \[0\]"),
        (lambda: encode_boxes([[0, 0, 1, 1]], [[0, 0, 1, -1]]), "`targets` must have positive"),
        (lambda: encode_boxes([[0, 0, 1, 1]], [[0, 0, 1, 1]], (1, 1, 0, 1)), "`weights` must be 4 positive"),
        (lambda: encode_boxes([[0, 0, 1, 1]], [[0, 0, 1, 1]], (1, 1, 1)), "`weights`"),
        (lambda: decode_boxes([[0, 0, 1, 1]], [[0, 0, 1]]), r"`deltas` must be \[N, 4\]"),
        (lambda: decode_boxes([[0, 0, 1, 1]], np.zeros((2, 4))), "2 rows but `proposals` has 1"),
        (lambda: decode_boxes([[0, 0, 1, 1]], np.zeros((1, 2, 3))), "`deltas` must be"),
        (lambda: decode_boxes(tf.zeros([1, 3]), tf.zeros([1, 4])), "`proposals` must be"),
        (lambda: decode_boxes(tf.zeros([1, 4]), tf.zeros([1, 6])), "`deltas` must be"),
        (lambda: expand_boxes_for_context([[0, 0, 1, 1]], 32, 16), "output_size > 2 \\* context"),
        (lambda: expand_boxes_for_context([[0, 0, 1, 1]], 224, -1), "context >= 0"),
        (lambda: context_boxes(tf.zeros([1, 4]), 224, float("nan")), "`output_size` and `context` must be numbers"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_docstring_examples():
    result = doctest.testmod(box_ops, extraglobs={"tf": tf, "np": np})
    assert result.failed == 0 and result.attempted > 0


def test_iou_matches_iou_matrix_with_degenerate_boxes():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 12, size=(7, 4)).astype(np.float32)  # some inverted or empty
    b = rng.integers(0, 12, size=(5, 4)).astype(np.float32)
    got = ops.convert_to_numpy(iou(a[:, None], b[None]))
    np.testing.assert_allclose(got, iou_matrix(a, b), rtol=1e-6, atol=1e-7)
    assert iou(np.zeros([0, 4]), np.zeros([0, 4])).shape == (0,)


# Adversarial coordinates: whole and fractional pixels, huge ones whose areas
# overflow float32, tiny and subnormal sides, exact ties (corners from a short list).
WILD = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 2.5, -3.0, 1e-30, 1e-45, 2.0**24, 3e18, -3e18, 1e30, 3e38]),
    st.floats(-1e6, 1e6, allow_nan=False, width=32),
)


def no_subnormals(*arrays):
    """Whether float32 arithmetic on these stays clear of subnormal numbers, which
    TensorFlow and XLA flush to zero (as the old graph versions did) and numpy keeps:
    every value is 0, at least 1e-3 in magnitude, or not finite."""
    return all(((x == 0) | ~(np.abs(x) < 1e-3)).all() for x in arrays)


def wild_boxes(max_size=6):
    return st.lists(st.lists(WILD, min_size=4, max_size=4), max_size=max_size).map(
        lambda b: np.asarray(b, np.float32).reshape(-1, 4)
    )


@given(a=st.one_of(box_lists(), wild_boxes()), b=st.one_of(box_lists(), wild_boxes()))
def test_iou_in_keras_ops_is_the_reference_bit_for_bit(a, b):
    """The numpy views are the old numpy functions exactly; the keras.ops run (here on
    TensorFlow) is the same IEEE arithmetic in float64, and in float32 the old graph
    version's."""
    expected = ref.pairwise_iou(a, b)
    np.testing.assert_array_equal(box_ops.pairwise_iou(a, b), expected)
    np.testing.assert_array_equal(iou_matrix(a, b), expected.astype(np.float32))
    np.testing.assert_array_equal(ops.convert_to_numpy(iou(a[:, None], b[None], "float64")), expected)
    got32 = ops.convert_to_numpy(iou(a[:, None], b[None]))
    assert got32.dtype == np.float32
    if no_subnormals(a, b):
        np.testing.assert_array_equal(got32, ref.pairwise_iou(a, b, np.float32))
    np.testing.assert_array_equal(box_area(a), ref.area(a).astype(np.float32))


DELTA = st.one_of(st.floats(-5, 5, width=32), st.sampled_from([0.0, 1e4, -1e4, 50.0, box_ops.DELTA_CLAMP]))


@given(
    proposals=st.one_of(box_lists(), wild_boxes()),
    k=st.integers(1, 3),
    data=st.data(),
    weights=WEIGHTS,
)
def test_decode_in_keras_ops_matches_the_reference(proposals, k, data, weights):
    n = len(proposals)
    deltas = np.asarray(data.draw(st.lists(DELTA, min_size=4 * k * n, max_size=4 * k * n)), np.float32)
    deltas = deltas.reshape(n, 4 * k)
    for dtype, rtol in ((np.float64, 1e-14), (np.float32, 2e-6)):
        if dtype == np.float32 and not no_subnormals(proposals, deltas):
            continue
        expected = ref.decode_boxes(proposals, deltas, weights, dtype)
        # Run by numpy, it is the old numpy function exactly (float64) and in float32
        # the old graph function's arithmetic.
        with np.errstate(over="ignore", invalid="ignore"):
            by_numpy = decode_boxes(proposals, deltas, weights, np.dtype(dtype).name, box_ops.NUMPY_OPS)
        assert isinstance(by_numpy, np.ndarray)
        np.testing.assert_array_equal(by_numpy, expected)
        got = decoded(proposals, deltas, weights, np.dtype(dtype).name)
        assert got.dtype == dtype and got.shape == expected.shape
        finite = np.isfinite(expected)
        np.testing.assert_array_equal(np.isfinite(got), finite)
        # exp() is the only op whose last bits may differ between TensorFlow and numpy;
        # a corner is centre -+ half a side, so its error is relative to the larger.
        magnitude = np.abs(np.where(finite, expected, 0)).max(axis=-1, keepdims=True)
        with np.errstate(invalid="ignore"):
            error = np.abs(got - expected)
        assert (error[finite] <= (rtol * np.broadcast_to(magnitude, got.shape))[finite]).all()
