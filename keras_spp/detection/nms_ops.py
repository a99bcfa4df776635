"""``per_class_nms`` in ``keras.ops``: the detector's per-class greedy NMS on every
Keras backend, eagerly and compiled (``tf.function`` with or without XLA,
``jax.jit``, ``torch``).

Same contract and tie order as ``keras_spp.detection.nms.per_class_nms`` (the
TensorFlow op path, which the detector keeps; see ``docs/detection.md`` for why,
measured). One loop of ``max_detections`` steps serves all classes at once: each step
takes the best remaining candidate over every class and suppresses, in its class
only, the candidates overlapping it. That candidate is the next one its class's
greedy NMS keeps (everything above it in its class was kept or suppressed already),
so the steps list the union of the classes' survivors by descending score, which is
the TF path's final ``top_k`` over classes; the flat argmax over the class-major
``[K, R]`` scores breaks ties lower class first, then lower row, as it does.
"""

import functools
import math

import keras
from keras import ops

from keras_spp.detection.boxes import iou
from keras_spp.validation import is_number, positive_int


def per_class_nms(
    boxes,
    scores,
    iou_threshold=0.3,
    score_threshold=0.0,
    max_detections=100,
    max_per_class=None,
    padded=False,
):
    """Greedy NMS in each class separately, then the best detections over all classes.

    ``boxes`` ``[R, 4]`` or ``[R, K, 4]``, ``scores`` ``[R, K]`` and the thresholds
    as in ``keras_spp.detection.nms.per_class_nms``, whose outputs (boxes, scores,
    classes; order and ties) this returns as backend tensors. ``K`` must be known
    when traced. ``padded=False`` trims to the ``D`` detections, which needs ``D``
    eagerly (or TensorFlow's dynamic shapes); under ``jax.jit`` or ``torch.compile``
    pass ``padded=True``: ``max_detections`` rows (score ``-inf``, class ``-1`` and
    box 0 past the ``D``-th) and ``D`` as a fourth output.

    >>> boxes = [[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]]
    >>> scores = [[0.875, 0.125], [0.75, 0.625], [0.25, 0.5]]
    >>> b, s, c = per_class_nms(boxes, scores, iou_threshold=0.5)
    >>> ops.convert_to_numpy(s).tolist(), ops.convert_to_numpy(c).tolist()
    ([0.875, 0.625, 0.5, 0.25], [0, 1, 1, 0])
    """
    iou_threshold, score_threshold, max_detections, per_class = check_settings(
        iou_threshold, score_threshold, max_detections, max_per_class
    )
    boxes, scores = _check_inputs(boxes, scores)
    if scores.shape[1] == 0:
        empty = ops.zeros([max_detections if padded else 0])
        outputs = ops.zeros([len(empty), 4]), empty - math.inf, ops.cast(empty, "int32") - 1
        return (*outputs, ops.convert_to_tensor(0, "int32")) if padded else outputs

    rows, classes, kept = _selected(boxes, scores, iou_threshold, score_threshold, max_detections, per_class)
    valid = kept > -math.inf
    count = ops.sum(ops.cast(valid, "int32"))
    out_boxes = _gather_boxes(boxes, rows, classes, valid)
    classes = ops.where(valid, classes, -1)
    if padded:
        return out_boxes, kept, classes, count
    return out_boxes[:count], kept[:count], classes[:count]


def _selected(boxes, scores, *settings):
    """``_select``; on JAX outside ``jax.jit``, compiled once per input shape and
    settings (``_jax_select``): run eagerly, ``lax.fori_loop`` retraced and
    recompiled its body, a new closure, at every call (about 1 s for ``[300, 20]``
    scores here, against a few ms cached)."""
    if keras.backend.backend() == "jax":
        import jax

        if not isinstance(boxes, jax.core.Tracer) and not isinstance(scores, jax.core.Tracer):
            return _jax_select()(boxes, scores, *settings)
    return _select(boxes, scores, *settings)


