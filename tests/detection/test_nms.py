import doctest
import functools

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from keras_spp.detection import nms as nms_module
from keras_spp.detection.boxes import decode_boxes
from keras_spp.detection.nms import box_voting, combine_detections, per_class_nms
from tests.detection.nms_reference import reference_iou, reference_nms


@st.composite
def problems(draw, max_rows=14, max_classes=4):
    """Boxes on a coarse grid (identical, nested, touching, inverted boxes) or anywhere,
    shared or per class; scores from a few values (ties) or anywhere, some NaN-free
    negatives; R = 0 and K = 0 included."""
    rows = draw(st.integers(0, max_rows))
    classes = draw(st.integers(0, max_classes))
    per_class = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    shape = (rows, classes, 4) if per_class else (rows, 4)
    grid = draw(st.sampled_from([2, 4, 50]))
    boxes = rng.integers(0, grid, size=shape).astype(np.float32) * (10.0 / grid) * 3
    if draw(st.booleans()):
        boxes[..., 2:] = boxes[..., :2] + np.abs(boxes[..., 2:] - boxes[..., :2])  # proper boxes
    if draw(st.booleans()) and rows > 1:
        boxes[1] = boxes[0]  # identical boxes
    if draw(st.booleans()):
        scores = rng.choice([-0.5, 0.0, 0.25, 0.5, 0.9], size=(rows, classes)).astype(np.float32)
    else:
        scores = rng.uniform(-1, 1, size=(rows, classes)).astype(np.float32)
    return boxes, scores


SETTINGS = st.tuples(
    st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]),  # iou_threshold
    st.sampled_from([-np.inf, 0.0, 0.5]),  # score_threshold
    st.integers(1, 20),  # max_detections
    st.sampled_from([None, 1, 2, 5]),  # max_per_class
)


def assert_same(got, expected):
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g.numpy(), e)
    assert got[2].dtype == tf.int32 and got[1].dtype == tf.float32 and got[0].dtype == tf.float32


@given(problem=problems(), settings=SETTINGS)
def test_matches_reference(problem, settings):
    boxes, scores = problem
    iou, score_threshold, max_detections, max_per_class = settings
    got = per_class_nms(boxes, scores, iou, score_threshold, max_detections, max_per_class)
    assert_same(got, reference_nms(boxes, scores, iou, score_threshold, max_detections, max_per_class))


@functools.cache
def graph_nms(per_class_boxes, settings):
    box_shape = [None, None, 4] if per_class_boxes else [None, 4]
    return tf.function(
        lambda b, s: per_class_nms(b, s, *settings),
        input_signature=[tf.TensorSpec(box_shape, tf.float32), tf.TensorSpec([None, None], tf.float32)],
    )


@given(
    problem=problems(),
    settings=st.sampled_from([(0.3, 0.0, 100, None), (0.5, -np.inf, 5, 2), (0.0, 0.25, 3, None)]),
)
def test_matches_reference_in_a_graph_with_dynamic_shapes(problem, settings):
    boxes, scores = problem
    got = graph_nms(boxes.ndim == 3, settings)(boxes, scores)
    assert_same(got, reference_nms(boxes, scores, *settings))


def test_identical_boxes_keep_the_first_row_per_class():
    boxes = np.tile([[0.0, 0, 10, 10]], (5, 1))
    scores = np.full((5, 2), 0.5, np.float32)
    b, s, c = per_class_nms(boxes, scores, iou_threshold=0.9)
    assert c.numpy().tolist() == [0, 1] and s.numpy().tolist() == [0.5, 0.5]
    # Rows of equal score: the first one survives (visible with per-class boxes).
    per_class = np.tile([[[0.0, 0, 10, 10]]], (5, 2, 1)) + np.arange(5, dtype=np.float32)[:, None, None] * 1e-3
    b, _, c = per_class_nms(per_class, scores, iou_threshold=0.9)
    np.testing.assert_array_equal(b.numpy(), per_class[0])


def test_ties_across_classes_and_the_max_detections_cut():
    # Disjoint boxes, all the same score: lower class first, then lower row.
    boxes = np.array([[0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]], np.float32)
    scores = np.full((3, 3), 0.5, np.float32)
    _, _, c = per_class_nms(boxes, scores, max_detections=4)
    assert c.numpy().tolist() == [0, 0, 0, 1]
    b, _, _ = per_class_nms(boxes, scores, max_detections=9)
    assert b.numpy()[:3].tolist() == boxes.tolist()


