"""Mapping of image-pixel boxes onto feature-map cells.

Boxes are ``[y1, x1, y2, x2]`` in input-image pixels (TensorFlow's order). A rule
turns each box into an inclusive range of cells ``[cy1, cy2] x [cx1, cx2]`` on a map
whose cells are ``1 / spatial_scale`` pixels apart (``spatial_scale = 1 / S``, ``S``
the product of the backbone's strides, 16 for ZF-5):

* ``"spp"``, the paper's appendix, literally in 0-based cells: a first corner maps to
  ``floor(v * scale) + 1`` and a second to ``ceil(v * scale) - 1``, which moves each
  side inward to the cell whose receptive-field centre lies inside the box. Where the
  two cross (boxes narrower than about 2 S pixels, or with ``y2 < y1``), both become
  their midpoint ``floor((c1 + c2) / 2)``, as in the original SPP-net code.
* ``"roi_pool"``, Fast R-CNN and ``torchvision.ops.roi_pool``: each corner maps to
  ``round(v * scale)`` (halves away from zero, as C's ``round``); the end is
  inclusive and the range at least one cell wide (a ``y2 < y1`` box becomes the
  single cell at its first corner).

Then both ends are clipped to the map, so a box partly or wholly outside the map
still covers at least one cell. (torchvision clips each bin instead and emits 0 for
bins that fall outside the map; the two agree for boxes inside the map.)
"""

import tensorflow as tf

from keras_spp.validation import is_number

COORDINATE_RULES = ("spp", "roi_pool")


def validate_spatial_scale(spatial_scale):
    """Returns ``spatial_scale`` as a float, or raises ValueError naming the argument."""
    if not is_number(spatial_scale) or not spatial_scale > 0:
        raise ValueError(
            "`spatial_scale` must be a positive finite number (feature cells per input "
            f"pixel, 1/16 for ZF-5); got {spatial_scale!r}."
        )
    return float(spatial_scale)


def boxes_to_cells(boxes, spatial_scale, height, width, rule="spp"):
    """Inclusive cell ranges ``[cy1, cx1, cy2, cx2]`` (int32 ``[R, 4]``) of ``boxes``.

    Non-finite coordinates map to cell 0; callers flag those boxes separately.
    """
    boxes = tf.cast(boxes, tf.float32)
    finite = tf.math.is_finite(boxes)
    scaled = tf.where(finite, boxes, 0.0) * tf.cast(spatial_scale, tf.float32)
    first, second = scaled[:, :2], scaled[:, 2:]
    if rule == "spp":
        start = tf.floor(first) + 1.0
        end = tf.math.ceil(second) - 1.0
        middle = tf.floor((start + end) / 2.0)
        crossed = start > end
        start = tf.where(crossed, middle, start)
        end = tf.where(crossed, middle, end)
    elif rule == "roi_pool":
        start = tf.sign(first) * tf.floor(tf.abs(first) + 0.5)
        end = tf.sign(second) * tf.floor(tf.abs(second) + 0.5)
        end = tf.maximum(end, start)
    else:
        raise ValueError(f"`coordinate_rule` must be one of {COORDINATE_RULES}; got {rule!r}.")
    last = tf.cast(tf.stack([height, width]) - 1, tf.float32)
    # Clip before the cast so that huge coordinates cannot overflow int32.
    start = tf.cast(tf.clip_by_value(start, 0.0, last), tf.int32)
    end = tf.cast(tf.clip_by_value(end, 0.0, last), tf.int32)
    return tf.concat([start, end], axis=1)
