"""Image scales for detection and the paper's rule that picks one scale per window.

An image is resized so that its shorter side is ``s`` for each ``s`` in ``scales``
(the paper: ``(688,)`` or ``(480, 576, 688, 864, 1200)``), with the longer side
capped at ``max_side`` (the aspect ratio is always kept). A window is pooled at the
single scale where its scaled area is closest to ``window_size ** 2`` (224 x 224 in
the paper: the size the backbone was trained at).

``resize_factors``, ``resized_size`` and ``choose_scales`` are written once in
``keras.ops`` (numpy arrays or backend tensors in, backend tensors out, in ``dtype``);
``scale_factors``, ``scaled_size`` and ``assign_scales`` are their numpy views: the
same definitions run by numpy (``keras_spp.detection.boxes.NUMPY_OPS``), in float64.

Box convention: ``[y1, x1, y2, x2]`` continuous pixels; resizing by factor ``f``
maps a point ``x`` to ``x * f`` (``tf.image.resize`` with half-pixel centres).
"""

import numpy as np
from keras import ops

from keras_spp.detection import boxes as box_ops
from keras_spp.validation import is_number

PAPER_SCALES = (480, 576, 688, 864, 1200)
SINGLE_SCALE = (688,)
MAX_SIDE = 2000


def validate_scales(scales):
    """Scales as a tuple of positive ints, in the order given; ValueError otherwise."""
    if isinstance(scales, (int, np.integer)):
        scales = (scales,)
    try:
        scales = tuple(int(s) for s in scales)
    except (TypeError, ValueError):
        raise ValueError(f"`scales` must be a positive int or a sequence of them; got {scales!r}.") from None
    if not scales or min(scales) < 1 or len(set(scales)) != len(scales):
        raise ValueError(f"`scales` must be distinct positive ints, e.g. {PAPER_SCALES}; got {scales!r}.")
    return scales


def resize_factors(height, width, scales, max_side=MAX_SIDE, dtype="float32", xp=ops):
    """Resize factor of an ``height x width`` image for each scale (``dtype`` [S]):
    ``min(scale / short side, max_side / long side)``. ``height`` and ``width`` may
    be tensors (dynamic sizes in a graph)."""
    scales = validate_scales(scales)
    if is_number(height) and is_number(width) and min(height, width) <= 0:
        raise ValueError(f"image size must be positive; got {height}x{width}.")
    height, width = xp.cast(height, dtype), xp.cast(width, dtype)
    # divide, not `max_side / tensor`: PyTorch's reflected division multiplies by a reciprocal.
    longest = xp.divide(xp.cast(max_side, dtype), xp.maximum(height, width))
    return xp.minimum(xp.divide(xp.cast(scales, dtype), xp.minimum(height, width)), longest)


def resized_size(height, width, factor, dtype="float32", xp=ops):
    """The size ``[height, width]`` (int32 [2]) an image takes at ``factor``: rounded
    (halves to even) in ``dtype``, at least one pixel."""
    size = xp.round(xp.cast(xp.stack([height, width]), dtype) * xp.cast(factor, dtype))
    return xp.maximum(xp.cast(size, "int32"), 1)


def choose_scales(boxes, factors, window_size=224, dtype="float32", xp=ops):
    """Index into ``factors`` [S] of the scale each of the ``[R, 4]`` boxes is pooled at
    (int32 [R], computed in ``dtype``; dynamic R; compiles under XLA).

    The paper: the scale whose scaled box area is closest to ``window_size ** 2``;
    ties go to the smaller index, so degenerate boxes (zero area, equally far from
    every scale) take the first.
    """
    areas = box_ops.area(xp.reshape(xp.cast(boxes, dtype), (-1, 4)), dtype, xp)
    factors = xp.reshape(xp.cast(factors, dtype), (-1,))
    distance = xp.abs(areas[:, None] * xp.square(factors)[None, :] - float(window_size) ** 2)
    return xp.cast(xp.argmin(distance, axis=1), "int32")


def scale_factors(height, width, scales, max_side=MAX_SIDE):
    """``resize_factors`` in numpy float64."""
    return resize_factors(height, width, scales, max_side, "float64", box_ops.NUMPY_OPS)


def scaled_size(height, width, factor):
    """``resized_size`` (computed in float64) as a tuple of Python ints."""
    return tuple(int(v) for v in resized_size(height, width, factor, "float64", box_ops.NUMPY_OPS))


def assign_scales(boxes, factors, window_size=224):
    """``choose_scales`` in numpy (int32 [R]), computed in float64."""
    return choose_scales(boxes, factors, window_size, "float64", box_ops.NUMPY_OPS)
