"""PASCAL VOC detection evaluation: per-class average precision and mAP (numpy).

Matching follows the VOC devkit (``VOCevaldet.m``) exactly:

* A class's detections over all images are visited by descending score; equal
  scores keep their input order (image by image, then row by row), as the devkit's
  stable sort keeps the order of the detection file.
* Each detection takes the ground-truth box of its class in its image with the
  largest IoU (the first one on ties), whether or not that box is already taken.
  IoU ``>= iou_threshold`` with a "difficult" box: ignored, neither true nor false
  positive. With a box already taken by a higher-scored detection: false positive
  (duplicate). Otherwise true positive. IoU below the threshold: false positive.
* Difficult boxes do not count as positives.

IoUs use the continuous box convention of ``keras_spp.data.detection_examples``,
which equals the devkit's ``+ 1`` arithmetic on VOC's integer coordinates.

With IoU 0.5, 11 recall points ``k / 10``, one all-covering area range and no
detection limit, ``COCOeval`` gives the same per-class AP as ``"voc07"`` here,
except: a detection whose best box is taken falls back to its best free box in
COCO (so the two differ when one detection overlaps two boxes of its class at IoU
``>= iou_threshold``); COCO ignores inverted detections (``x2 < x1``: negative
area, outside every area range), which are false positives here; its crowd
regions are not VOC's difficult boxes; and equal scores may be ordered otherwise.
"""

import math

import numpy as np

from keras_spp.detection.boxes import as_boxes, pairwise_iou
from keras_spp.validation import positive_int

METRICS = ("voc07", "area")

# k / 10 rounded once, so `recall >= t` is exact for recall = tp / npos (both
# correctly rounded). np.arange(0, 1.1, 0.1) (py-faster-rcnn's voc_eval) and
# np.linspace(0, 1, 11) give 0.30000000000000004, 0.6000000000000001 and
# 0.7000000000000001, and so miss recalls of exactly 0.3, 0.6 and 0.7.
_VOC07_RECALLS = np.arange(11) / 10.0


def average_precision(recall, precision, metric="voc07"):
    """Average precision of one precision/recall curve.

    ``recall`` and ``precision`` are 1-D, one point per detection in descending score
    order (so ``recall`` does not decrease), values in ``[0, 1]``; empty curves give 0.

    * ``"voc07"``: the VOC2007 devkit's 11-point interpolated AP, the mean over
      ``t = 0, 0.1, ..., 1`` of the largest precision at recall ``>= t`` (0 where
      no point reaches ``t``). The SPP-net paper reports this one.
    * ``"area"``: the VOC2010+ devkit's area under the precision envelope (the
      envelope at recall ``r`` is the largest precision at recall ``>= r``).

    >>> # 2 positives; detections: TP, FP, TP -> recall .5 .5 1, precision 1 .5 .667
    >>> r, p = [0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]
    >>> round(average_precision(r, p, "voc07"), 6), round(average_precision(r, p, "area"), 6)
    (0.848485, 0.833333)
    """
    if metric not in METRICS:
        raise ValueError(f"`metric` must be one of {', '.join(map(repr, METRICS))}; got {metric!r}.")
    recall = _curve(recall, "recall")
    precision = _curve(precision, "precision")
    if recall.shape != precision.shape:
        raise ValueError(
            f"`recall` has {recall.size} points and `precision` {precision.size}; "
            "they must have one point per detection each."
        )
    if np.any(np.diff(recall) < 0):
        raise ValueError(
            "`recall` must not decrease (points in descending score order); got "
            f"{recall[:10].tolist()}{' ...' if recall.size > 10 else ''}."
        )
    if metric == "voc07":
        ap = 0.0
        for t in _VOC07_RECALLS:
            reached = precision[recall >= t]
            ap += (reached.max() if reached.size else 0.0) / 11
        return float(ap)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def evaluate_detections(detections, ground_truths, num_classes, iou_threshold=0.5, class_names=None):
    """VOC average precision of every class, and their means.

    Args:
      detections: one ``(boxes [D, 4], scores [D], classes [D])`` per image; classes
        0-based in ``[0, num_classes)``; ``D`` may be 0.
      ground_truths: one ``(boxes [G, 4], labels [G], difficult [G])`` per image (or
        anything with those attributes, e.g. ``DetectionExample``); ``G`` may be 0.
      num_classes: the number of object classes (no background).
      iou_threshold: in ``(0, 1]``; VOC uses 0.5.
      class_names: optional ``num_classes`` names, used as the keys of the result.

    Returns:
      A dict. ``"ap_voc07"`` and ``"ap_area"`` map each class (its name, or its index)
      to AP by the two metrics of ``average_precision``; ``"map_voc07"`` and
      ``"map_area"`` are their means. A class with no positives (non-difficult
      boxes) has AP NaN and is left out of the means (NaN if no class has any).
      Per-class counts: ``"num_positives"``, ``"num_difficult"``,
      ``"num_detections"``, ``"true_positives"``, ``"false_positives"``,
      ``"ignored"`` (detections matched to difficult boxes) and ``"recall"`` (the
      recall of all detections, NaN without positives).

    The matching rules are in the module docstring.

    >>> gts = [([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0], [False, False])]
    >>> dets = [([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 29, 30]], [0.9, 0.8, 0.7], [0, 0, 0])]
    >>> result = evaluate_detections(dets, gts, num_classes=1)
    >>> result["true_positives"], result["false_positives"], round(result["map_voc07"], 6)
    ({0: 2}, {0: 1}, 0.848485)
    """
    num_classes = positive_int("num_classes", num_classes)
    keys = _check_arguments(detections, ground_truths, num_classes, iou_threshold, class_names)
    num_positives, num_difficult, classes, outcomes = _outcomes(detections, ground_truths, num_classes, iou_threshold)
    ap07, ap_area = [], []
    counts = {name: [] for name in ("num_detections", "true_positives", "false_positives", "ignored", "recall")}
    for c in range(num_classes):
        class_ap07, class_ap_area, class_counts = _class_result(outcomes[classes == c], num_positives[c])
        ap07.append(class_ap07)
        ap_area.append(class_ap_area)
        for name, value in class_counts.items():
            counts[name].append(value)
    result = {
        "ap_voc07": dict(zip(keys, ap07)),
        "ap_area": dict(zip(keys, ap_area)),
        "map_voc07": _nanmean(ap07),
        "map_area": _nanmean(ap_area),
        "num_positives": dict(zip(keys, num_positives.tolist())),
        "num_difficult": dict(zip(keys, num_difficult.tolist())),
    }
    for name, values in counts.items():
        result[name] = dict(zip(keys, values))
    return result


