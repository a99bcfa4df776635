"""The detector's chain in ``keras.ops``: what ``SppNetDetector``'s call runs on every
Keras backend (TensorFlow, JAX, PyTorch), eagerly and under ``jax.jit``.

* ``padded_detections(outputs, boxes, height, width, settings, nms)``: scoring, box
  regression, clipping, per-class NMS (``nms``, the backend's: ``backend_nms``),
  box voting. TensorFlow runs it too, with its own NMS op swapped in
  (``keras_spp.detection.nms.per_class_nms``: faster there, measured in
  ``benchmarks/results/nms-backends-cpu-2core.json``); the other backends run
  ``keras_spp.detection.nms_ops.per_class_nms``.
* ``detection_outputs``: the TF Object Detection API's dict, padded to ``D`` rows.
* ``pool_windows(roi, images, boxes)``: ``MultiScaleRoiFeatures``' window pooling
  where the image size is a Python int (JAX, PyTorch; under ``jax.jit`` too). On
  TensorFlow the layer keeps its own ``pool_windows``: its graphs leave the image
  size free (one trace for every size), which ``keras.ops.image.resize`` cannot
  (the output size must be known), and it skips unchosen scales with ``tf.cond``.
* ``check_images``, ``check_boxes``: the checks of ``network_outputs`` on backend
  tensors, with its messages, for the backends without TensorFlow graphs.

Detections in the padded form are ``(boxes [N, 4], scores [N], classes [N] int32
0-based, count)``: the first ``count`` rows are the detections, best first; rows
past ``count`` (none on TensorFlow, whose NMS trims; ``max_detections - count`` on
the others) are padding, whatever they hold. Boxes ``[y1, x1, y2, x2]`` pixels.

This module imports no TensorFlow at its top: ``backend_nms`` imports it on the
TensorFlow backend only.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_spp.detection import scales as scales_lib
from keras_spp.detection.boxes import MAX_COORDINATE, NUMPY_OPS, decode_boxes
from keras_spp.detection.nms_ops import box_voting
from keras_spp.detection.nms_ops import per_class_nms as ops_per_class_nms
from keras_spp.ops.roi_pyramid_pool import roi_pyramid_pool


def backend_nms():
    """The per-class NMS of this backend, as ``nms(boxes, scores, iou_threshold,
    score_threshold, max_detections) -> (boxes, scores, classes, count)``:
    TensorFlow's op on TensorFlow (trimmed, ``count`` its row count), else the
    ``keras.ops`` one padded to ``max_detections`` rows (what ``jax.jit`` needs)."""
    if keras.backend.backend() == "tensorflow":
        from keras_spp.detection.nms import per_class_nms

        def tensorflow_nms(boxes, scores, iou_threshold, score_threshold, max_detections):
            kept = per_class_nms(boxes, scores, iou_threshold, score_threshold, max_detections)
            return (*kept, ops.shape(kept[1])[0])

        return tensorflow_nms

    def keras_nms(boxes, scores, iou_threshold, score_threshold, max_detections):
        return ops_per_class_nms(boxes, scores, iou_threshold, score_threshold, max_detections, padded=True)

    return keras_nms


def padded_detections(outputs, boxes, height, width, settings, nms=None, valid=None):
    """The detections of the network's ``outputs`` for ``boxes [R, 4]`` of an image of
    ``height`` x ``width``, in the padded form (module docstring).

    Scores are the softmax probabilities without background or the SVM scores
    (``settings.scoring``); with ``box_regression`` each class's window is moved by
    its regressor, then clipped to the image; then per-class NMS, the
    ``score_threshold`` and the ``max_detections`` best, and box voting if
    ``settings.vote_iou`` is set. ``valid``: ``[R]`` bool, ``None`` for all; windows
    not valid (padding of a fixed-size proposal list) never become detections nor vote.
    ``nms``: ``backend_nms()`` by default."""
    nms = nms or backend_nms()
    boxes = ops.reshape(ops.cast(boxes, "float32"), [-1, 4])
    if settings.scoring == "softmax":
        scores = outputs["class_probabilities"][:, 1:]
    else:
        scores = outputs["svm_scores"]
    scores = ops.cast(scores, "float32")
    if settings.box_regression:
        per_class = decode_boxes(boxes, ops.cast(outputs["box_deltas"], "float32"))
    else:
        per_class = ops.tile(boxes[:, None, :], [1, ops.shape(scores)[1], 1])
    limit = ops.cast(ops.stack([height, width, height, width]), "float32")
    per_class = ops.clip(per_class, 0.0, limit)
    if valid is not None:
        scores = ops.where(valid[:, None], scores, -math.inf)
    kept_boxes, kept_scores, classes, count = nms(
        per_class, scores, settings.nms_iou, settings.score_threshold, int(settings.max_detections)
    )
    if settings.vote_iou is not None:
        # Probabilities weigh the votes under either scoring: SVM margins can be negative.
        probabilities = ops.cast(outputs["class_probabilities"][:, 1:], "float32")
        if valid is not None:
            probabilities = ops.where(valid[:, None], probabilities, 0.0)
        kept_boxes = box_voting(kept_boxes, classes, per_class, probabilities, settings.vote_iou)
    return kept_boxes, kept_scores, classes, count


def detection_outputs(boxes, scores, classes, count, height, width, max_detections):
    """Padded detections (module docstring) of an image of ``height`` x ``width`` as
    ``SppNetDetector``'s outputs: ``detection_boxes [1, D, 4]`` normalized,
    ``detection_scores [1, D]``, ``detection_classes [1, D]`` 1-based float,
    ``num_detections [1]``; zeros past ``count``, ``D = max_detections``."""
    size = ops.cast(ops.stack([height, width, height, width]), "float32")
    pad = max_detections - ops.shape(scores)[0]
    valid = ops.arange(max_detections, dtype="int32") < ops.cast(count, "int32")

    def rows(x, shape):
        x = ops.pad(x, [[0, pad]] + [[0, 0]] * (len(shape) - 1))
        mask = ops.reshape(valid, [max_detections] + [1] * (len(shape) - 1))
        return ops.where(mask, ops.reshape(x, shape), 0.0)[None]

    return {
        "detection_boxes": rows(boxes / size, [max_detections, 4]),
        "detection_scores": rows(ops.cast(scores, "float32"), [max_detections]),
        "detection_classes": rows(ops.cast(classes + 1, "float32"), [max_detections]),
        "num_detections": ops.cast(count, "float32")[None],
    }


def trimmed(detections):
    """``(boxes [D, 4], scores [D], classes [D])``: padded detections cut to ``count``
    (which must be known: eagerly, or TensorFlow's dynamic shapes)."""
    boxes, scores, classes, count = detections
    if keras.backend.backend() == "tensorflow":
        return boxes[:count], scores[:count], classes[:count]
    count = int(ops.convert_to_numpy(count))
    return boxes[:count], scores[:count], classes[:count]


def pool_windows(roi, images, boxes, feature_maps=None):
    """``roi.pool_windows(images, boxes, False, feature_maps)`` of a
    ``MultiScaleRoiFeatures`` layer where ``images``' size is known as Python ints
    (JAX and PyTorch, eagerly and compiled): ``[R, roi.output_dim]``.

    Each window is pooled at the scale ``scales.choose_scales`` picks, from that
    scale's conv5 (``feature_maps[i]`` when given: an RPN's). Eagerly, scales no
    window chose are skipped; compiled, every scale runs (which one a window takes
    is only known at run time) and ``where`` keeps each window's own."""
    images = ops.cast(images, roi.compute_dtype)
    boxes = ops.cast(ops.reshape(boxes, [-1, 4]), "float32")
    height, width = int(images.shape[1]), int(images.shape[2])
    # In numpy float32, the dtype TensorFlow's graph computes them in: the same sizes.
    factors = scales_lib.resize_factors(height, width, roi.scales, roi.max_side, "float32", NUMPY_OPS)
    chosen = scales_lib.choose_scales(boxes, ops.convert_to_tensor(factors), roi.window_size)
    concrete = is_concrete(boxes)
    pooled = None
    for i, factor in enumerate(factors):
        if concrete and not bool(ops.convert_to_numpy(ops.any(chosen == i))):
            continue
        feature_map = (feature_maps or {}).get(i)
        if feature_map is None:
            feature_map = roi.backbone(resized(images, height, width, factor), training=False)
        size = scales_lib.resized_size(height, width, factor, "float32", NUMPY_OPS)
        here = pool_map(roi, feature_map, boxes * float(factor), size)
        pooled = here if pooled is None else ops.where((chosen == i)[:, None], here, pooled)
    if pooled is None:
        return ops.zeros([ops.shape(boxes)[0], roi.output_dim], roi.compute_dtype)
    return pooled


def resized(images, height, width, factor):
    """``images`` resized by ``factor`` as ``MultiScaleRoiFeatures.resized`` does:
    antialiased when shrinking, plain bilinear (half-pixel centres) when enlarging."""
    size = scales_lib.resized_size(height, width, factor, "float32", NUMPY_OPS)
    out = ops.image.resize(images, (int(size[0]), int(size[1])), "bilinear", antialias=bool(factor < 1.0))
    return ops.cast(out, images.dtype)


def pool_map(roi, feature_map, scaled_boxes, size):
    """``MultiScaleRoiFeatures.pool_map`` in ``keras.ops``: the windows (pixels of the
    resized image of ``size`` (height, width)) pooled from its conv5, with their
    context squares when the layer has ``context``."""
    windows = scaled_boxes
    if roi.context is not None:
        # Windows and squares in one call share one block-max table: built once for
        # each, the tables took a tenth of the RPN detector's call on the digits.
        squares = context_windows(scaled_boxes, roi.context, size[0], size[1])
        windows = ops.concatenate([scaled_boxes, squares], axis=0)
    indices = ops.zeros([ops.shape(windows)[0]], "int32")
    pooled = roi_pyramid_pool(feature_map, windows, indices, roi.levels, 1.0 / roi.feature_stride, roi.coordinate_rule)
    if roi.context is not None:
        count = ops.shape(scaled_boxes)[0]
        pooled = ops.concatenate([pooled[:count], pooled[count:]], axis=1)
    return ops.cast(pooled, roi.compute_dtype)


def context_windows(boxes, context, height, width):
    """Squares of side ``context`` times each box's longer side, centred on the box,
    clipped to an image of ``height`` x ``width``; boxes ``[R, 4]`` as ``[y1, x1, y2, x2]``,
    float32 (SPP-net's context features; ``MultiScaleRoiFeatures`` on every backend).

    >>> ops.convert_to_numpy(context_windows([[40.0, 50.0, 80.0, 60.0]], 2.0, 100, 100)).tolist()
    [[20.0, 15.0, 100.0, 95.0]]
    """
    boxes = ops.cast(boxes, "float32")
    height, width = ops.cast(height, "float32"), ops.cast(width, "float32")
    centre_y = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_x = (boxes[:, 1] + boxes[:, 3]) / 2
    half = context * ops.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    return ops.stack(
        [
            ops.clip(centre_y - half, 0.0, height),
            ops.clip(centre_x - half, 0.0, width),
            ops.clip(centre_y + half, 0.0, height),
            ops.clip(centre_x + half, 0.0, width),
        ],
        axis=1,
    )


def is_concrete(x):
    """Whether ``x``'s values can be read now: not a ``jax.jit`` tracer, not inside
    ``torch.compile`` (TensorFlow: eagerly)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    import tensorflow as tf

    return tf.executing_eagerly()


def _dtype_name(x):
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        dtype = np.asarray(x).dtype
    try:
        return keras.backend.standardize_dtype(dtype)
    except (ValueError, TypeError):
        return str(getattr(dtype, "name", dtype))


def _is_real(name):
    return ("float" in name or "int" in name) and "complex" not in name


def dtype_refused(name, accepted, dtype):
    """The text refusing input ``name`` of a non-numeric ``dtype`` (every backend's)."""
    return f"`{name}` must be {accepted}; got dtype {dtype}."


def batch_refused(count, accepted):
    """The text refusing a batch of ``count`` images (every backend's)."""
    return f"`images` holds a batch of {count} images; the detector takes {accepted}: once per image."


def check_images(images, accepted, refuse, refused):
    """``images`` as a float32 backend tensor, refused (``refuse(message)``) when its
    dtype or shape is not ``accepted``: ``network_outputs.check_images``' checks and
    messages where every shape is known (JAX, PyTorch). ``refused``: the text before
    the shape (``network_outputs.images_refused()``)."""
    name = _dtype_name(images)
    if not _is_real(name):
        refuse(dtype_refused("images", accepted, name))
    images = ops.convert_to_tensor(images)
    shape = [int(d) for d in images.shape]
    if len(shape) == 4 and shape[0] > 1:
        refuse(batch_refused(shape[0], accepted))
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or 0 in shape[1:3]:
        refuse(f"{refused} {shape}.")
    return ops.cast(images, "float32")


def check_boxes(boxes, accepted, refuse, coordinates_refused):
    """``boxes`` as a float32 backend tensor ``[R, 4]``, refused when its dtype or
    shape is not ``accepted`` or, where the values can be read (``is_concrete``), a
    coordinate is NaN, infinite or beyond ``MAX_COORDINATE`` (the text
    ``coordinates_refused``, then the rows). Under ``jax.jit`` or ``torch.compile``
    such a box's pooled features are NaN instead (``roi_pyramid_pool``)."""
    name = _dtype_name(boxes)
    if not _is_real(name):
        refuse(dtype_refused("boxes", accepted, name))
    boxes = ops.convert_to_tensor(boxes)
    if len(boxes.shape) != 2 or boxes.shape[1] != 4:
        refuse(f"`boxes` must be {accepted}; got shape {[int(d) for d in boxes.shape]}.")
    boxes = ops.cast(boxes, "float32")
    if is_concrete(boxes):
        values = ops.convert_to_numpy(boxes)
        bad = ~np.all(np.abs(values) <= MAX_COORDINATE, axis=1)
        if bad.any():
            refuse(f"{coordinates_refused} {np.flatnonzero(bad).tolist()}, first: {values[bad][:1].tolist()}.")
    return boxes
