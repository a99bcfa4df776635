"""The RPN's proposals in ``keras.ops``, written once for every backend: decode,
clip, drop non-finite, tiny and empty boxes, the ``pre_nms_top_k`` best, greedy NMS,
the ``post_nms_top_n`` best (``generate_proposals``); one scale's conv5 through the
RPN head to proposals (``proposals_of_map``); several scales merged by one more NMS
(``merged``).

The NMS is the one backend-specific step, passed in as ``nms``: ``keras_nms``
(``nms_ops.per_class_nms`` with one class, padded to a fixed row count so that it
compiles) by default, and TensorFlow's own op on TensorFlow
(``keras_spp.detection.proposal_layer``, ``LearnedProposals``): faster there,
``benchmarks/results/nms-backends-cpu-2core.json``, and it takes dynamic shapes.

``propose`` is ``LearnedProposals.propose`` for the backends without TensorFlow
graphs (JAX, PyTorch; eagerly and under ``jax.jit``), where the image size is known
as Python ints. This module imports no TensorFlow.
"""

import math

from keras import ops

from keras_spp.detection import scales as scales_lib
from keras_spp.detection.anchors import anchor_grid
from keras_spp.detection.boxes import NUMPY_OPS, decode_boxes
from keras_spp.detection.detector_ops import is_concrete, resized
from keras_spp.detection.nms_ops import per_class_nms
from keras_spp.validation import is_integer, is_number

# Logits of the padding and of dropped anchors (proposal_layer's): never proposals.
_DROPPED = -1e30


def propose(proposer, images):
    """``(boxes [K, 4], valid, {scale index: conv5 [1, h, w, C]})`` of the
    ``LearnedProposals`` ``proposer`` for ``images`` float ``[1, H, W, 3]``: proposals
    as ``[y1, x1, y2, x2]`` pixels of the image, best first. Eagerly ``K`` is their
    count and ``valid`` is ``None``; compiled, ``K`` is ``post_nms_top_n`` and
    ``valid`` (``[K]`` bool) marks the real ones, zero boxes after them."""
    roi = proposer.roi
    images = ops.cast(images, roi.compute_dtype)
    height, width = int(images.shape[1]), int(images.shape[2])
    factors = scales_lib.resize_factors(height, width, roi.scales, roi.max_side, "float32", NUMPY_OPS)
    maps, found = {}, []
    for i in proposer.scale_indices:
        maps[i] = roi.backbone(resized(images, height, width, factors[i]), training=False)
        size = scales_lib.resized_size(height, width, factors[i], "float32", NUMPY_OPS)
        found.append(proposals_of_map(proposer, maps[i], int(size[0]), int(size[1]), factors[i]))
    boxes, _, count = merged(found, proposer.settings)
    if is_concrete(boxes):
        return boxes[: int(ops.convert_to_numpy(count))], None, maps
    return boxes, ops.arange(ops.shape(boxes)[0], dtype="int32") < count, maps


def merged(found, settings, nms=None):
    """One scale's ``proposals_of_map`` as they are, or several scales' merged by one
    more NMS at ``settings.nms_iou``, cut to ``settings.post_nms_top_n``: ``(boxes,
    scores, count)`` in pixels of the original image, padding past ``count``."""
    if len(found) == 1:
        return found[0]
    boxes = ops.concatenate([b for b, _, _ in found], 0)
    # -inf marks each scale's padding, which the merge's `score > -inf` drops (a real
    # sigmoid score may underflow to 0).
    scores = ops.concatenate(
        [ops.where(ops.arange(ops.shape(s)[0], dtype="int32") < count, s, -math.inf) for _, s, count in found], 0
    )
    return (nms or keras_nms)(boxes, scores, settings.nms_iou, -math.inf, settings.post_nms_top_n)


def proposals_of_map(proposer, conv5, height, width, factor, settings=None, nms=None):
    """``(boxes, scores, count)`` of one scale's conv5 (``generate_proposals``), in
    pixels of the original image; ``height x width`` is the resized image's size
    and ``factor`` its scale factor (numbers or scalar tensors)."""
    settings = settings or proposer.settings
    out = proposer.head(conv5, training=False)
    shape = ops.shape(conv5)
    boxes, scores, count = generate_proposals(
        out["objectness"][0],
        out["deltas"][0],
        anchor_grid(shape[1], shape[2], proposer.anchors),
        height,
        width,
        settings.pre_nms_top_k,
        settings.post_nms_top_n,
        settings.nms_iou,
        ops.cast(settings.min_size, "float32") * ops.cast(factor, "float32"),
        nms,
    )
    return boxes / ops.cast(factor, "float32"), scores, count


