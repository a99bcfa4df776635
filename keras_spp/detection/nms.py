"""Per-class greedy non-maximum suppression, box voting, and the paper's model combination.

Both functions are TensorFlow: they run eagerly, inside ``tf.function`` and in an
exported SavedModel with a dynamic number of boxes. ``jit_compile=True`` is not
supported (XLA fails to compile ``tf.image.non_max_suppression`` here).
"""

import math

import numpy as np
import tensorflow as tf

from keras_spp.detection.boxes import iou
from keras_spp.detection.nms_ops import check_settings, checked_iou_threshold
from keras_spp.validation import positive_int


def per_class_nms(
    boxes,
    scores,
    iou_threshold=0.3,
    score_threshold=0.0,
    max_detections=100,
    max_per_class=None,
):
    """Greedy NMS in each class separately, then the best detections over all classes.

    Conventions:
      * ``boxes``: ``[R, 4]`` shared by all classes, or ``[R, K, 4]`` per class (after
        class-specific box regression); ``[y1, x1, y2, x2]`` in pixels.
      * ``scores``: ``[R, K]``, one column per object class, no background column.
        Boxes and scores are cast to float32.
      * In each class, candidates with ``score > score_threshold`` (strictly, as
        ``tf.image.non_max_suppression``; NaN scores never pass) are visited by
        descending score; one is kept unless its IoU with an already kept box of the
        class is ``> iou_threshold`` (strictly). At most ``max_per_class`` (default
        ``max_detections``) are kept per class.
      * A box with ``y2 < y1`` or ``x2 < x1`` counts as having zero area, so it
        neither suppresses nor is suppressed (TensorFlow's op alone would flip its
        corners instead).
      * Returns ``(boxes [D, 4], scores [D], classes [D])``: float32, float32, int32
        0-based class indices; sorted by descending score, ``D <= max_detections``.
        ``R = 0``, ``K = 0`` and classes with no candidate are valid: ``D`` may be 0.
      * Ties: among equal scores the suppression visits the lower row first, and the
        output (so also the ``max_detections`` cut) puts the lower class first, then
        the lower row (checked against TensorFlow's CPU kernel).

    Example:

    >>> boxes = tf.constant([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    >>> scores = tf.constant([[0.875, 0.125], [0.75, 0.625], [0.25, 0.5]])
    >>> b, s, c = per_class_nms(boxes, scores, iou_threshold=0.5)
    >>> s.numpy().tolist(), c.numpy().tolist()
    ([0.875, 0.625, 0.5, 0.25], [0, 1, 1, 0])
    >>> b.numpy()[:2].tolist()
    [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]]
    """
    iou_threshold, score_threshold, max_detections, per_class = check_settings(
        iou_threshold, score_threshold, max_detections, max_per_class
    )
    boxes, scores = _check_inputs(boxes, scores)

    keep, kept_scores = _kept_per_class(boxes, scores, per_class, iou_threshold, score_threshold)
    return _best_over_classes(boxes, keep, kept_scores, per_class, max_detections)


def _kept_per_class(boxes, scores, per_class, iou_threshold, score_threshold):
    """``(rows [K, per_class] int32, scores [K, per_class])``: each class's NMS survivors,
    best first, padded with row 0 and score ``-inf``."""
    class_scores = tf.transpose(scores)  # [K, R]
    # Zero-area stand-ins for inverted boxes; the outputs keep the originals.
    suppress_boxes = tf.concat([boxes[..., :2], tf.maximum(boxes[..., 2:], boxes[..., :2])], -1)

    def select(class_boxes, class_score):
        keep = tf.image.non_max_suppression(class_boxes, class_score, per_class, iou_threshold, score_threshold)
        pad = [[0, per_class - tf.shape(keep)[0]]]
        kept = tf.pad(tf.gather(class_score, keep), pad, constant_values=-np.inf)
        return tf.pad(keep, pad), kept

    signature = (tf.TensorSpec([per_class], tf.int32), tf.TensorSpec([per_class], tf.float32))
    if boxes.shape.rank == 2:
        return tf.map_fn(lambda s: select(suppress_boxes, s), class_scores, fn_output_signature=signature)
    return tf.map_fn(
        lambda args: select(*args),
        (tf.transpose(suppress_boxes, [1, 0, 2]), class_scores),
        fn_output_signature=signature,
    )