def _check_arguments(detections, ground_truths, num_classes, iou_threshold, class_names):
    """The result's keys: ``class_names``, else the class indices."""
    if not (isinstance(iou_threshold, (int, float, np.integer, np.floating)) and 0 < iou_threshold <= 1):
        raise ValueError(f"`iou_threshold` must be a number in (0, 1]; got {iou_threshold!r}.")
    keys = list(range(num_classes))
    if class_names is not None:
        keys = list(class_names)
        if len(keys) != num_classes:
            raise ValueError(
                f"`class_names` has {len(keys)} names but `num_classes` is {num_classes}; give one name per class."
            )
    if len(detections) != len(ground_truths):
        raise ValueError(
            f"`detections` has {len(detections)} images and `ground_truths` "
            f"{len(ground_truths)}; they must have one entry per image, in the same order."
        )
    return keys


def _outcomes(detections, ground_truths, num_classes, iou_threshold):
    """``(positives [K], difficult [K], classes [N], outcomes [N])``: per class the
    non-difficult and difficult boxes, and every detection's class and outcome (1 true
    positive, 0 false positive, -1 ignored) by descending score, stable."""
    num_positives = np.zeros(num_classes, np.int64)
    num_difficult = np.zeros(num_classes, np.int64)
    # Per image: scores, classes and outcome of its detections in input order.
    parts = [(np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int8))]
    for image, (det, gt) in enumerate(zip(detections, ground_truths)):
        d_boxes, d_scores, d_classes = _detections(det, image, num_classes)
        g_boxes, g_labels, g_difficult = _ground_truth(gt, image, num_classes)
        np.add.at(num_positives, g_labels[~g_difficult], 1)
        np.add.at(num_difficult, g_labels[g_difficult], 1)
        outcome = _match(d_boxes, d_scores, d_classes, g_boxes, g_labels, g_difficult, iou_threshold)
        parts.append((d_scores, d_classes, outcome))
    all_scores, all_classes, all_outcomes = (np.concatenate(p) for p in zip(*parts))
    # One stable sort of everything gives each class its stable order too.
    order = np.argsort(-all_scores, kind="stable")
    return num_positives, num_difficult, all_classes[order], all_outcomes[order]


def _class_result(outcome, npos):
    """``(AP voc07, AP area, {count: value})`` of one class from its detections'
    outcomes by descending score and its number of positives."""
    num_detections = len(outcome)
    # Ignored detections change neither count, so they are dropped from the curve.
    outcome = outcome[outcome >= 0]
    tp = np.cumsum(outcome == 1, dtype=np.float64)
    fp = np.cumsum(outcome == 0, dtype=np.float64)
    counts = {
        "num_detections": num_detections,
        "true_positives": int(tp[-1]) if tp.size else 0,
        "false_positives": int(fp[-1]) if fp.size else 0,
        "ignored": num_detections - len(outcome),
    }
    if npos == 0:
        return math.nan, math.nan, {**counts, "recall": math.nan}
    recall = tp / npos
    precision = tp / np.maximum(tp + fp, 1.0)
    counts["recall"] = float(recall[-1]) if recall.size else 0.0
    return average_precision(recall, precision, "voc07"), average_precision(recall, precision, "area"), counts


