"""keras_spp.detection.nms_ops.per_class_nms (keras.ops) on TensorFlow against the
numpy reference and the TF op path (keras_spp.detection.nms), eagerly, in
tf.function and under XLA: exactly, ties and order included."""

import numpy as np
import pytest
import tensorflow as tf

from keras_spp.detection import nms, nms_ops
from tests.detection.nms_reference import problem, reference_nms, settings


def assert_same(got, expected):
    assert len(got) == 3
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(np.asarray(g), e)


@pytest.mark.parametrize("seed", range(60))
def test_matches_the_reference_and_the_tf_path(seed):
    boxes, scores = problem(seed)
    iou_t, score_t, top, per_class = settings(seed)
    expected = reference_nms(boxes, scores, iou_t, score_t, top, per_class)
    assert_same(nms_ops.per_class_nms(boxes, scores, iou_t, score_t, top, per_class), expected)
    assert_same(nms.per_class_nms(boxes, scores, iou_t, score_t, top, per_class), expected)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("seed", range(0, 60, 7))
def test_compiled_padded(seed, jit_compile):
    boxes, scores = problem(seed)
    iou_t, score_t, top, per_class = settings(seed)
    expected = reference_nms(boxes, scores, iou_t, score_t, top, per_class)

    @tf.function(jit_compile=jit_compile)
    def run(b, s):
        return nms_ops.per_class_nms(b, s, iou_t, score_t, top, per_class, padded=True)

    b, s, c, count = (np.asarray(t) for t in run(boxes, scores))
    assert b.shape == (top, 4) and s.shape == c.shape == (top,) and count == len(expected[1])
    assert_same((b[:count], s[:count], c[:count]), expected)
    assert (s[count:] == -np.inf).all() and (c[count:] == -1).all() and (b[count:] == 0).all()


def test_tf_function_with_unknown_rows_trims():
    spec = [tf.TensorSpec([None, 3, 4]), tf.TensorSpec([None, 3])]
    run = tf.function(lambda b, s: nms_ops.per_class_nms(b, s, 0.5, 0.0, 5), input_signature=spec)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        boxes = rng.uniform(0, 50, (seed * 4, 3, 4)).astype(np.float32)
        boxes[..., 2:] += boxes[..., :2]
        scores = rng.uniform(-0.5, 1, (seed * 4, 3)).astype(np.float32)
        assert_same(run(boxes, scores), reference_nms(boxes, scores, 0.5, 0.0, 5))


def test_the_detector_shape_matches_the_tf_path():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 500, (2000, 20, 4)).astype(np.float32)
    boxes[..., 2:] = boxes[..., :2] + rng.uniform(10, 150, (2000, 20, 2)).astype(np.float32)
    scores = rng.random((2000, 20)).astype(np.float32)
    assert_same(nms_ops.per_class_nms(boxes, scores, 0.3, 0.05, 100), nms.per_class_nms(boxes, scores, 0.3, 0.05, 100))


def test_every_candidate_tied_and_identical():
    boxes = np.tile(np.float32([[0, 0, 10, 10]]), (6, 1))
    scores = np.full((6, 3), 0.5, np.float32)
    b, s, c = nms_ops.per_class_nms(boxes, scores, 0.5, 0.0, 10)
    assert np.asarray(c).tolist() == [0, 1, 2] and np.asarray(s).tolist() == [0.5] * 3
    # Identical zero-area boxes never suppress one another: rows in order per class.
    flat = np.zeros((3, 4), np.float32)
    _, _, c = nms_ops.per_class_nms(flat, np.full((3, 2), 0.5, np.float32), 0.0, 0.0, 4)
    assert np.asarray(c).tolist() == [0, 0, 0, 1]


def test_all_below_the_threshold_and_empty():
    for boxes, scores in (
        (np.zeros((4, 4)), np.full((4, 2), -1.0)),
        (np.zeros((0, 4)), np.zeros((0, 2))),
        (np.zeros((3, 0, 4)), np.zeros((3, 0))),
    ):
        b, s, c = nms_ops.per_class_nms(boxes, scores, 0.5, 0.0, 7)
        assert tuple(b.shape) == (0, 4) and tuple(s.shape) == tuple(c.shape) == (0,)
        b, s, c, count = nms_ops.per_class_nms(boxes, scores, 0.5, 0.0, 7, padded=True)
        assert int(count) == 0 and tuple(b.shape) == (7, 4) and (np.asarray(c) == -1).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"score_threshold": "x"}, "score_threshold"),
        ({"max_detections": 0}, "max_detections"),
        ({"max_per_class": -1}, "max_per_class"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nms_ops.per_class_nms(np.zeros((2, 4)), np.zeros((2, 1)), **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match="scores"):
        nms_ops.per_class_nms(np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="rows"):
        nms_ops.per_class_nms(np.zeros((2, 4)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="classes"):
        nms_ops.per_class_nms(np.zeros((2, 3, 4)), np.zeros((2, 2)))