def test_nothing_above_threshold_and_empty_inputs():
    boxes = np.array([[0, 0, 1, 1], [5, 5, 6, 6]], np.float32)
    cases = [
        (boxes, np.array([[0.0, -1.0], [-0.5, 0.0]], np.float32)),  # all <= 0
        (np.zeros((0, 4), np.float32), np.zeros((0, 3), np.float32)),  # R = 0
        (np.zeros((0, 3, 4), np.float32), np.zeros((0, 3), np.float32)),
        (boxes, np.zeros((2, 0), np.float32)),  # K = 0
    ]
    for b, s in cases:
        out = per_class_nms(b, s)
        assert [t.shape.as_list() for t in out] == [[0, 4], [0], [0]]
        out = graph_nms(b.ndim == 3, (0.3, 0.0, 100, None))(b, s)
        assert [t.shape.as_list() for t in out] == [[0, 4], [0], [0]]


def test_only_the_class_with_a_score_gives_detections():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9]], np.float32)
    scores = np.array([[0.0, 0.0, 0.4], [0.0, 0.0, 0.6]], np.float32)
    b, _, c = per_class_nms(boxes, scores)
    assert b.numpy().tolist() == [[0, 0, 10, 9]] and c.numpy().tolist() == [2]


def test_inverted_boxes_are_zero_area_not_flipped():
    boxes = np.array([[10, 10, 0, 0], [0, 0, 10, 10]], np.float32)
    b, _, _ = per_class_nms(boxes, [[0.9], [0.8]], iou_threshold=0.1)
    # tf.image.non_max_suppression alone would flip row 0 and suppress row 1.
    assert b.numpy().tolist() == boxes.tolist()


def test_per_class_boxes_are_returned_for_their_class():
    boxes = np.array([[[0, 0, 1, 1], [0, 0, 2, 2]], [[5, 5, 6, 6], [5, 5, 7, 7]]], np.float32)
    scores = np.array([[0.2, 0.9], [0.8, 0.1]], np.float32)
    b, _, c = per_class_nms(boxes, scores)
    assert c.numpy().tolist() == [1, 0, 0, 1]
    assert b.numpy().tolist() == [[0, 0, 2, 2], [5, 5, 6, 6], [0, 0, 1, 1], [5, 5, 7, 7]]