@functools.cache
def _jax_select():
    import jax

    return jax.jit(_select, static_argnums=(2, 3, 4, 5))


def _select(boxes, scores, iou_threshold, score_threshold, steps, per_class):
    """``(rows, classes, scores)``, each ``[steps]``: the survivors over all classes,
    best first; past the last, score ``-inf``."""
    num_rows, num_classes = ops.shape(scores)[0], scores.shape[1]
    # Zero-area stand-ins for inverted boxes, as the TF path feeds its op.
    suppress = ops.concatenate([boxes[..., :2], ops.maximum(boxes[..., 2:], boxes[..., :2])], axis=-1)
    per_class_boxes = len(boxes.shape) == 3
    if per_class_boxes:
        suppress = ops.transpose(suppress, [1, 0, 2])  # [K, R, 4]: a class's boxes contiguous
    # Candidates failing the strict `> score_threshold` (NaN too) start as -inf; no
    # score that passes is -inf, so -inf marks "gone". The extra -inf column keeps
    # argmax defined when R = 0.
    live = ops.where(ops.transpose(scores) > score_threshold, ops.transpose(scores), -math.inf)
    live = ops.pad(live, [[0, 0], [0, 1]], constant_values=-math.inf)  # [K, R + 1]
    row_ids = ops.arange(num_rows, dtype="int32")
    width = num_rows + 1
    no_row = ops.zeros([1], "bool")

    def step(i, state):
        live, counts, rows, classes, kept = state
        best = ops.cast(ops.argmax(ops.reshape(live, [-1])), "int32")
        c, r = best // width, best % width
        best_score = ops.take(live[c], r)
        found = best_score > -math.inf
        mine = ops.take(suppress, c, axis=0) if per_class_boxes else suppress
        # r = R (the pad column) only when R = 0; the zero box then stands in.
        chosen = ops.take(ops.concatenate([mine, ops.zeros([1, 4])], 0), r, axis=0)
        counts = counts + ops.cast((ops.arange(num_classes, dtype="int32") == c) & found, "int32")
        gone = (iou(chosen[None], mine) > iou_threshold) | (row_ids == r) | (ops.take(counts, c) >= per_class)
        row = ops.where(ops.concatenate([gone, no_row], 0), -math.inf, live[c])
        live = ops.slice_update(live, [c, 0], row[None])
        at = ops.arange(steps, dtype="int32") == i
        rows = ops.where(at, r, rows)
        classes = ops.where(at, c, classes)
        kept = ops.where(at, best_score, kept)
        return live, counts, rows, classes, kept

    start = (
        live,
        ops.zeros([num_classes], "int32"),
        ops.zeros([steps], "int32"),
        ops.zeros([steps], "int32"),
        ops.full([steps], -math.inf),
    )
    _, _, rows, classes, kept = ops.fori_loop(0, steps, step, start)
    return rows, classes, kept


