"""Image scales for detection and the paper's rule that picks one scale per window.

An image is resized so that its shorter side is ``s`` for each ``s`` in ``scales``
(the paper: ``(688,)`` or ``(480, 576, 688, 864, 1200)``), with the longer side
capped at ``max_side`` (the aspect ratio is always kept). A window is pooled at the
single scale where its scaled area is closest to ``window_size ** 2`` (224 x 224 in
the paper: the size the backbone was trained at).

Box convention: ``[y1, x1, y2, x2]`` continuous pixels; resizing by factor ``f``
maps a point ``x`` to ``x * f`` (``tf.image.resize`` with half-pixel centres).
"""

import numpy as np
import tensorflow as tf

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


def scale_factors(height, width, scales, max_side=MAX_SIDE):
    """Resize factor of an ``height x width`` image for each scale (numpy, float64)."""
    scales = np.asarray(validate_scales(scales), np.float64)
    short, long = min(height, width), max(height, width)
    if short <= 0:
        raise ValueError(f"image size must be positive; got {height}x{width}.")
    return np.minimum(scales / short, max_side / long)


def scale_factors_tf(height, width, scales, max_side=MAX_SIDE):
    """``scale_factors`` for a graph with dynamic ``height`` and ``width`` (float32 [S])."""
    scales = tf.constant(validate_scales(scales), tf.float32)
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    return tf.minimum(scales / tf.minimum(height, width), max_side / tf.maximum(height, width))


def scaled_size(height, width, factor):
    """The size an image takes at ``factor``: rounded, at least one pixel."""
    return max(1, int(round(height * factor))), max(1, int(round(width * factor)))


def scaled_size_tf(height, width, factor):
    size = tf.round(tf.cast(tf.stack([height, width]), tf.float32) * factor)
    return tf.maximum(tf.cast(size, tf.int32), 1)


def assign_scales(boxes, factors, window_size=224):
    """Index into ``factors`` of the scale each box is pooled at (numpy int32 [R]).

    The paper: the scale whose scaled box area is closest to ``window_size ** 2``;
    ties go to the smaller index, so degenerate boxes (zero area, equally far from
    every scale) take the first.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    factors = np.asarray(factors, np.float64).reshape(-1)
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    distance = np.abs(area[:, None] * factors[None, :] ** 2 - float(window_size) ** 2)
    return np.argmin(distance, axis=1).astype(np.int32)


def assign_scales_tf(boxes, factors, window_size=224):
    """``assign_scales`` in TensorFlow (dynamic R; compiles under XLA)."""
    boxes = tf.cast(boxes, tf.float32)
    height = tf.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    width = tf.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    area = height * width
    distance = tf.abs(area[:, None] * tf.square(factors)[None, :] - float(window_size) ** 2)
    return tf.argmin(distance, axis=1, output_type=tf.int32)