def test_exported_saved_model_decodes_and_suppresses_with_dynamic_rows(tmp_path):
    class Head(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 4], tf.float32, name="proposals"),
                tf.TensorSpec([None, 12], tf.float32, name="deltas"),
                tf.TensorSpec([None, 3], tf.float32, name="scores"),
            ]
        )
        def detect(self, proposals, deltas, scores):
            boxes, scores, classes = per_class_nms(decode_boxes(proposals, deltas), scores, 0.3, 0.0, 10)
            return {"boxes": boxes, "scores": scores, "classes": classes}

    tf.saved_model.save(Head(), str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    for rows in (0, 1, 40):
        rng = np.random.default_rng(rows)
        # Sorting along axis 1 puts (y1, x1) before (y2, x2).
        proposals = np.sort(rng.uniform(0, 60, (rows, 2, 2)), axis=1).reshape(rows, 4).astype(np.float32)
        deltas = rng.normal(scale=0.1, size=(rows, 12)).astype(np.float32)
        scores = rng.uniform(-0.5, 1, (rows, 3)).astype(np.float32)
        got = loaded.detect(proposals, deltas, scores)
        decoded = decode_boxes(proposals, deltas).numpy()
        expected = reference_nms(decoded, scores, 0.3, 0.0, 10)
        for key, e in zip(["boxes", "scores", "classes"], expected):
            np.testing.assert_array_equal(got[key].numpy(), e)
        np.testing.assert_allclose(decoded, decode_boxes(proposals, deltas), rtol=1e-5, atol=1e-4)


def test_combine_is_nms_over_the_union():
    a = ([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.4], [0, 2])
    b = ([[0, 0, 10, 11], [20, 20, 30, 30]], [0.95, 0.7], [0, 1])
    boxes, scores, classes = combine_detections([a, b], iou_threshold=0.3)
    # Class 0: b's 0.95 suppresses a's 0.9; classes 1 and 2 each keep their box.
    assert classes.numpy().tolist() == [0, 1, 2]
    np.testing.assert_allclose(scores.numpy(), [0.95, 0.7, 0.4])
    assert boxes.numpy().tolist() == [[0, 0, 10, 11], [20, 20, 30, 30], [20, 20, 30, 30]]


@st.composite
def model_outputs(draw):
    models = []
    for _ in range(draw(st.integers(0, 3))):
        n = draw(st.integers(0, 6))
        rng = np.random.default_rng(draw(st.integers(0, 2**31)))
        corners = rng.integers(0, 4, size=(n, 2, 2)).astype(np.float32) * 5
        boxes = np.concatenate([corners.min(1), corners.max(1) + 5], axis=1)
        scores = rng.choice([0.25, 0.5, 0.75, rng.uniform()], size=n).astype(np.float32)
        models.append((boxes, scores, rng.integers(0, 3, size=n).astype(np.int32)))
    return models


@given(models=model_outputs(), max_detections=st.integers(1, 12))
def test_combine_matches_reference_on_the_union(models, max_detections):
    got = combine_detections(models, iou_threshold=0.3, max_detections=max_detections, num_classes=3)
    boxes = np.concatenate([m[0] for m in models] + [np.zeros((0, 4), np.float32)])
    scores = np.concatenate([m[1] for m in models] + [np.zeros(0, np.float32)])
    classes = np.concatenate([m[2] for m in models] + [np.zeros(0, np.int32)])
    dense = np.full((len(boxes), 3), -np.inf, np.float32)
    dense[np.arange(len(boxes)), classes] = scores
    assert_same(got, reference_nms(boxes, dense, 0.3, -np.inf, max_detections))
    inferred = combine_detections(models, iou_threshold=0.3, max_detections=max_detections)
    for g, i in zip(got, inferred):
        np.testing.assert_array_equal(g.numpy(), i.numpy())


def test_combine_empty_and_in_a_graph():
    empty = combine_detections([])
    assert [t.shape.as_list() for t in empty] == [[0, 4], [0], [0]]
    none = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
    assert combine_detections([none, none])[0].shape == (0, 4)
    spec = (tf.TensorSpec([None, 4]), tf.TensorSpec([None]), tf.TensorSpec([None], tf.int32))
    fn = tf.function(lambda a, b: combine_detections([a, b]), input_signature=[spec, spec])
    a = ([[0.0, 0, 10, 10]], [0.5], [4])
    b = ([[0.0, 0, 10, 10]], [0.6], [4])
    _, scores, classes = fn(a, b)
    assert classes.numpy().tolist() == [4] and scores.numpy().tolist() == [0.6000000238418579]
    assert fn(none, none)[0].shape == (0, 4)


def test_combine_rejects_bad_classes():
    with pytest.raises(ValueError, match=r"classes must be >= 0; got \[-1\]"):
        combine_detections([([[0.0, 0, 1, 1]], [0.5], [-1])])
    with pytest.raises(ValueError, match=r"classes must be \[0, 3\); got \[3\]"):
        combine_detections([([[0.0, 0, 1, 1]], [0.5], [3])], num_classes=3)
    spec = (tf.TensorSpec([None, 4]), tf.TensorSpec([None]), tf.TensorSpec([None], tf.int32))
    fn = tf.function(lambda a: combine_detections([a], num_classes=3), input_signature=[spec])
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        fn(([[0.0, 0, 1, 1]], [0.5], [5]))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: per_class_nms(tf.zeros([3, 4]), tf.zeros([3])), r"`scores` must be \[num_boxes, num_classes\]"),
        (lambda: per_class_nms(tf.zeros([3, 5]), tf.zeros([3, 2])), r"`boxes` must be \[num_boxes, 4\]"),
        (lambda: per_class_nms(tf.zeros([3, 4]), tf.zeros([2, 2])), "3 rows but `scores` has 2"),
        (lambda: per_class_nms(tf.zeros([3, 3, 4]), tf.zeros([3, 2])), "boxes for 3 classes"),
        (lambda: per_class_nms(tf.zeros([3, 4]), tf.zeros([3, 2]), iou_threshold=1.5), "`iou_threshold`"),
        (lambda: per_class_nms(tf.zeros([3, 4]), tf.zeros([3, 2]), score_threshold=float("nan")), "`score_threshold`"),
        (lambda: per_class_nms(tf.zeros([3, 4]), tf.zeros([3, 2]), max_detections=0), "`max_detections`"),
        (lambda: per_class_nms(tf.zeros([3, 4]), tf.zeros([3, 2]), max_per_class=2.5), "`max_per_class`"),
        (lambda: per_class_nms(tf.zeros([3, 4]), tf.zeros([3, 2], tf.bool)), "`scores` must be real"),
        (lambda: combine_detections((tf.zeros([1, 4]), tf.zeros([1]), tf.zeros([1], tf.int32))), "one per model"),
        (lambda: combine_detections([(tf.zeros([1, 4]), tf.zeros([1]))]), r"`detections\[0\]` must be"),
        (lambda: combine_detections(tf.zeros([1, 4])), "list of"),
        (lambda: combine_detections([(tf.zeros([1, 4]), tf.zeros([1]), tf.zeros([1]))]), "must be integers"),
        (lambda: combine_detections([(tf.zeros([1, 4]), tf.zeros([1, 1]), tf.zeros([1], tf.int32))]), "got shapes"),
        (lambda: box_voting(tf.zeros([1, 4]), [0], tf.zeros([3, 4]), tf.zeros([3])), r"`scores` must be \[num_boxes"),
        (lambda: box_voting(tf.zeros([1, 4]), [0], tf.zeros([3, 4]), tf.zeros([2, 1])), "3 rows but `scores` has 2"),
        (
            lambda: box_voting(tf.zeros([1, 4]), [0], tf.zeros([3, 4]), tf.zeros([3, 1]), iou_threshold=-0.1),
            "`iou_threshold`",
        ),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def reference_voting(kept, classes, candidates, weights, iou_threshold):
    """Each kept box: the weighted mean of its class's candidates overlapping it, in loops."""
    out = np.asarray(kept, np.float64).copy()
    for d, (box, k) in enumerate(zip(kept, classes)):
        total, acc = 0.0, np.zeros(4)
        for r in range(len(candidates)):
            candidate = candidates[r] if candidates.ndim == 2 else candidates[r, k]
            w = max(float(weights[r, k]), 0.0)
            if w > 0 and reference_iou(box, candidate) >= np.float32(iou_threshold):
                total += w
                acc += w * np.asarray(candidate, np.float64)
        if total > 0:
            out[d] = acc / total
    return out


