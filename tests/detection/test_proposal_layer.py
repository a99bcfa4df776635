"""generate_proposals against a loop reference: decode, clip, tiny boxes, top-k, greedy
NMS, top-N; eager, tf.function, XLA and a SavedModel with dynamic sizes."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_spp.detection.proposal_layer import RpnProposals, generate_proposals


def reference_iou(a, b):
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_proposals(logits, deltas, anchors, height, width, pre, post, nms_iou, min_size):
    clamp = math.log(1000 / 16)
    candidates = []
    for logit, d, a in zip(logits, deltas, anchors):
        if not (np.isfinite(logit) and np.all(np.isfinite(d))):
            continue
        h, w = a[2] - a[0], a[3] - a[1]
        cy, cx = a[0] + h / 2 + d[0] * h, a[1] + w / 2 + d[1] * w
        nh, nw = math.exp(min(d[2], clamp)) * h, math.exp(min(d[3], clamp)) * w
        box = [
            min(max(v, 0.0), limit)
            for v, limit in zip((cy - nh / 2, cx - nw / 2, cy + nh / 2, cx + nw / 2), (height, width, height, width))
        ]
        if box[2] - box[0] >= min_size and box[3] - box[1] >= min_size and box[2] > box[0] and box[3] > box[1]:
            candidates.append((float(logit), box))
    candidates.sort(key=lambda c: -c[0])
    candidates = candidates[:pre]
    kept = []
    for score, box in candidates:
        if len(kept) == post:
            break
        if all(reference_iou(box, k) <= nms_iou for _, k in kept):
            kept.append((score, box))
    boxes = np.array([b for _, b in kept], np.float64).reshape(-1, 4)
    scores = 1 / (1 + np.exp(-np.array([s for s, _ in kept], np.float64)))
    return boxes, scores


def random_case(rng, n):
    centres = rng.uniform(0, 100, (n, 2))
    sizes = rng.uniform(2, 60, (n, 2))
    anchors = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32)
    # Distinct logits: the order of equal scores is not a property worth fixing.
    logits = rng.permutation(n).astype(np.float32) / 7 - n / 14
    deltas = rng.normal(0, 0.3, (n, 4)).astype(np.float32)
    return logits, deltas, anchors


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 80),
    st.integers(1, 50),
    st.integers(1, 30),
    st.sampled_from([0.3, 0.5, 0.7, 1.0]),
    st.sampled_from([0.0, 4.0, 30.0]),
    st.integers(0, 2**31 - 1),
)
def test_matches_reference(n, pre, post, nms_iou, min_size, seed):
    logits, deltas, anchors = random_case(np.random.default_rng(seed), n)
    boxes, scores = generate_proposals(logits, deltas, anchors, 90, 110, pre, post, nms_iou, min_size)
    ref_boxes, ref_scores = reference_proposals(logits, deltas, anchors, 90, 110, pre, post, nms_iou, min_size)
    np.testing.assert_allclose(boxes.numpy(), ref_boxes, atol=1e-3)
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-5)


def test_non_finite_outputs_never_reach_nms():
    logits, deltas, anchors = random_case(np.random.default_rng(1), 40)
    logits[[0, 5]] = [np.nan, np.inf]
    deltas[[1, 2, 3], [0, 2, 3]] = [np.nan, np.inf, -np.inf]
    boxes, scores = generate_proposals(logits, deltas, anchors, 90, 110, 100, 100, 0.7, 0.0)
    assert np.isfinite(boxes.numpy()).all() and np.isfinite(scores.numpy()).all()
    ref_boxes, _ = reference_proposals(logits, deltas, anchors, 90, 110, 100, 100, 0.7, 0.0)
    np.testing.assert_allclose(boxes.numpy(), ref_boxes, atol=1e-3)
    everything_nan = generate_proposals(np.full(4, np.nan, np.float32), deltas[:4], anchors[:4], 90, 110)
    assert everything_nan[0].shape == (0, 4)


def test_every_box_below_min_size_gives_no_proposals():
    logits, deltas, anchors = random_case(np.random.default_rng(2), 30)
    boxes, scores = generate_proposals(logits, np.zeros_like(deltas), anchors, 90, 110, min_size=500)
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_empty_input():
    boxes, scores = generate_proposals(tf.zeros([0]), tf.zeros([0, 4]), tf.zeros([0, 4]), 10, 10)
    assert boxes.shape == (0, 4) and scores.shape == (0,)


@pytest.mark.parametrize(
    "bad", [dict(pre_nms_top_k=0), dict(post_nms_top_n=0), dict(nms_iou=0.0), dict(nms_iou=1.5), dict(min_size=-1.0)]
)
def test_bad_settings(bad):
    with pytest.raises(ValueError, match="must"):
        RpnProposals(**bad)


def test_xla_and_graph_agree_with_eager_on_several_sizes():
    rng = np.random.default_rng(3)
    graph = tf.function(
        lambda l, d, a, h, w: generate_proposals(l, d, a, h, w, 50, 20),
        input_signature=[
            tf.TensorSpec([None]),
            tf.TensorSpec([None, 4]),
            tf.TensorSpec([None, 4]),
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.int32),
        ],
    )
    xla = tf.function(graph.python_function, input_signature=graph.input_signature, jit_compile=True)
    for n in (0, 7, 40, 120):
        logits, deltas, anchors = random_case(rng, n)
        expected = generate_proposals(logits, deltas, anchors, 90, 110, 50, 20)
        for fn in (graph, xla):
            boxes, scores = fn(logits, deltas, anchors, 90, 110)
            np.testing.assert_allclose(boxes.numpy(), expected[0].numpy(), atol=1e-3)
            np.testing.assert_allclose(scores.numpy(), expected[1].numpy(), atol=1e-6)


def test_layer_config_round_trips_and_serves_from_a_saved_model(tmp_path):
    layer = RpnProposals(pre_nms_top_k=30, post_nms_top_n=5, nms_iou=0.6, min_size=2.0)
    clone = RpnProposals.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()

    module = tf.Module()
    module.fn = tf.function(
        lambda l, d, a, s: layer(l, d, a, s),
        input_signature=[
            tf.TensorSpec([None]),
            tf.TensorSpec([None, 4]),
            tf.TensorSpec([None, 4]),
            tf.TensorSpec([2], tf.int32),
        ],
    )
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    logits, deltas, anchors = random_case(np.random.default_rng(4), 60)
    got = loaded.fn(logits, deltas, anchors, tf.constant([90, 110]))
    expected = reference_proposals(logits, deltas, anchors, 90, 110, 30, 5, 0.6, 2.0)
    np.testing.assert_allclose(got[0].numpy(), expected[0], atol=1e-3)
    assert keras.saving.get_registered_object("keras_spp>RpnProposals") is RpnProposals


def test_nms_takes_the_greedy_kernel_outside_xla_and_the_tiled_one_inside():
    from keras_spp.detection import proposal_layer

    seen = []

    def probe():
        seen.append(proposal_layer._in_xla_context())
        return tf.constant(0)

    probe()
    tf.function(probe)()
    tf.function(probe, jit_compile=True)()
    assert seen == [False, False, True]