def _best_over_classes(boxes, keep, kept_scores, per_class, max_detections):
    """The ``max_detections`` best of the kept candidates over all classes: ``(boxes,
    scores, classes)`` in ``per_class_nms``' order."""
    # Kept candidates as a [K, per_class] grid, class-major, padded with -inf (no
    # kept score is -inf: it never passes `> score_threshold`). top_k puts equal
    # values in index order, which gives the documented tie order.
    kept = tf.reduce_sum(tf.cast(kept_scores > -np.inf, tf.int32))
    total = tf.minimum(kept, max_detections)
    top_scores, flat = tf.math.top_k(tf.reshape(kept_scores, [-1]), k=total)
    classes = flat // per_class
    rows = tf.gather_nd(keep, tf.stack([classes, flat % per_class], axis=1))
    if boxes.shape.rank == 2:
        out_boxes = tf.gather(boxes, rows)
    else:
        out_boxes = tf.gather_nd(boxes, tf.stack([rows, classes], axis=1))
    return (
        tf.ensure_shape(out_boxes, [None, 4]),
        tf.ensure_shape(top_scores, [None]),
        tf.ensure_shape(classes, [None]),
    )


def box_voting(boxes, classes, candidate_boxes, candidate_weights, iou_threshold=0.5):
    """Moves each detection to the weighted mean of the candidates of its class that
    overlap it (Gidaris and Komodakis, 2015, "box voting"; beyond the paper).

    NMS keeps the best-scored window of each object, which is not always the best
    placed: the windows around an object agree on where it is better than any one of
    them. Each kept box becomes the mean of its class's candidates whose IoU with it
    is ``>= iou_threshold``, weighted by their ``candidate_weights``; scores and
    classes are unchanged.

    Args:
      boxes: ``[D, 4]`` kept boxes ``[y1, x1, y2, x2]`` (``per_class_nms``'s output).
      classes: ``[D]`` their 0-based classes.
      candidate_boxes: ``[R, 4]`` shared by all classes, or ``[R, K, 4]`` per class
        (after class-specific box regression): what NMS chose from.
      candidate_weights: ``[R, K]`` weights ``>= 0`` (e.g. class probabilities);
        negative ones count as 0.
      iou_threshold: in ``[0, 1]``.

    Returns:
      float32 ``[D, 4]``. A box with no candidate of positive weight stays as it is;
      ``D = 0`` and ``R = 0`` are valid.

    >>> kept = tf.constant([[0.0, 0, 10, 10]])
    >>> candidates = tf.constant([[0.0, 0, 10, 10], [0, 0, 10, 12], [40, 40, 50, 50]])
    >>> weights = tf.constant([[0.5], [0.5], [1.0]])
    >>> box_voting(kept, tf.constant([0]), candidates, weights).numpy().tolist()
    [[0.0, 0.0, 10.0, 11.0]]
    """
    iou_threshold = checked_iou_threshold(iou_threshold)
    candidate_boxes, candidate_weights = _check_inputs(candidate_boxes, candidate_weights)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    classes = tf.reshape(tf.cast(classes, tf.int32), [-1])
    if candidate_boxes.shape.rank == 2:
        candidate_boxes = tf.tile(candidate_boxes[:, tf.newaxis], [1, tf.shape(candidate_weights)[1], 1])
    mine = tf.transpose(tf.gather(candidate_boxes, classes, axis=1), [1, 0, 2])  # [D, R, 4]
    weights = tf.maximum(tf.transpose(tf.gather(candidate_weights, classes, axis=1)), 0.0)  # [D, R]
    overlap = iou(boxes[:, tf.newaxis], mine)
    weights = tf.where(overlap >= iou_threshold, weights, 0.0)
    total = tf.reduce_sum(weights, axis=1, keepdims=True)
    voted = tf.reduce_sum(weights[..., tf.newaxis] * mine, axis=1) / tf.maximum(total, 1e-12)
    return tf.where(total > 0.0, voted, boxes)


