"""Box geometry and the R-CNN box regression parametrisation (numpy, plus two TF ops).

Boxes are ``[y1, x1, y2, x2]`` in continuous pixel coordinates (see
``keras_spp.data.detection_examples``): height ``y2 - y1``, width ``x2 - x1``, no
``+ 1``. A box with ``y2 <= y1`` or ``x2 <= x1`` is degenerate: its area is 0 and its
IoU with every box is 0. The numpy functions take anything ``np.asarray`` accepts
and return float32 (indices as ``np.intp``); ``N = 0`` is valid everywhere.
"""

import math

import numpy as np
import tensorflow as tf

from keras_spp.validation import is_number

# detectron2's clamp: exp(log(1000 / 16)) = 62.5 is a larger scale change than any
# real regression target, and it keeps exp() finite for wild deltas.
DELTA_CLAMP = math.log(1000.0 / 16)


def box_area(boxes):
    """Area of each box, 0 for degenerate ones.

    >>> box_area([[0, 0, 2, 3], [5, 5, 4, 9]]).tolist()
    [6.0, 0.0]
    """
    boxes = as_boxes(boxes)
    return _area(boxes.astype(np.float64)).astype(np.float32)


def iou_matrix(a, b):
    """Intersection over union of every box in ``a`` [N, 4] with every box in ``b``
    [M, 4], as float32 [N, M]. Computed in float64; degenerate boxes give 0, never NaN.

    >>> iou_matrix([[0, 0, 2, 2]], [[1, 0, 3, 2], [0, 0, 2, 2], [3, 3, 3, 5]]).tolist()
    [[0.3333333432674408, 1.0, 0.0]]
    """
    return pairwise_iou(as_boxes(a, "a"), as_boxes(b, "b")).astype(np.float32)


