"""Box geometry and the R-CNN box regression parametrisation.

Boxes are ``[y1, x1, y2, x2]`` in continuous pixel coordinates (see
``keras_spp.data.detection_examples``): height ``y2 - y1``, width ``x2 - x1``, no
``+ 1``. A box with ``y2 <= y1`` or ``x2 <= x1`` is degenerate: its area is 0 and its
IoU with every box is 0.

``area``, ``iou``, ``box_deltas``, ``decode_boxes`` and ``context_boxes`` are written
once in ``keras.ops``: they take
numpy arrays or backend tensors, run in ``tf.function`` and XLA (with dynamic ``N``)
and on JAX and PyTorch, and return backend tensors in ``dtype``. ``box_area``,
``iou_matrix``, ``pairwise_iou``, ``encode_boxes`` and ``expand_boxes_for_context``
are their numpy views: the same definitions run by numpy (``xp=NUMPY_OPS``), in
float64. ``decode_boxes(..., xp=NUMPY_OPS)`` is numpy's too. The other functions are
numpy: they take anything ``np.asarray`` accepts and return float32 (indices as
``np.intp``); ``N = 0`` is valid everywhere.
"""

import math
import types

import keras
import numpy as np
from keras import ops

from keras_spp.validation import is_number

# detectron2's clamp: exp(log(1000 / 16)) = 62.5 is a larger scale change than any
# real regression target, and it keeps exp() finite for wild deltas.
DELTA_CLAMP = math.log(1000.0 / 16)


# The keras.ops that the geometry below uses, run by numpy. The definitions take
# ``xp`` (keras.ops by default); their numpy views pass ``xp=NUMPY_OPS`` and so run
# the same formula at numpy's speed, in float64: keras.ops on numpy input runs each
# op as a TensorFlow op, 40-65x slower per call on [2000, 4] boxes (measured), too
# slow for the views called per image in training and evaluation loops.
_NUMPY_NAMES = (
    "abs arange argmin concatenate divide exp log maximum meshgrid minimum reshape round shape square stack where"
)
NUMPY_OPS = types.SimpleNamespace(
    **{name: getattr(np, name) for name in _NUMPY_NAMES.split()},
    convert_to_tensor=np.asarray,
    cast=lambda x, dtype: np.asarray(x).astype(dtype),
)


def area(boxes, dtype="float32", xp=ops):
    """Area of each of the ``[..., 4]`` boxes (``[...]`` in ``dtype``), 0 for degenerate ones."""
    boxes = xp.cast(boxes, dtype)
    return xp.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * xp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)


def iou(a, b, dtype="float32", xp=ops):
    """Intersection over union of broadcastable ``[..., 4]`` boxes, computed and
    returned in ``dtype``; degenerate boxes give 0, never NaN (as does a NaN union).

    >>> ops.convert_to_numpy(iou([[0.0, 0, 2, 2]], [[1.0, 0, 3, 2], [3, 3, 3, 5]])).tolist()
    [0.3333333432674408, 0.0]
    """
    a, b = xp.cast(a, dtype), xp.cast(b, dtype)
    height = xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0])
    width = xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1])
    inter = xp.maximum(height, 0.0) * xp.maximum(width, 0.0)
    union = area(a, dtype, xp) + area(b, dtype, xp) - inter
    # union == 0 only when both boxes are degenerate (then inter == 0 too).
    positive = union > 0
    return xp.where(positive, inter / xp.where(positive, union, 1.0), 0.0)