def combine_detections(
    detections,
    iou_threshold=0.3,
    max_detections=100,
    num_classes=None,
    score_threshold=-math.inf,
):
    """The paper's combination of models: pool every model's scored boxes for one image,
    then ``per_class_nms`` over the union.

    ``detections`` is a list with one ``(boxes [D_m, 4], scores [D_m], classes
    [D_m])`` per model, as ``per_class_nms`` returns them. Classes must lie in
    ``[0, num_classes)``; ``num_classes`` defaults to ``max(classes) + 1``. The scores
    must be comparable across models (the paper's SVM scores are). Returns what
    ``per_class_nms`` returns; equal scores come out lower class first, then in the
    order of the models in the list, then of their rows. An empty list or empty
    detections give ``D = 0``.

    >>> a = ([[0.0, 0, 10, 10]], [0.9], [3])
    >>> b = ([[0.0, 0, 10, 9], [50, 50, 60, 60]], [0.95, 0.5], [3, 1])
    >>> boxes, scores, classes = combine_detections([a, b], iou_threshold=0.3)
    >>> boxes.numpy().tolist(), classes.numpy().tolist()
    ([[0.0, 0.0, 10.0, 9.0], [50.0, 50.0, 60.0, 60.0]], [3, 1])
    """
    if isinstance(detections, tf.Tensor) or not isinstance(detections, (list, tuple)):
        raise ValueError(
            "`detections` must be a list of (boxes, scores, classes) tuples, one per "
            f"model; got {type(detections).__name__}."
        )
    all_boxes, all_scores, all_classes = [tf.zeros([0, 4])], [tf.zeros([0])], [tf.zeros([0], tf.int32)]
    for m, item in enumerate(detections):
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise ValueError(
                f"`detections[{m}]` must be a (boxes [D, 4], scores [D], classes [D]) "
                f"tuple; got {type(item).__name__}. `detections` is a list of such "
                "tuples, one per model: [(boxes, scores, classes), ...]."
            )
        boxes, scores, classes = (tf.convert_to_tensor(v) for v in item)
        box_ok = boxes.shape.rank == 2 and boxes.shape[1] in (None, 4)
        if not box_ok or scores.shape.rank != 1 or classes.shape.rank != 1:
            raise ValueError(
                f"`detections[{m}]` must hold boxes [D, 4], scores [D] and classes [D]; "
                f"got shapes {boxes.shape}, {scores.shape} and {classes.shape}."
            )
        if not classes.dtype.is_integer:
            raise ValueError(f"`detections[{m}]` classes must be integers; got {classes.dtype.name}.")
        all_boxes.append(tf.cast(boxes, tf.float32))
        all_scores.append(tf.cast(scores, tf.float32))
        all_classes.append(tf.cast(classes, tf.int32))
    boxes = tf.concat(all_boxes, 0)
    scores = tf.concat(all_scores, 0)
    classes = tf.concat(all_classes, 0)

    if num_classes is None:
        depth = tf.maximum(tf.reduce_max(classes) + 1, 0)  # max of nothing is INT_MIN
    else:
        depth = positive_int("num_classes", num_classes)
    classes = _check_classes(classes, depth, num_classes is not None)
    # Each candidate scores -inf in the other classes, which never passes NMS's
    # strict `score > score_threshold`.
    onehot = tf.one_hot(classes, depth, on_value=True, off_value=False)
    dense = tf.where(onehot, scores[:, tf.newaxis], -np.inf)
    return per_class_nms(
        boxes,
        dense,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        max_detections=max_detections,
    )


def _check_inputs(boxes, scores):
    boxes = tf.convert_to_tensor(boxes)
    scores = tf.convert_to_tensor(scores)
    if scores.shape.rank != 2:
        raise ValueError(f"`scores` must be [num_boxes, num_classes] (no background column); got shape {scores.shape}.")
    if boxes.shape.rank not in (2, 3) or boxes.shape[-1] not in (None, 4):
        raise ValueError(
            "`boxes` must be [num_boxes, 4] (shared by all classes) or "
            f"[num_boxes, num_classes, 4] as [y1, x1, y2, x2]; got shape {boxes.shape}."
        )
    for name, t in (("boxes", boxes), ("scores", scores)):
        if not (t.dtype.is_floating or t.dtype.is_integer):
            raise ValueError(f"`{name}` must be real numbers; got {t.dtype.name}.")
    rows_b, rows_s = boxes.shape[0], scores.shape[0]
    if None not in (rows_b, rows_s) and rows_b != rows_s:
        raise ValueError(f"`boxes` has {rows_b} rows but `scores` has {rows_s}; they must match.")
    if boxes.shape.rank == 3 and None not in (boxes.shape[1], scores.shape[1]) and boxes.shape[1] != scores.shape[1]:
        raise ValueError(
            f"`boxes` has boxes for {boxes.shape[1]} classes but `scores` has "
            f"{scores.shape[1]} columns; they must match."
        )
    return tf.cast(boxes, tf.float32), tf.cast(scores, tf.float32)


def _check_classes(classes, depth, explicit):
    ok = classes >= 0
    if explicit:
        ok &= classes < depth
    ok = tf.reduce_all(ok)
    if tf.executing_eagerly():
        if not bool(ok):
            accepted = f"[0, {depth})" if explicit else ">= 0"
            bad = classes.numpy()
            bad = bad[(bad < 0) | (bad >= depth)] if explicit else bad[bad < 0]
            raise ValueError(f"classes must be {accepted}; got {bad[:10].tolist()}.")
        return classes
    check = tf.debugging.Assert(ok, ["combine_detections: classes must lie in [0, num_classes)"])
    with tf.control_dependencies([check]):
        return tf.identity(classes)