def generate_proposals(
    objectness, deltas, anchors, height, width, pre_nms_top_k, post_nms_top_n, nms_iou, min_size, nms=None
):
    """From an RPN's outputs to proposals: decode, clip, drop non-finite, tiny and
    empty boxes, the ``pre_nms_top_k`` best, greedy NMS, the ``post_nms_top_n`` best
    (``keras_spp.detection.proposal_layer.generate_proposals`` has the arguments).

    Returns ``(boxes [M, 4], scores [M], count)``, best first, scores sigmoid
    probabilities; rows past ``count`` are padding (zero). ``nms(boxes, scores,
    iou_threshold, score_threshold, max_output)`` is the backend's greedy NMS and
    returns ``(boxes, scores, count)`` with zero boxes and ``-inf`` scores past
    ``count`` (sigmoid 0): ``keras_nms`` (``M = post_nms_top_n``) by default,
    TensorFlow's op in ``proposal_layer`` (``M = count``). The anchor count may be
    dynamic (TensorFlow graphs)."""
    pre_nms_top_k, post_nms_top_n, nms_iou = check_settings(pre_nms_top_k, post_nms_top_n, nms_iou, min_size)
    logits = ops.reshape(ops.cast(objectness, "float32"), [-1])
    deltas = ops.reshape(ops.cast(deltas, "float32"), [-1, 4])
    anchors = ops.reshape(ops.cast(anchors, "float32"), [-1, 4])
    finite = ops.isfinite(logits) & ops.all(ops.isfinite(deltas), axis=1)
    boxes = decode_boxes(anchors, ops.where(finite[:, None], deltas, 0.0))
    limit = ops.cast(ops.stack([height, width, height, width]), "float32")
    boxes = ops.clip(boxes, 0.0, limit)
    min_size = ops.cast(min_size, "float32")
    big = (boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
    # A box of zero area is no proposal whatever min_size says.
    real = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    scores = ops.where(finite & big & real, logits, _DROPPED)
    # Padded to pre_nms_top_k rows that NMS never keeps: a fixed row count, which
    # XLA's NMS needs (it fails on zero boxes) and jax.jit compiles once for.
    pad = _at_least_zero(pre_nms_top_k - ops.shape(scores)[0])
    scores = ops.pad(scores, [[0, pad]], constant_values=_DROPPED)
    boxes = ops.pad(boxes, [[0, pad], [0, 0]])
    top_scores, top = ops.top_k(scores, k=pre_nms_top_k)
    kept_boxes, kept_scores, count = (nms or keras_nms)(
        ops.take(boxes, top, axis=0), top_scores, nms_iou, _DROPPED / 2, post_nms_top_n
    )
    return kept_boxes, ops.sigmoid(kept_scores), count


def check_settings(pre_nms_top_k, post_nms_top_n, nms_iou, min_size):
    """``(pre_nms_top_k, post_nms_top_n, nms_iou)`` as int, int, float; ValueError
    naming the setting and what it accepts otherwise (``min_size``: a finite number
    >= 0, or a backend tensor, whose value is not checked)."""
    if not (is_integer(pre_nms_top_k) and is_integer(post_nms_top_n)) or min(pre_nms_top_k, post_nms_top_n) < 1:
        raise ValueError(
            f"`pre_nms_top_k` and `post_nms_top_n` must be integers >= 1; got {pre_nms_top_k!r}, {post_nms_top_n!r}."
        )
    if not (is_number(nms_iou) and 0.0 < float(nms_iou) <= 1.0):
        raise ValueError(f"`nms_iou` must be in (0, 1]; got {nms_iou!r}.")
    if not ops.is_tensor(min_size) and not (is_number(min_size) and float(min_size) >= 0.0):
        raise ValueError(f"`min_size` must be a number of pixels >= 0 (or a scalar tensor); got {min_size!r}.")
    return int(pre_nms_top_k), int(post_nms_top_n), float(nms_iou)


def keras_nms(boxes, scores, iou_threshold, score_threshold, max_output):
    """Greedy NMS of one class in ``keras.ops`` (``nms_ops.per_class_nms``: ties to the
    lower row), padded: ``(boxes [max_output, 4], scores, count)``, zero boxes and
    ``-inf`` scores past ``count``."""
    kept_boxes, kept_scores, _, count = per_class_nms(
        boxes, scores[:, None], iou_threshold, score_threshold, max_output, padded=True
    )
    return kept_boxes, kept_scores, count


def _at_least_zero(value):
    """``max(value, 0)``: a Python int where ``value`` is one (JAX, PyTorch, XLA)."""
    return max(value, 0) if isinstance(value, int) else ops.maximum(value, 0)