def box_area(boxes):
    """``area`` in numpy (float32), of an ``[N, 4]`` array-like.

    >>> box_area([[0, 0, 2, 3], [5, 5, 4, 9]]).tolist()
    [6.0, 0.0]
    """
    return area(as_boxes(boxes), "float64", NUMPY_OPS).astype(np.float32)


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
    return iou(np.asarray(a)[:, None], np.asarray(b)[None], "float64", NUMPY_OPS)


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
    """R-CNN regression targets of ``targets`` relative to ``proposals``, both [N, 4]:
    ``box_deltas`` run by numpy, after checking its input.

    Every proposal and target needs a positive height and width (R-CNN only
    regresses proposals that overlap a box well); others raise ValueError.
    Computed in float64, returned as float32.

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
    _check_encodable(proposals, "proposals")
    _check_encodable(targets, "targets")
    return box_deltas(proposals, targets, weights, "float64", NUMPY_OPS).astype(np.float32)


def box_deltas(proposals, targets, weights=(1.0, 1.0, 1.0, 1.0), dtype="float32", xp=ops):
    """The R-CNN deltas ``[..., 4]`` of ``targets`` relative to ``proposals``,
    broadcastable ``[..., 4]`` boxes; the inverse of ``decode_boxes``.

    With centres ``(cy, cx)`` and sizes ``h = y2 - y1``, ``w = x2 - x1``, the deltas
    are ``(dy, dx, dh, dw) = weights * ((ty - py) / ph, (tx - px) / pw, log(th / ph),
    log(tw / pw))``. Nothing is checked (it runs in graphs): a box without a
    positive height and width gives inf or NaN; ``encode_boxes`` refuses them.
    Computed and returned in ``dtype``.

    >>> ops.convert_to_numpy(box_deltas([[0, 0, 10, 20]], [[5, 0, 15, 20]])).tolist()
    [[0.5, 0.0, 0.0, 0.0]]
    """
    proposals, targets = xp.cast(proposals, dtype), xp.cast(targets, dtype)
    py, px, ph, pw = _centre_size(proposals)
    ty, tx, th, tw = _centre_size(targets)
    deltas = xp.stack([(ty - py) / ph, (tx - px) / pw, xp.log(th / ph), xp.log(tw / pw)], axis=-1)
    return deltas * xp.cast(_weights(weights), dtype)


def decode_boxes(proposals, deltas, weights=(1.0, 1.0, 1.0, 1.0), dtype=None, xp=ops):
    """Applies regression ``deltas`` to ``proposals`` [N, 4]; inverse of ``encode_boxes``.

    ``deltas`` is ``[N, 4]`` (gives ``[N, 4]``), ``[N, 4 * K]`` for ``K`` classes, the
    class-specific regressors' layout (gives ``[N, K, 4]``), or ``[N, K, 4]``; its last
    dimension must be static, ``N`` may be dynamic (graphs, SavedModels). After
    dividing by ``weights``, ``dh`` and ``dw`` are clamped at ``log(1000 / 16)`` so
    that wild deltas give large but finite boxes. Degenerate proposals decode to
    degenerate boxes, never NaN. Computed and returned (a backend tensor) in ``dtype``,
    by default that of ``deltas`` if it is a float dtype, else float32. With
    ``xp=NUMPY_OPS``, numpy runs it (numpy in, numpy out, at numpy's speed).

    >>> ops.convert_to_numpy(decode_boxes([[0, 0, 10, 20]], [[0.5, 0.25, 0.0, 0.0]])).tolist()
    [[5.0, 5.0, 15.0, 25.0]]
    >>> decode_boxes([[0.0, 0, 10, 20]], np.zeros([1, 12])).shape
    TensorShape([1, 3, 4])
    """
    deltas = xp.convert_to_tensor(deltas)
    if dtype is None:
        dtype = _float_dtype(deltas)
    deltas = xp.cast(deltas, dtype)
    proposals = xp.cast(proposals, dtype)
    if len(proposals.shape) != 2 or proposals.shape[1] not in (None, 4):
        raise ValueError(f"`proposals` must be [num_boxes, 4] as [y1, x1, y2, x2]; got shape {tuple(proposals.shape)}.")
    squeeze, classes = _check_deltas(tuple(deltas.shape), proposals.shape[0])
    if classes is None:
        classes = xp.shape(deltas)[1]
    # An explicit class count: reshape cannot infer a -1 when N = 0.
    deltas = xp.reshape(deltas, (xp.shape(proposals)[0], classes, 4)) / xp.cast(_weights(weights), dtype)

    cy, cx, h, w = (v[:, None] for v in _centre_size(proposals))
    new_cy = cy + deltas[..., 0] * h
    new_cx = cx + deltas[..., 1] * w
    new_h = xp.exp(xp.minimum(deltas[..., 2], DELTA_CLAMP)) * h
    new_w = xp.exp(xp.minimum(deltas[..., 3], DELTA_CLAMP)) * w
    out = xp.stack(
        [new_cy - 0.5 * new_h, new_cx - 0.5 * new_w, new_cy + 0.5 * new_h, new_cx + 0.5 * new_w],
        axis=-1,
    )
    return out[:, 0] if squeeze else out


def expand_boxes_for_context(boxes, output_size=224, context=16):
    """``context_boxes`` of an ``[N, 4]`` array-like, run by numpy in float64 and
    returned as float32.

    >>> expand_boxes_for_context([[0, 0, 192, 96]], output_size=224, context=16).tolist()
    [[-16.0, -8.0, 208.0, 104.0]]
    """
    boxes = as_boxes(boxes).astype(np.float64)
    return context_boxes(boxes, output_size, context, "float64", NUMPY_OPS).astype(np.float32)


def context_boxes(boxes, output_size=224, context=16, dtype=None, xp=ops):
    """R-CNN's "warp with context": enlarges each of the ``[..., 4]`` boxes about its
    centre so that, once the enlarged box is warped to ``output_size x output_size``,
    the original box fills the middle and ``context`` pixels of surroundings lie on
    every side.

    Both sides scale by ``context_scale(output_size, context)``. The result is not
    clipped or rounded: R-CNN fills the part outside the image with the mean pixel,
    so that is the caller's choice. Degenerate boxes stay degenerate. Computed and
    returned in ``dtype``, by default that of ``boxes`` if it is a float dtype, else
    float32; with ``xp=NUMPY_OPS``, by numpy.

    >>> ops.convert_to_numpy(context_boxes([[0.0, 0, 192, 96]], 224, 16)).tolist()
    [[-16.0, -8.0, 208.0, 104.0]]
    """
    scale = context_scale(output_size, context)
    boxes = xp.convert_to_tensor(boxes)
    boxes = xp.cast(boxes, _float_dtype(boxes) if dtype is None else dtype)
    centre = 0.5 * (boxes[..., :2] + boxes[..., 2:])
    # Halving before scaling: the side times the scale overflows for sides within
    # 17% of float32's largest, while half of it does not.
    half = 0.5 * (boxes[..., 2:] - boxes[..., :2]) * scale
    return xp.concatenate([centre - half, centre + half], axis=-1)


def context_scale(output_size, context, argument="output_size"):
    """``output_size / (output_size - 2 * context)``, the factor by which
    ``context_boxes`` enlarges the sides, or ValueError unless
    ``0 <= context < output_size / 2`` (``argument`` names ``output_size`` there)."""
    ok = all(is_number(v) for v in (output_size, context))
    if not ok or not (context >= 0 and output_size > 2 * context):
        raise ValueError(
            f"`{argument}` and `context` must be numbers with context >= 0 and "
            f"{argument} > 2 * context (e.g. 224 and 16); got {output_size!r} and {context!r}."
        )
    return output_size / (output_size - 2.0 * context)


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


def _centre_size(boxes):
    """``(cy, cx, h, w)`` of ``[..., 4]`` boxes, the one centre-and-size formula of
    ``box_deltas`` and ``decode_boxes``. It needs no ``xp``: indexing and arithmetic
    operators are the same on numpy arrays and on every backend's tensors."""
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * h, boxes[..., 1] + 0.5 * w, h, w


def _check_encodable(boxes, argument):
    _, _, h, w = _centre_size(boxes)
    bad = np.flatnonzero(~((h > 0) & (w > 0)))
    if bad.size:
        raise ValueError(
            f"`{argument}` must have positive height and width (y2 > y1, x2 > x1) to "
            f"be encoded; rows {bad[:10].tolist()} do not, e.g. {boxes[bad[0]].tolist()}."
        )


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


def _float_dtype(x):
    dtype = keras.backend.standardize_dtype(x.dtype)
    return dtype if "float" in dtype else "float32"


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
