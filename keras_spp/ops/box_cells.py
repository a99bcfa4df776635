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

from keras import ops

from keras_spp.ops import runtime
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
    if rule not in COORDINATE_RULES:
        raise ValueError(f"`coordinate_rule` must be one of {COORDINATE_RULES}; got {rule!r}.")
    boxes = _check_boxes_shape(ops.convert_to_tensor(boxes))
    boxes = ops.cast(boxes, "float32")
    scaled = ops.where(ops.isfinite(boxes), boxes, 0.0) * float(spatial_scale)
    first, second = scaled[:, :2], scaled[:, 2:]
    if rule == "spp":
        start = ops.floor(first) + 1.0
        end = ops.ceil(second) - 1.0
        middle = ops.floor((start + end) / 2.0)
        crossed = start > end
        start = ops.where(crossed, middle, start)
        end = ops.where(crossed, middle, end)
    else:
        start = ops.sign(first) * ops.floor(ops.abs(first) + 0.5)
        end = ops.sign(second) * ops.floor(ops.abs(second) + 0.5)
        end = ops.maximum(end, start)
    last = ops.cast(ops.stack([height, width]) - 1, "float32")
    # Clip before the cast so that huge coordinates cannot overflow int32.
    start = ops.cast(ops.clip(start, 0.0, last), "int32")
    end = ops.cast(ops.clip(end, 0.0, last), "int32")
    return ops.concatenate([start, end], axis=1)


def _check_boxes_shape(boxes):
    """``boxes`` if ``[R, 4]``; else ValueError where the shape is known, and in a
    TensorFlow graph a run-time check of what is not (a ``[R, 3]`` or ``[R, 1]`` tensor
    would broadcast against the corners and give cells silently)."""
    shape = boxes.shape
    rank = shape.rank if hasattr(shape, "rank") else len(shape)
    if rank is not None and (rank != 2 or shape[1] not in (None, 4)):
        raise ValueError(
            f"`boxes` must be [num_boxes, 4] as [y1, x1, y2, x2] in image pixels; got shape {tuple(shape)}."
        )
    if runtime.in_tensorflow_graph() and (rank is None or shape[1] is None):
        boxes = runtime.pin_shape(boxes, [None, 4], "boxes_must_be_num_boxes_by_4")
    return boxes
