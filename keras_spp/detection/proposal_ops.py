"""The RPN's proposals in ``keras.ops``: ``LearnedProposals.propose`` for the backends
without TensorFlow graphs (JAX, PyTorch; eagerly and under ``jax.jit``), where the
image size is known as Python ints.

The same steps as ``keras_spp.detection.proposal_layer.generate_proposals`` and
``LearnedProposals.propose_from_maps`` (which TensorFlow keeps: its NMS op is
faster there, ``benchmarks/results/nms-backends-cpu-2core.json``): decode, clip,
drop non-finite, tiny and empty boxes, the ``pre_nms_top_k`` best, greedy NMS
(``nms_ops.per_class_nms`` with one class: the same greedy order, ties to the lower
row), the ``post_nms_top_n`` best; several scales merged by one more NMS. Proposals
come padded to a fixed row count with their ``count``, so that they compile.

This module imports no TensorFlow.
"""

import math

import numpy as np
from keras import ops

from keras_spp.detection import scales as scales_lib
from keras_spp.detection.anchors import anchor_grid
from keras_spp.detection.boxes import NUMPY_OPS, decode_boxes
from keras_spp.detection.detector_ops import is_concrete, resized
from keras_spp.detection.nms_ops import per_class_nms

# Logits of the padding and of dropped anchors (proposal_layer's): never proposals.
_DROPPED = -1e30


def propose(proposer, images):
    """``(boxes [K, 4], valid, {scale index: conv5 [1, h, w, C]})`` of the
    ``LearnedProposals`` ``proposer`` for ``images`` float ``[1, H, W, 3]``: proposals
    as ``[y1, x1, y2, x2]`` pixels of the image, best first. Eagerly ``K`` is their
    count and ``valid`` is ``None``; compiled, ``K`` is ``post_nms_top_n`` and
    ``valid`` (``[K]`` bool) marks the real ones, zero boxes after them."""
    roi, settings = proposer.roi, proposer.settings
    images = ops.cast(images, roi.compute_dtype)
    height, width = int(images.shape[1]), int(images.shape[2])
    factors = scales_lib.resize_factors(height, width, roi.scales, roi.max_side, "float32", NUMPY_OPS)
    maps, boxes, scores, counts = {}, [], [], []
    for i in proposer.scale_indices:
        maps[i] = roi.backbone(resized(images, height, width, factors[i]), training=False)
        size = scales_lib.resized_size(height, width, factors[i], "float32", NUMPY_OPS)
        found, score, count = proposals_of_map(proposer, maps[i], int(size[0]), int(size[1]), factors[i])
        boxes.append(found / float(factors[i]))
        # -inf marks the padding, which the merge's `score > -inf` drops (a real
        # sigmoid score may underflow to 0).
        scores.append(ops.where(ops.arange(ops.shape(score)[0], dtype="int32") < count, score, -math.inf))
        counts.append(count)
    if len(boxes) == 1:
        boxes, count = boxes[0], counts[0]
    else:
        merged = per_class_nms(
            ops.concatenate(boxes, 0),
            ops.concatenate(scores, 0)[:, None],
            settings.nms_iou,
            -math.inf,
            settings.post_nms_top_n,
            padded=True,
        )
        boxes, count = merged[0], merged[3]
    if is_concrete(boxes):
        return boxes[: int(ops.convert_to_numpy(count))], None, maps
    return boxes, ops.arange(ops.shape(boxes)[0], dtype="int32") < count, maps


def proposals_of_map(proposer, conv5, height, width, factor):
    """``(boxes [post_nms_top_n, 4], scores, count)`` of one scale's conv5, in pixels
    of the resized ``height x width`` image; zero boxes and scores past ``count``."""
    settings = proposer.settings
    out = proposer.head(conv5, training=False)
    anchors = anchor_grid(int(conv5.shape[1]), int(conv5.shape[2]), proposer.anchors)
    return generate_proposals(
        out["objectness"][0],
        out["deltas"][0],
        anchors,
        height,
        width,
        settings.pre_nms_top_k,
        settings.post_nms_top_n,
        settings.nms_iou,
        np.float32(settings.min_size) * np.float32(factor),
    )


def generate_proposals(objectness, deltas, anchors, height, width, pre_nms_top_k, post_nms_top_n, nms_iou, min_size):
    """``proposal_layer.generate_proposals`` in ``keras.ops``, padded:
    ``(boxes [post_nms_top_n, 4], scores [post_nms_top_n], count)``, best first,
    scores sigmoid probabilities; past ``count`` zero boxes and scores."""
    logits = ops.reshape(ops.cast(objectness, "float32"), [-1])
    deltas = ops.reshape(ops.cast(deltas, "float32"), [-1, 4])
    anchors = ops.reshape(ops.cast(anchors, "float32"), [-1, 4])
    finite = ops.isfinite(logits) & ops.all(ops.isfinite(deltas), axis=1)
    boxes = decode_boxes(anchors, ops.where(finite[:, None], deltas, 0.0))
    limit = ops.cast(ops.convert_to_tensor([height, width, height, width]), "float32")
    boxes = ops.clip(boxes, 0.0, limit)
    big = (boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
    # A box of zero area is no proposal whatever min_size says.
    real = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    scores = ops.where(finite & big & real, logits, _DROPPED)
    pad = max(int(pre_nms_top_k) - int(scores.shape[0]), 0)
    scores = ops.pad(scores, [[0, pad]], constant_values=_DROPPED)
    boxes = ops.pad(boxes, [[0, pad], [0, 0]])
    top_scores, top = ops.top_k(scores, k=int(pre_nms_top_k))
    top_boxes = ops.take(boxes, top, axis=0)
    kept_boxes, kept_scores, _, count = per_class_nms(
        top_boxes, top_scores[:, None], float(nms_iou), _DROPPED / 2, int(post_nms_top_n), padded=True
    )
    # Padding rows score -inf: sigmoid 0.
    kept_scores = ops.where(kept_scores > -math.inf, ops.sigmoid(kept_scores), 0.0)
    return kept_boxes, kept_scores, count
