"""Anchors, anchor targets, minibatch sampling, the RPN head and its training step,
against slow per-box references."""

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_spp.detection import rpn
from keras_spp.detection.anchors import AnchorConfig, anchor_grid, anchor_grid_np


def reference_anchors(map_height, map_width, sizes, ratios, stride):
    out = []
    for i in range(map_height):
        for j in range(map_width):
            cy, cx = (i + 0.5) * stride, (j + 0.5) * stride
            for size in sizes:
                for ratio in ratios:
                    h, w = size * math.sqrt(ratio), size / math.sqrt(ratio)
                    out.append((cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2))
    return np.asarray(out, np.float64).reshape(-1, 4)


def reference_iou(a, b):
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_labels(anchors, gt, height, width, pos=0.7, neg=0.3):
    """Faster R-CNN's rule one anchor at a time."""
    labels = []
    inside = [a[0] >= 0 and a[1] >= 0 and a[2] <= height and a[3] <= width for a in anchors]
    best_per_gt = [max([reference_iou(a, g) for a, ok in zip(anchors, inside) if ok], default=0.0) for g in gt]
    for a, ok in zip(anchors, inside):
        if not ok:
            labels.append(-1)
            continue
        ious = [reference_iou(a, g) for g in gt]
        best = max(ious, default=0.0)
        is_best = any(iou == b and b > 0 for iou, b in zip(ious, best_per_gt))
        labels.append(1 if best >= pos or is_best else (0 if best < neg else -1))
    return np.asarray(labels)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 6),
    st.integers(0, 6),
    st.lists(st.integers(4, 300), min_size=1, max_size=3),
    st.lists(st.floats(0.2, 5.0), min_size=1, max_size=3),
    st.sampled_from([4.0, 8.0, 16.0, 12.5]),
)
def test_anchor_grid_matches_reference(h, w, sizes, ratios, stride):
    config = AnchorConfig(tuple(sizes), tuple(ratios), stride)
    expected = reference_anchors(h, w, config.sizes, config.aspect_ratios, stride)
    np.testing.assert_allclose(anchor_grid(h, w, config).numpy(), expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(anchor_grid_np(h, w, config), expected, rtol=1e-5, atol=1e-3)


def test_anchor_grid_dynamic_shape_in_a_graph():
    config = AnchorConfig()
    fn = tf.function(
        lambda m: anchor_grid(tf.shape(m)[1], tf.shape(m)[2], config),
        input_signature=[tf.TensorSpec([1, None, None, 2])],
    )
    assert fn(tf.zeros([1, 3, 5, 2])).shape == (3 * 5 * 12, 4)
    assert fn(tf.zeros([1, 0, 5, 2])).shape == (0, 4)


@pytest.mark.parametrize(
    "bad",
    [
        dict(sizes=()),
        dict(sizes=(0,)),
        dict(aspect_ratios=(1, float("nan"))),
        dict(stride=0),
        dict(sizes="32"),
        dict(sizes=(True,)),
    ],
)
def test_anchor_config_refuses_bad_values(bad):
    with pytest.raises(ValueError, match="must"):
        AnchorConfig(**bad)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 4), st.integers(0, 2**31 - 1))