@given(problem=problems(), iou_threshold=st.sampled_from([0.0, 0.5, 0.7, 1.0]), in_graph=st.booleans())
def test_box_voting_matches_reference(problem, iou_threshold, in_graph):
    boxes, scores = problem
    kept, _, classes = per_class_nms(boxes, scores, 0.3, 0.0, 10)
    weights = scores  # some negative: they count as 0
    vote = box_voting
    if in_graph:
        box_shape = [None, None, 4] if boxes.ndim == 3 else [None, 4]
        vote = tf.function(
            lambda *a: box_voting(*a, iou_threshold=iou_threshold),
            input_signature=[
                tf.TensorSpec([None, 4]),
                tf.TensorSpec([None], tf.int32),
                tf.TensorSpec(box_shape),
                tf.TensorSpec([None, None]),
            ],
        )
        got = vote(kept, classes, boxes, weights)
    else:
        got = vote(kept, classes, boxes, weights, iou_threshold)
    expected = reference_voting(kept.numpy(), classes.numpy(), boxes, weights, iou_threshold)
    assert got.shape == kept.shape and got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-4)


def test_box_voting_moves_only_towards_overlapping_windows_of_the_same_class():
    kept = tf.constant([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    candidates = tf.constant(
        [[[0.0, 0, 10, 10], [0, 0, 10, 10]], [[0, 0, 10, 14], [0, 0, 10, 14]], [[0, 6, 10, 16], [0, 6, 10, 16]]]
    )  # IoU 0.25 with the kept box
    weights = tf.constant([[1.0, 1.0], [1.0, 0.0], [5.0, 5.0]])
    got = box_voting(kept, tf.constant([0, 1]), candidates, weights, iou_threshold=0.5).numpy()
    np.testing.assert_allclose(got, [[0, 0, 10, 12], [0, 0, 10, 10]])
    # no candidates, no detections
    assert box_voting(tf.zeros([0, 4]), tf.zeros([0], tf.int32), candidates, weights).shape == (0, 4)
    np.testing.assert_array_equal(box_voting(kept, [0, 1], tf.zeros([0, 2, 4]), tf.zeros([0, 2])), kept)


def test_docstring_examples():
    result = doctest.testmod(nms_module, extraglobs={"tf": tf, "np": np})
    assert result.failed == 0 and result.attempted > 0