def format_table(result):
    """A text table of ``evaluate_detections``'s result: one row per class, AP in %.

    >>> gts = [([[0, 0, 10, 10]], [1], [False])]
    >>> dets = [([[0, 0, 10, 10]], [0.9], [1])]
    >>> print(format_table(evaluate_detections(dets, gts, 2, class_names=["cat", "dog"])))
    class  pos  diff  det  TP  FP  ign  AP07 (%)  AP area (%)
    cat      0     0    0   0   0    0         -            -
    dog      1     0    1   1   0    0     100.0        100.0
    mean                                   100.0        100.0
    """
    keys = list(result["ap_voc07"])
    header = ["class", "pos", "diff", "det", "TP", "FP", "ign", "AP07 (%)", "AP area (%)"]
    columns = ["num_positives", "num_difficult", "num_detections", "true_positives", "false_positives", "ignored"]
    rows = [
        [str(k)]
        + [str(result[col][k]) for col in columns]
        + [_percent(result["ap_voc07"][k]), _percent(result["ap_area"][k])]
        for k in keys
    ]
    rows.append(["mean"] + [""] * len(columns) + [_percent(result["map_voc07"]), _percent(result["map_area"])])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = []
    for row in [header] + rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _match(boxes, scores, classes, gt_boxes, gt_labels, gt_difficult, iou_threshold):
    """Outcome of each detection of one image, in input order. Classes do not interact,
    so one pass in score order serves all of them."""
    outcome = np.zeros(len(boxes), np.int8)
    if len(gt_boxes) == 0 or len(boxes) == 0:
        return outcome
    order = np.argsort(-scores, kind="stable")
    iou = pairwise_iou(boxes[order], gt_boxes)
    # -1: boxes of other classes are never the best, even against IoU 0.
    iou[classes[order][:, None] != gt_labels[None, :]] = -1.0
    best = np.argmax(iou, axis=1)  # the first of equal maxima, as the devkit's `>`
    hit = iou[np.arange(len(order)), best] >= iou_threshold
    taken = np.zeros(len(gt_boxes), bool)
    # Only "taken" depends on earlier detections; the loop visits just the hits.
    for d, g in zip(order[hit], best[hit]):
        if gt_difficult[g]:
            outcome[d] = -1
        elif not taken[g]:
            outcome[d] = 1
            taken[g] = True
    return outcome


def _detections(item, image, num_classes):
    try:
        boxes, scores, classes = item
    except (TypeError, ValueError):
        raise ValueError(
            f"`detections[{image}]` must be a (boxes [D, 4], scores [D], classes [D]) tuple; got {type(item).__name__}."
        ) from None
    boxes = as_boxes(boxes, f"detections[{image}] boxes")
    scores = np.asarray(scores, np.float32).reshape(-1)
    classes = _labels(classes, f"detections[{image}] classes", num_classes)
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(
            f"`detections[{image}]` has {len(boxes)} boxes, {len(scores)} scores and "
            f"{len(classes)} classes; they must have one entry per detection."
        )
    if not (np.isfinite(scores).all() and np.isfinite(boxes).all()):
        raise ValueError(f"`detections[{image}]` must hold finite boxes and scores; got NaN or infinity.")
    return boxes, scores, classes


def _ground_truth(item, image, num_classes):
    if all(hasattr(item, name) for name in ("boxes", "labels", "difficult")):
        boxes, labels, difficult = item.boxes, item.labels, item.difficult
    else:
        try:
            boxes, labels, difficult = item
        except (TypeError, ValueError):
            raise ValueError(
                f"`ground_truths[{image}]` must be a (boxes [G, 4], labels [G], difficult [G]) "
                f"tuple or a DetectionExample; got {type(item).__name__}."
            ) from None
    boxes = as_boxes(boxes, f"ground_truths[{image}] boxes")
    labels = _labels(labels, f"ground_truths[{image}] labels", num_classes)
    difficult = np.asarray(difficult).reshape(-1)
    flags = difficult.dtype == bool or (np.issubdtype(difficult.dtype, np.integer) and np.isin(difficult, (0, 1)).all())
    if difficult.size and not flags:
        raise ValueError(
            f"`ground_truths[{image}]` difficult flags must be booleans (or 0/1); got {difficult[:10].tolist()}."
        )
    difficult = difficult.astype(bool)
    if not len(boxes) == len(labels) == len(difficult):
        raise ValueError(
            f"`ground_truths[{image}]` has {len(boxes)} boxes, {len(labels)} labels and "
            f"{len(difficult)} difficult flags; they must have one entry per object."
        )
    return boxes, labels, difficult


def _labels(values, argument, num_classes):
    values = np.asarray(values).reshape(-1)
    if values.size == 0:
        return np.zeros(0, np.int64)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"`{argument}` must be integers; got dtype {values.dtype}.")
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise ValueError(
            f"`{argument}` must lie in [0, {num_classes}) (0-based, no background); got {bad[:10].tolist()}."
        )
    return values.astype(np.int64)


def _curve(values, argument):
    values = np.asarray(values, np.float64)
    if values.ndim != 1:
        raise ValueError(f"`{argument}` must be 1-D (one point per detection); got shape {values.shape}.")
    if not (np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()):
        raise ValueError(f"`{argument}` must hold numbers in [0, 1]; got {values[:10].tolist()}.")
    return values


def _nanmean(values):
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def _percent(value):
    return "-" if math.isnan(value) else f"{100 * value:.1f}"