def test_anchor_labels_match_reference(num_gt, seed):
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(40, 120)), int(rng.integers(40, 120))
    anchors = anchor_grid_np(height // 16 + 1, width // 16 + 1, AnchorConfig((16, 32, 48), (0.5, 1, 2), 16))
    y1 = rng.uniform(0, height - 10, num_gt)
    x1 = rng.uniform(0, width - 10, num_gt)
    gt = np.stack(
        [
            y1,
            x1,
            np.minimum(y1 + rng.uniform(8, 60, num_gt), height),
            np.minimum(x1 + rng.uniform(8, 60, num_gt), width),
        ],
        1,
    ).astype(np.float32)
    labels, deltas = rpn.assign_anchor_targets(anchors, gt, height, width)
    np.testing.assert_array_equal(
        labels, reference_labels(anchors.astype(np.float64), gt.astype(np.float64), height, width)
    )
    assert np.all(deltas[labels != rpn.POSITIVE] == 0)
    if num_gt:
        assert (labels == rpn.POSITIVE).sum() >= 1  # every object has its best anchor


def test_positive_deltas_decode_to_their_object():
    from keras_spp.detection.boxes import decode_boxes

    anchors = anchor_grid_np(6, 6, AnchorConfig((32, 64), (1, 2), 16))
    gt = np.array([[10, 12, 60, 40], [40, 50, 90, 95]], np.float32)
    labels, deltas = rpn.assign_anchor_targets(anchors, gt, 96, 96)
    pos = labels == rpn.POSITIVE
    decoded = decode_boxes(anchors[pos], deltas[pos])
    ious = np.array([[reference_iou(d, g) for g in gt] for d in decoded])
    assert np.all(ious.max(axis=1) > 0.999)


def test_no_objects_gives_only_negatives_inside():
    anchors = np.array([[0, 0, 10, 10], [-5, 0, 10, 10], [0, 0, 30, 30]], np.float32)
    labels, deltas = rpn.assign_anchor_targets(anchors, np.zeros((0, 4)), 20, 20)
    assert labels.tolist() == [0, -1, -1]
    assert not deltas.any()


def test_image_smaller_than_every_anchor_has_no_training_anchor():
    anchors = anchor_grid_np(1, 1, AnchorConfig((64,), (1,), 16))
    labels, _ = rpn.assign_anchor_targets(anchors, [[2, 2, 10, 10]], 16, 16)
    assert (labels == rpn.IGNORE).all()
    weights = rpn.sample_anchors(labels, [0, 0])
    assert float(tf.reduce_sum(weights)) == 0.0


@pytest.mark.parametrize("positives,negatives", [(0, 0), (3, 500), (400, 500), (200, 10), (0, 1000)])
def test_sample_anchors_counts(positives, negatives):
    labels = np.array([1] * positives + [0] * negatives + [-1] * 50, np.int8)
    np.random.default_rng(0).shuffle(labels)
    weights = rpn.sample_anchors(labels, [1, 2]).numpy()
    chosen_pos = int(weights[labels == 1].sum())
    chosen_neg = int(weights[labels == 0].sum())
    assert weights[labels == -1].sum() == 0
    assert chosen_pos == min(positives, 128)
    assert chosen_neg == min(negatives, 256 - chosen_pos)
    again = rpn.sample_anchors(labels, [1, 2]).numpy()
    np.testing.assert_array_equal(weights, again)
    if negatives > 256:
        assert not np.array_equal(weights, rpn.sample_anchors(labels, [1, 3]).numpy())


def test_rpn_head_layout_matches_anchor_order():
    """Output k of cell (i, j) is anchor (i * W + j) * A + k: a head whose objectness
    conv copies one input channel per anchor shows it."""
    head = rpn.rpn_head(3, 3, hidden=3)
    head.get_layer("rpn_conv").set_weights(
        [
            np.eye(3)[None, None].repeat(3, 0).repeat(3, 1)
            * (np.arange(3)[:, None, None, None] == 1)
            * (np.arange(3)[None, :, None, None] == 1),
            np.zeros(3),
        ]
    )
    head.get_layer("rpn_objectness").set_weights([np.eye(3)[None, None], np.zeros(3)])
    conv5 = np.zeros((1, 2, 4, 3), np.float32)
    i, j, k = 1, 2, 2
    conv5[0, i, j, k] = 5.0
    out = head(conv5)["objectness"].numpy()[0]
    assert int(np.argmax(out)) == (i * 4 + j) * 3 + k


def test_smooth_l1_matches_formula():
    x = np.array([-1.0, -0.05, 0.0, 0.1, 2.0], np.float32)
    beta = 1 / 9
    expected = [0.5 * v * v / beta if abs(v) < beta else abs(v) - 0.5 * beta for v in x]
    np.testing.assert_allclose(rpn.smooth_l1(x).numpy(), expected, rtol=1e-6)


def test_trainer_learns_a_synthetic_task():
    """Objects are where channel 0 of conv5 is on: after a short fit the head scores
    the positive anchors above the negatives, and the loss fell."""
    rng = np.random.default_rng(0)
    config = AnchorConfig((32,), (1.0,), 16)
    records = []
    for _ in range(12):
        conv5 = rng.normal(0, 0.1, (6, 6, 4)).astype(np.float32)
        i, j = rng.integers(1, 5, 2)
        conv5[i, j, 0] = 3.0
        gt = [[(i + 0.5) * 16 - 16, (j + 0.5) * 16 - 16, (i + 0.5) * 16 + 16, (j + 0.5) * 16 + 16]]
        labels, deltas = rpn.assign_anchor_targets(anchor_grid_np(6, 6, config), gt, 96, 96)
        records.append((conv5, labels, deltas))
    head = rpn.rpn_head(4, 1, hidden=16)
    trainer = rpn.RpnTrainer(head)
    import keras

    trainer.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    history = trainer.fit(rpn.training_dataset(records), epochs=6, steps_per_epoch=len(records), verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    conv5, labels, _ = records[0]
    scores = head(conv5[None])["objectness"].numpy()[0]
    assert scores[labels == 1].min() > np.percentile(scores[labels == 0], 95)


def test_the_head_computes_its_conv_in_the_given_policy_and_outputs_float32():
    head = rpn.rpn_head(8, 3, hidden=16, dtype="mixed_bfloat16")
    assert head.get_layer("rpn_conv").compute_dtype == "bfloat16"
    assert head.get_layer("rpn_conv").variable_dtype == "float32"
    out = head(np.random.default_rng(0).normal(size=(1, 4, 5, 8)).astype("float32"))
    assert out["objectness"].dtype == "float32" and out["deltas"].dtype == "float32"
    # The same weights in float32 give the same outputs up to bfloat16's rounding.
    full = rpn.rpn_head(8, 3, hidden=16)
    full.set_weights(head.get_weights())
    x = np.random.default_rng(1).normal(size=(1, 4, 5, 8)).astype("float32")
    np.testing.assert_allclose(head(x)["deltas"].numpy(), full(x)["deltas"].numpy(), atol=2e-3)