def box_voting(boxes, classes, candidate_boxes, candidate_weights, iou_threshold=0.5):
    """``keras_spp.detection.nms.box_voting`` in ``keras.ops`` (same arguments and
    formula): each of the ``[N, 4]`` boxes moves to the mean of its class's
    candidates (``[R, 4]`` or ``[R, K, 4]``) overlapping it at least
    ``iou_threshold``, weighted by ``candidate_weights [R, K]`` (negative ones count
    as 0); a box with no such candidate of positive weight stays. A class of ``-1``
    (``per_class_nms``' padding) votes as class 0; its box is padding anyway.

    >>> voted = box_voting([[0.0, 0, 10, 10]], [0], [[0.0, 0, 10, 10], [0, 0, 10, 12]], [[0.5], [0.5]])
    >>> ops.convert_to_numpy(voted).tolist()
    [[0.0, 0.0, 10.0, 11.0]]
    """
    iou_threshold = checked_iou_threshold(iou_threshold)
    candidate_boxes = ops.cast(ops.convert_to_tensor(candidate_boxes), "float32")
    candidate_weights = ops.cast(ops.convert_to_tensor(candidate_weights), "float32")
    boxes = ops.reshape(ops.cast(boxes, "float32"), [-1, 4])
    classes = ops.maximum(ops.reshape(ops.cast(classes, "int32"), [-1]), 0)
    if len(candidate_boxes.shape) == 2:
        candidate_boxes = ops.tile(candidate_boxes[:, None], [1, ops.shape(candidate_weights)[1], 1])
    mine = ops.transpose(ops.take(candidate_boxes, classes, axis=1), [1, 0, 2])  # [N, R, 4]
    weights = ops.maximum(ops.transpose(ops.take(candidate_weights, classes, axis=1)), 0.0)  # [N, R]
    overlap = iou(boxes[:, None], mine)
    weights = ops.where(overlap >= iou_threshold, weights, 0.0)
    total = ops.sum(weights, axis=1, keepdims=True)
    voted = ops.sum(weights[..., None] * mine, axis=1) / ops.maximum(total, 1e-12)
    return ops.where(total > 0.0, voted, boxes)


def _gather_boxes(boxes, rows, classes, valid):
    """The original (not stand-in) boxes of the selections; zeros where not ``valid``."""
    if len(boxes.shape) == 3:
        index = rows * boxes.shape[1] + classes
    else:
        index = rows
    flat = ops.concatenate([ops.reshape(boxes, [-1, 4]), ops.zeros([1, 4])], axis=0)
    index = ops.where(valid, index, ops.shape(flat)[0] - 1)
    return ops.take(flat, index, axis=0)


def check_settings(iou_threshold, score_threshold, max_detections, max_per_class):
    """``(iou_threshold, score_threshold, max_detections, per_class)`` checked, the
    thresholds as floats; shared with ``nms.per_class_nms`` (this module imports no
    TensorFlow, so the checks live here)."""
    iou_threshold = checked_iou_threshold(iou_threshold)
    if not is_number(score_threshold, finite=False):
        raise ValueError(f"`score_threshold` must be a number (may be -inf); got {score_threshold!r}.")
    max_detections = positive_int("max_detections", max_detections)
    per_class = max_detections if max_per_class is None else positive_int("max_per_class", max_per_class)
    return iou_threshold, float(score_threshold), max_detections, per_class


def checked_iou_threshold(value):
    if not is_number(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`iou_threshold` must be a number in [0, 1]; got {value!r}.")
    return float(value)


def _check_inputs(boxes, scores):
    boxes = ops.convert_to_tensor(boxes)
    scores = ops.convert_to_tensor(scores)
    if len(scores.shape) != 2 or scores.shape[1] is None:
        raise ValueError(
            "`scores` must be [num_boxes, num_classes] (no background column, num_classes "
            f"known); got shape {scores.shape}."
        )
    if len(boxes.shape) not in (2, 3) or boxes.shape[-1] not in (None, 4):
        raise ValueError(
            "`boxes` must be [num_boxes, 4] (shared by all classes) or "
            f"[num_boxes, num_classes, 4] as [y1, x1, y2, x2]; got shape {boxes.shape}."
        )
    rows_b, rows_s = boxes.shape[0], scores.shape[0]
    if None not in (rows_b, rows_s) and rows_b != rows_s:
        raise ValueError(f"`boxes` has {rows_b} rows but `scores` has {rows_s}; they must match.")
    if len(boxes.shape) == 3 and boxes.shape[1] not in (None, scores.shape[1]):
        raise ValueError(
            f"`boxes` has boxes for {boxes.shape[1]} classes but `scores` has "
            f"{scores.shape[1]} columns; they must match."
        )
    return ops.cast(boxes, "float32"), ops.cast(scores, "float32")