def pairwise_iou(a, b):
    """``iou_matrix`` on validated ``[N, 4]`` arrays, in float64 (for evaluation, whose
    ``>=`` threshold test should see the exact ratio)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    height = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    width = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(height, 0.0) * np.maximum(width, 0.0)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    # union == 0 only when both boxes are degenerate (then inter == 0 too).
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def clip_boxes(boxes, height, width):
    """Clips ``y`` to ``[0, height]`` and ``x`` to ``[0, width]`` (the image's extent).

    >>> clip_boxes([[-5, 10, 50, 120]], height=40, width=100).tolist()
    [[0.0, 10.0, 40.0, 100.0]]
    """
    boxes = as_boxes(boxes)
    height = _positive(height, "height")
    width = _positive(width, "width")
    upper = np.array([height, width, height, width], np.float32)
    return np.clip(boxes, 0.0, upper).astype(np.float32)


def remove_small_boxes(boxes, min_size):
    """Indices of the boxes whose height and width are both ``>= min_size``.

    >>> remove_small_boxes([[0, 0, 20, 20], [0, 0, 20, 5], [0, 0, 5, 20]], 16).tolist()
    [0]
    """
    boxes = as_boxes(boxes)
    if not is_number(min_size) or not min_size >= 0:
        raise ValueError(f"`min_size` must be a number >= 0 (pixels); got {min_size!r}.")
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    return np.flatnonzero((height >= min_size) & (width >= min_size))


def unique_boxes(boxes):
    """Indices of the first occurrence of each distinct box, in their original order
    (exact float equality, e.g. for proposals that repeat after rounding).

    >>> unique_boxes([[0, 0, 5, 5], [1, 1, 4, 4], [0, 0, 5, 5]]).tolist()
    [0, 1]
    """
    # + 0.0 turns -0.0 into 0.0, which np.unique would otherwise tell apart.
    boxes = as_boxes(boxes) + np.float32(0.0)
    _, first = np.unique(boxes, axis=0, return_index=True)
    return np.sort(first)


def encode_boxes(proposals, targets, weights=(1.0, 1.0, 1.0, 1.0)):
    """R-CNN regression targets of ``targets`` relative to ``proposals``, both [N, 4].

    With centres ``(cy, cx)`` and sizes ``h = y2 - y1``, ``w = x2 - x1``, the deltas
    ``[N, 4]`` are ``(dy, dx, dh, dw) = weights * ((ty - py) / ph, (tx - px) / pw,
    log(th / ph), log(tw / pw))``. Every proposal and target needs a positive height
    and width (R-CNN only regresses proposals that overlap a box well); others raise
    ValueError. Computed in float64, returned as float32.

    >>> print(encode_boxes([[0, 0, 10, 20]], [[5, 0, 15, 40]]))
    [[0.5       0.5       0.        0.6931472]]
    """
    proposals = as_boxes(proposals, "proposals").astype(np.float64)
    targets = as_boxes(targets, "targets").astype(np.float64)
    if len(proposals) != len(targets):
        raise ValueError(
            f"`proposals` has {len(proposals)} boxes and `targets` {len(targets)}; "
            "encode_boxes pairs them row by row, so they must match."
        )
    weights = _weights(weights)
    py, px, ph, pw = _centre_size(proposals, "proposals")
    ty, tx, th, tw = _centre_size(targets, "targets")
    deltas = np.stack([(ty - py) / ph, (tx - px) / pw, np.log(th / ph), np.log(tw / pw)], axis=1)
    return (deltas * weights).astype(np.float32)


def decode_boxes(proposals, deltas, weights=(1.0, 1.0, 1.0, 1.0)):
    """Applies regression ``deltas`` to ``proposals`` [N, 4]; inverse of ``encode_boxes``.

    ``deltas`` is ``[N, 4]`` (gives ``[N, 4]``), ``[N, 4 * K]`` for ``K`` classes, the
    class-specific regressors' layout (gives ``[N, K, 4]``), or ``[N, K, 4]``. After
    dividing by ``weights``, ``dh`` and ``dw`` are clamped at ``log(1000 / 16)`` so
    that wild deltas give large but finite boxes. Degenerate proposals decode to
    degenerate boxes, never NaN. Computed in float64, returned as float32.

    >>> decode_boxes([[0, 0, 10, 20]], [[0.5, 0.25, 0.0, 0.0]]).tolist()
    [[5.0, 5.0, 15.0, 25.0]]
    >>> decode_boxes([[0, 0, 10, 20]], [[0, 0, 0, 0, 0.1, 0, 0, 0]]).shape
    (1, 2, 4)
    """
    proposals = as_boxes(proposals, "proposals").astype(np.float64)
    deltas = np.asarray(deltas)
    if not (np.issubdtype(deltas.dtype, np.number) and not np.iscomplexobj(deltas)):
        raise ValueError(f"`deltas` must hold real numbers; got dtype {deltas.dtype}.")
    deltas = deltas.astype(np.float64)
    weights = _weights(weights)
    squeeze, classes = _check_deltas(deltas.shape, len(proposals))
    deltas = deltas.reshape(len(proposals), classes, 4) / weights

    h = (proposals[:, 2] - proposals[:, 0])[:, None]
    w = (proposals[:, 3] - proposals[:, 1])[:, None]
    cy = proposals[:, 0, None] + 0.5 * h
    cx = proposals[:, 1, None] + 0.5 * w
    new_cy = cy + deltas[..., 0] * h
    new_cx = cx + deltas[..., 1] * w
    new_h = np.exp(np.minimum(deltas[..., 2], DELTA_CLAMP)) * h
    new_w = np.exp(np.minimum(deltas[..., 3], DELTA_CLAMP)) * w
    out = np.stack(
        [new_cy - 0.5 * new_h, new_cx - 0.5 * new_w, new_cy + 0.5 * new_h, new_cx + 0.5 * new_w],
        axis=-1,
    ).astype(np.float32)
    return out[:, 0] if squeeze else out


def decode_boxes_tf(proposals, deltas, weights=(1.0, 1.0, 1.0, 1.0)):
    """``decode_boxes`` in TensorFlow, for graphs and SavedModels: ``N`` may be dynamic.

    Same shapes and clamp as ``decode_boxes``; the last dimension of ``deltas`` must
    be static. Computes in the dtype of ``deltas`` (float32 by default) and returns it.

    >>> decode_boxes_tf(tf.constant([[0.0, 0, 10, 20]]), tf.zeros([1, 12])).shape
    TensorShape([1, 3, 4])
    """
    deltas = tf.convert_to_tensor(deltas)
    if not deltas.dtype.is_floating:
        deltas = tf.cast(deltas, tf.float32)
    proposals = tf.cast(tf.convert_to_tensor(proposals), deltas.dtype)
    if proposals.shape.rank != 2 or proposals.shape[1] not in (None, 4):
        raise ValueError(f"`proposals` must be [num_boxes, 4] as [y1, x1, y2, x2]; got shape {proposals.shape}.")
    weights = tf.constant(_weights(weights), deltas.dtype)
    squeeze, classes = _check_deltas(tuple(deltas.shape), proposals.shape[0])
    if classes is None:
        classes = tf.shape(deltas)[1]
    # An explicit class count: reshape cannot infer a -1 when N = 0.
    deltas = tf.reshape(deltas, tf.stack([tf.shape(proposals)[0], classes, 4])) / weights

    y1, x1, y2, x2 = tf.unstack(proposals[:, tf.newaxis, :], num=4, axis=-1)
    h, w = y2 - y1, x2 - x1
    cy, cx = y1 + 0.5 * h, x1 + 0.5 * w
    dy, dx, dh, dw = tf.unstack(deltas, num=4, axis=-1)
    new_cy = cy + dy * h
    new_cx = cx + dx * w
    new_h = tf.exp(tf.minimum(dh, DELTA_CLAMP)) * h
    new_w = tf.exp(tf.minimum(dw, DELTA_CLAMP)) * w
    out = tf.stack(
        [new_cy - 0.5 * new_h, new_cx - 0.5 * new_w, new_cy + 0.5 * new_h, new_cx + 0.5 * new_w],
        axis=-1,
    )
    return out[:, 0] if squeeze else out


def iou_tf(a, b):
    """IoU of broadcastable ``[..., 4]`` boxes in TensorFlow (float32), for graphs and
    SavedModels; degenerate boxes give 0, never NaN.

    >>> iou_tf(tf.constant([[0.0, 0, 2, 2]]), tf.constant([[1.0, 0, 3, 2], [3, 3, 3, 5]])).numpy().tolist()
    [0.3333333432674408, 0.0]
    """
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)

    def area(box):
        return tf.maximum(box[..., 2] - box[..., 0], 0.0) * tf.maximum(box[..., 3] - box[..., 1], 0.0)

    low = tf.maximum(a[..., :2], b[..., :2])
    high = tf.minimum(a[..., 2:], b[..., 2:])
    inter = tf.reduce_prod(tf.maximum(high - low, 0.0), axis=-1)
    return tf.math.divide_no_nan(inter, area(a) + area(b) - inter)


def expand_boxes_for_context(boxes, output_size=224, context=16):
    """R-CNN's "warp with context": enlarges each box about its centre so that, once
    the enlarged box is warped to ``output_size x output_size``, the original box
    fills the middle and ``context`` pixels of surroundings lie on every side.

    Both sides scale by ``output_size / (output_size - 2 * context)``. The result is
    not clipped or rounded: R-CNN fills the part outside the image with the mean
    pixel, so that is the caller's choice. Degenerate boxes stay degenerate.

    >>> expand_boxes_for_context([[0, 0, 192, 96]], output_size=224, context=16).tolist()
    [[-16.0, -8.0, 208.0, 104.0]]
    """
    boxes = as_boxes(boxes).astype(np.float64)
    ok = all(is_number(v) for v in (output_size, context))
    if not ok or not (context >= 0 and output_size > 2 * context):
        raise ValueError(
            "`output_size` and `context` must be numbers with context >= 0 and "
            f"output_size > 2 * context (e.g. 224 and 16); got {output_size!r} and {context!r}."
        )
    scale = output_size / (output_size - 2.0 * context)
    centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    half = 0.5 * (boxes[:, 2:] - boxes[:, :2]) * scale
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


def as_boxes(boxes, argument="boxes"):
    """``boxes`` as a float32 ``[N, 4]`` array, or ValueError; an empty sequence is
    ``[0, 4]``."""
    array = np.asarray(boxes)
    if array.ndim == 1 and array.size == 0:
        return np.zeros((0, 4), np.float32)
    if not (np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)):
        raise ValueError(f"`{argument}` must hold real numbers; got dtype {array.dtype}.")
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"`{argument}` must be [num_boxes, 4] as [y1, x1, y2, x2] in pixels; got shape {array.shape}.")
    return array.astype(np.float32)


def _area(boxes):
    return np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)


def _centre_size(boxes, argument):
    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    bad = np.flatnonzero(~((h > 0) & (w > 0)))
    if bad.size:
        raise ValueError(
            f"`{argument}` must have positive height and width (y2 > y1, x2 > x1) to "
            f"be encoded; rows {bad[:10].tolist()} do not, e.g. {boxes[bad[0]].tolist()}."
        )
    return boxes[:, 0] + 0.5 * h, boxes[:, 1] + 0.5 * w, h, w


def _check_deltas(shape, count):
    """Validates a deltas shape against ``count`` proposals; returns whether it is
    ``[N, 4]`` and the number of classes (None if dynamic)."""
    rank = len(shape)
    last = shape[-1] if rank else None
    ok = (rank == 2 and last is not None and last % 4 == 0 and last > 0) or (rank == 3 and last == 4)
    if not ok:
        raise ValueError(
            "`deltas` must be [N, 4], [N, 4 * K] (K classes) or [N, K, 4] as "
            f"(dy, dx, dh, dw), with a static last dimension; got shape {tuple(shape)}."
        )
    if shape[0] is not None and count is not None and shape[0] != count:
        raise ValueError(f"`deltas` has {shape[0]} rows but `proposals` has {count}; they must match.")
    if rank == 2:
        return last == 4, last // 4
    return False, shape[1]


def _weights(weights):
    try:
        values = np.asarray(weights, np.float64)
    except (TypeError, ValueError):
        values = None
    if values is None or values.shape != (4,) or not (np.isfinite(values).all() and (values > 0).all()):
        raise ValueError(
            "`weights` must be 4 positive numbers (wy, wx, wh, ww), e.g. (1, 1, 1, 1) "
            f"or Fast R-CNN's (10, 10, 5, 5); got {weights!r}."
        )
    return values


def _positive(value, argument):
    if not is_number(value) or not value > 0:
        raise ValueError(f"`{argument}` must be a positive number (pixels); got {value!r}.")
    return float(value)


# Beyond +-2^24 float32 does not hold whole pixels, and corners of +-3e38 give sides
# (y2 - y1) and regressed boxes that overflow to inf or NaN; below it they stay finite.
MAX_COORDINATE = 2.0**24


def check_proposals(boxes, name="proposals"):
    """``boxes`` as float32 ``[R, 4]``; ``ValueError`` for a shape that is not ``[R, 4]``
    or coordinates that are NaN, infinite or beyond ``MAX_COORDINATE``."""
    array = np.asarray(boxes, np.float32)
    if array.size % 4 or (array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[1] != 4)):
        raise ValueError(f"`{name}` must be [R, 4] boxes [y1, x1, y2, x2] in pixels; got shape {array.shape}.")
    array = array.reshape(-1, 4)
    bad = ~(np.abs(array) <= MAX_COORDINATE)  # NaN too
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(
            f"`{name}` row {row} is {array[row].tolist()}: coordinates must be finite pixels of magnitude at most "
            f"{MAX_COORDINATE:.0f} (2^24), where a side y2 - y1 or a regressed box would overflow float32."
        )
    return array
