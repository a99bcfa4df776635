import contextlib
import doctest
import io
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from keras_spp.data.detection_examples import DetectionExample
from keras_spp.detection import evaluation
from keras_spp.detection.evaluation import average_precision, evaluate_detections, format_table


def det(*rows):
    """Detections of one image from (y1, x1, y2, x2, score, class) rows."""
    rows = np.asarray(rows, np.float64).reshape(-1, 6)
    return rows[:, :4].astype(np.float32), rows[:, 4].astype(np.float32), rows[:, 5].astype(np.int32)


def gt(*rows):
    """Ground truth of one image from (y1, x1, y2, x2, label, difficult) rows."""
    rows = np.asarray(rows, np.float64).reshape(-1, 6)
    return rows[:, :4].astype(np.float32), rows[:, 4].astype(np.int32), rows[:, 5].astype(bool)


# ---------------------------------------------------------------- average_precision


def exact_ap(outcomes, npos):
    """Both APs with rational arithmetic from a TP (1) / FP (0) sequence in score order."""
    tp = fp = 0
    rec, prec = [], []
    for o in outcomes:
        tp, fp = tp + o, fp + 1 - o
        rec.append(Fraction(tp, npos))
        prec.append(Fraction(tp, tp + fp))
    voc07 = sum(max([p for r, p in zip(rec, prec) if r >= Fraction(k, 10)], default=0) for k in range(11)) / 11
    # Area: precision envelope at each recall step, a direct reading of VOCap.m.
    area = Fraction(0)
    previous = Fraction(0)
    for i, r in enumerate(rec):
        if r != previous:
            area += (r - previous) * max(prec[i:])
            previous = r
    return voc07, area


def test_hand_computed_curve():
    # npos = 3, detections by score: TP, FP, FP (duplicate), TP, FP.
    #   recall    1/3  1/3  1/3  2/3  2/3
    #   precision 1    1/2  1/3  1/2  2/5
    # voc07: t = 0, .1, .2, .3 -> 1 (4 points); t = .4, .5, .6 -> max(1/2, 2/5) = 1/2
    #   (3 points); t = .7 .. 1 -> no point, 0. AP = (4 + 3/2) / 11 = 1/2.
    # area: envelope 1 on (0, 1/3], 1/2 on (1/3, 2/3], 0 beyond: 1/3 + 1/6 = 1/2.
    rec = [1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3]
    prec = [1, 1 / 2, 1 / 3, 1 / 2, 2 / 5]
    assert average_precision(rec, prec, "voc07") == pytest.approx(1 / 2, abs=1e-15)
    assert average_precision(rec, prec, "area") == pytest.approx(1 / 2, abs=1e-15)
    # npos = 2: TP, FP, TP -> recall 1/2 1/2 1, precision 1 1/2 2/3.
    # voc07: 6 points (t <= .5) at 1, 5 points at 2/3: (6 + 10/3) / 11 = 28/33.
    # area: 1/2 * 1 + 1/2 * 2/3 = 5/6.
    assert average_precision([0.5, 0.5, 1], [1, 0.5, 2 / 3], "voc07") == pytest.approx(28 / 33, abs=1e-15)
    assert average_precision([0.5, 0.5, 1], [1, 0.5, 2 / 3], "area") == pytest.approx(5 / 6, abs=1e-15)


def test_recall_of_exactly_three_tenths_reaches_the_point_03():
    # 3 of 10 positives found, no false positive: the points 0, .1, .2 and .3 have
    # precision 1, so AP = 4/11. np.arange(0, 1.1, 0.1) (py-faster-rcnn) has
    # 0.30000000000000004 > 3/10 and would give 3/11.
    assert average_precision([0.1, 0.2, 3 / 10], [1.0, 1.0, 1.0]) == pytest.approx(4 / 11, abs=1e-15)
    assert average_precision([0.1, 0.2, 0.3], [1.0, 1.0, 1.0], "area") == pytest.approx(0.3, abs=1e-15)


def test_empty_and_perfect_curves():
    assert average_precision([], [], "voc07") == 0.0
    assert average_precision([], [], "area") == 0.0
    assert average_precision([0.5, 1.0], [1.0, 1.0], "voc07") == pytest.approx(1.0, abs=1e-15)
    assert average_precision([0.5, 1.0], [1.0, 1.0], "area") == 1.0


@given(st.lists(st.integers(0, 1), max_size=30), st.integers(0, 5))
def test_matches_exact_rational_computation(outcomes, missed):
    npos = sum(outcomes) + missed
    if npos == 0:
        return
    tp = np.cumsum(outcomes, dtype=np.float64)
    fp = np.cumsum(1 - np.asarray(outcomes, np.int64), dtype=np.float64)
    rec, prec = tp / npos, tp / np.maximum(tp + fp, 1)
    voc07, area = exact_ap(outcomes, npos)
    assert average_precision(rec, prec, "voc07") == pytest.approx(float(voc07), abs=1e-12)
    assert average_precision(rec, prec, "area") == pytest.approx(float(area), abs=1e-12)


@pytest.mark.parametrize(
    "recall, precision, metric, match",
    [
        ([0.5], [1.0], "voc12", "`metric` must be one of 'voc07', 'area'"),
        ([0.5, 1.0], [1.0], "voc07", "`recall` has 2 points and `precision` 1"),
        ([[0.5]], [[1.0]], "voc07", "`recall` must be 1-D"),
        ([0.5, 0.4], [1.0, 1.0], "area", "`recall` must not decrease"),
        ([0.5], [float("nan")], "area", r"`precision` must hold numbers in \[0, 1\]"),
        ([1.5], [1.0], "area", r"`recall` must hold numbers in \[0, 1\]"),
    ],
)
def test_average_precision_rejects_bad_input(recall, precision, metric, match):
    with pytest.raises(ValueError, match=match):
        average_precision(recall, precision, metric)


# ---------------------------------------------------------------- evaluate_detections


def test_hand_computed_dataset_with_difficult_and_duplicates():
    ground_truths = [
        gt([0, 0, 10, 10, 0, 0], [50, 50, 60, 60, 0, 1]),  # g0, g1 (difficult)
        gt([0, 0, 10, 10, 0, 0], [30, 30, 40, 40, 0, 0]),  # g2, g3
    ]
    detections = [
        det(
            [50, 50, 60, 60, 0.95, 0],  # a: difficult g1 -> ignored
            [0, 0, 10, 10, 0.7, 0],  # b: g0 -> TP
            [0, 0, 9, 10, 0.3, 0],  # c: g0 again -> FP (duplicate)
        ),
        det(
            [0, 0, 10, 10, 0.9, 0],  # d: g2 -> TP
            [80, 80, 90, 90, 0.8, 0],  # e: nothing -> FP
            [30, 30, 40, 41, 0.6, 0],  # f: g3 (IoU 10/11) -> TP
        ),
    ]
    # By score: a (ignored), d TP, e FP, b TP, f TP, c FP; npos = 3.
    #   recall    1/3  1/3  2/3  1    1
    #   precision 1    1/2  2/3  3/4  3/5
    # voc07: t <= .3 -> 1 (4 points); t = .4 .. .6 -> 3/4 (3 points); t = .7 .. 1 ->
    #   3/4 (4 points): (4 + 21/4) / 11 = 37/44.
    # area: envelope 1, 3/4, 3/4 over the steps 1/3, 1/3, 1/3: 1/3 + 1/4 + 1/4 = 5/6.
    result = evaluate_detections(detections, ground_truths, num_classes=2, class_names=["car", "cat"])
    assert result["ap_voc07"]["car"] == pytest.approx(37 / 44, abs=1e-15)
    assert result["ap_area"]["car"] == pytest.approx(5 / 6, abs=1e-15)
    assert math.isnan(result["ap_voc07"]["cat"]) and math.isnan(result["ap_area"]["cat"])
    assert result["map_voc07"] == result["ap_voc07"]["car"] and result["map_area"] == result["ap_area"]["car"]
    counts = {k: result[k]["car"] for k in result if not k.startswith(("ap_", "map_"))}
    assert counts == {
        "num_positives": 3,
        "num_difficult": 1,
        "num_detections": 6,
        "true_positives": 3,
        "false_positives": 2,
        "ignored": 1,
        "recall": 1.0,
    }


def test_best_box_decides_even_if_taken_or_difficult():
    g = gt([0, 0, 10, 10, 0, 0], [0, 1, 10, 11, 0, 0])  # IoU between them 90/110
    # Second detection: IoU 100/105 with g0 (taken) and 95/110 with g1 (free). The
    # devkit takes the best box, so it is a duplicate; COCOeval would match g1.
    d = det([0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10.5, 0.8, 0])
    result = evaluate_detections([d], [g], 1)
    assert (result["true_positives"][0], result["false_positives"][0]) == (1, 1)
    # A difficult box that overlaps more hides a normal one: ignored, not TP.
    g = gt([0, 0, 10, 10, 0, 1], [0, 1, 10, 11, 0, 0])
    result = evaluate_detections([det([0, 0, 10, 10, 0.9, 0])], [g], 1)
    assert (result["true_positives"][0], result["false_positives"][0], result["ignored"][0]) == (0, 0, 1)
    assert result["ap_voc07"][0] == 0.0


def test_iou_threshold_is_inclusive_and_in_voc_pixels():
    # VOC boxes 1..10 and 1..5 (inclusive): 50 of 100 pixels, IoU exactly 0.5.
    g = gt([0, 0, 10, 10, 0, 0])
    assert evaluate_detections([det([0, 0, 10, 5, 0.5, 0])], [g], 1)["true_positives"][0] == 1
    assert evaluate_detections([det([0, 0, 10, 4.9, 0.5, 0])], [g], 1)["true_positives"][0] == 0
    assert evaluate_detections([det([0, 0, 10, 5, 0.5, 0])], [g], 1, iou_threshold=0.51)["true_positives"][0] == 0


def test_equal_scores_keep_image_order():
    # npos = 1; one FP in image 0 and one TP in image 1, same score.
    ground_truths = [gt(), gt([0, 0, 10, 10, 0, 0])]
    detections = [det([0, 0, 10, 10, 0.5, 0]), det([0, 0, 10, 10, 0.5, 0])]
    # FP then TP: recall 0, 1; precision 0, 1/2 -> every point 1/2.
    assert evaluate_detections(detections, ground_truths, 1)["ap_voc07"][0] == pytest.approx(0.5)
    # TP then FP: recall 1, 1; precision 1, 1/2 -> every point 1.
    assert evaluate_detections(detections[::-1], ground_truths[::-1], 1)["ap_voc07"][0] == pytest.approx(1.0)


def test_empty_images_detections_and_datasets():
    empty_det, empty_gt = det(), gt()
    result = evaluate_detections([], [], 3)
    assert all(math.isnan(v) for v in result["ap_voc07"].values()) and math.isnan(result["map_voc07"])
    assert math.isnan(result["map_area"]) and result["num_detections"] == {0: 0, 1: 0, 2: 0}
    # Positives but no detections: AP 0. Detections but no positives: NaN, all FP.
    result = evaluate_detections([empty_det, det([0, 0, 5, 5, 0.5, 1])], [gt([0, 0, 5, 5, 0, 0]), empty_gt], 2)
    assert result["ap_voc07"][0] == 0.0 and result["ap_area"][0] == 0.0
    assert math.isnan(result["ap_voc07"][1]) and result["false_positives"][1] == 1
    assert result["map_voc07"] == 0.0 and result["recall"][0] == 0.0
    # Empty arrays of any accepted shape.
    result = evaluate_detections([([], [], [])], [([], [], [])], 1)
    assert math.isnan(result["ap_voc07"][0])
    # A class whose only boxes are difficult has no positives.
    result = evaluate_detections([det([0, 0, 5, 5, 0.5, 0])], [gt([0, 0, 5, 5, 0, 1])], 1)
    assert math.isnan(result["ap_voc07"][0]) and result["ignored"][0] == 1


def test_inverted_detection_boxes_are_false_positives():
    result = evaluate_detections([det([10, 10, 0, 0, 0.9, 0], [0, 0, 10, 10, 0.5, 0])], [gt([0, 0, 10, 10, 0, 0])], 1)
    assert (result["true_positives"][0], result["false_positives"][0]) == (1, 1)
    assert result["ap_voc07"][0] == pytest.approx(1 / 2)  # FP then TP: precision 1/2 at recall 1


def test_detection_examples_as_ground_truth():
    example = DetectionExample("000001", "x.jpg", 20, 20, [[0, 0, 10, 10]], [1], [False])
    result = evaluate_detections([det([0, 0, 10, 10, 0.9, 1])], [example], 2)
    assert result["ap_voc07"][1] == pytest.approx(1.0) and math.isnan(result["ap_voc07"][0])


def devkit_evaluate(detections, ground_truths, cls, threshold=0.5):
    """VOCevaldet.m line by line for one class, on our box convention."""
    ids, confidence, bb = [], [], []
    for image, (boxes, scores, classes) in enumerate(detections):
        for b, s, c in zip(boxes, scores, classes):
            if c == cls:
                ids.append(image)
                confidence.append(float(s))
                bb.append([float(v) for v in b])
    npos = 0
    gt_boxes, gt_diff, gt_det = [], [], []
    for boxes, labels, difficult in ground_truths:
        mine = [i for i, label in enumerate(labels) if label == cls]
        gt_boxes.append([[float(v) for v in boxes[i]] for i in mine])
        gt_diff.append([bool(difficult[i]) for i in mine])
        gt_det.append([False] * len(mine))
        npos += sum(not difficult[i] for i in mine)
    order = sorted(range(len(confidence)), key=lambda d: -confidence[d])  # stable
    tp, fp = [0] * len(order), [0] * len(order)
    for d, index in enumerate(order):
        i, box = ids[index], bb[index]
        ovmax, jmax = -math.inf, -1
        for j, g in enumerate(gt_boxes[i]):
            ih = min(box[2], g[2]) - max(box[0], g[0])
            iw = min(box[3], g[3]) - max(box[1], g[1])
            if iw > 0 and ih > 0:
                ua = (box[2] - box[0]) * (box[3] - box[1]) + (g[2] - g[0]) * (g[3] - g[1]) - iw * ih
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= threshold:
            if not gt_diff[i][jmax]:
                if not gt_det[i][jmax]:
                    tp[d] = 1
                    gt_det[i][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    return tp, fp, npos


def random_dataset(seed, num_classes=3, difficult=True, ties=True):
    rng = np.random.default_rng(seed)
    detections, ground_truths = [], []
    for _ in range(rng.integers(0, 7)):
        g = rng.integers(0, 6)
        corner = rng.integers(0, 80, size=(g, 2))
        size = rng.integers(4, 40, size=(g, 2))
        boxes = np.concatenate([corner, corner + size], 1).astype(np.float32)
        labels = rng.integers(0, num_classes, g).astype(np.int32)
        flags = (rng.uniform(size=g) < 0.2) if difficult else np.zeros(g, bool)
        ground_truths.append((boxes, labels, flags))
        # Jittered copies of the objects (near the IoU threshold, duplicates) and clutter.
        copies = rng.integers(0, 3, g)
        d_boxes = np.repeat(boxes, copies, 0) + rng.normal(scale=3.0, size=(copies.sum(), 4))
        d_classes = np.repeat(labels, copies)
        clutter = rng.integers(0, 4)
        corner = rng.uniform(0, 80, size=(clutter, 2))
        d_boxes = np.concatenate([d_boxes, np.concatenate([corner, corner + rng.uniform(2, 40, (clutter, 2))], 1)])
        d_classes = np.concatenate([d_classes, rng.integers(0, num_classes, clutter)])
        swap = rng.uniform(size=len(d_classes)) < 0.1
        d_classes[swap] = rng.integers(0, num_classes, swap.sum())
        if ties:
            scores = rng.choice([0.2, 0.5, 0.7], size=len(d_classes))
        else:
            scores = rng.uniform(size=len(d_classes))
        detections.append((d_boxes.astype(np.float32), scores.astype(np.float32), d_classes.astype(np.int32)))
    return detections, ground_truths


@given(seed=st.integers(0, 2**31), ties=st.booleans(), threshold=st.sampled_from([0.5, 0.3, 0.7]))
def test_matches_a_line_by_line_port_of_the_devkit(seed, ties, threshold):
    detections, ground_truths = random_dataset(seed, ties=ties)
    result = evaluate_detections(detections, ground_truths, 3, iou_threshold=threshold)
    for c in range(3):
        tp, fp, npos = devkit_evaluate(detections, ground_truths, c, threshold)
        assert result["true_positives"][c] == sum(tp) and result["false_positives"][c] == sum(fp)
        assert result["num_positives"][c] == npos
        if npos == 0:
            assert math.isnan(result["ap_voc07"][c]) and math.isnan(result["ap_area"][c])
            continue
        # Ignored detections (tp = fp = 0) do not move the curve.
        outcomes = [t for t, f in zip(tp, fp) if t or f]
        voc07, area = exact_ap(outcomes, npos)
        assert result["ap_voc07"][c] == pytest.approx(float(voc07), abs=1e-12)
        assert result["ap_area"][c] == pytest.approx(float(area), abs=1e-12)


# ---------------------------------------------------------------- against pycocotools


def coco_voc07(detections, ground_truths, num_classes, rec_thrs):
    """COCOeval's per-class AP with VOC07's conventions: IoU 0.5, 11 recall points,
    one area range covering everything, no detection limit."""
    images = [{"id": i + 1} for i in range(len(ground_truths))]
    annotations = []
    for i, (boxes, labels, _) in enumerate(ground_truths):
        for (y1, x1, y2, x2), label in zip(boxes.astype(np.float64), labels):
            annotations.append(
                {
                    "id": len(annotations) + 1,  # 0 would read as "unmatched" in COCOeval
                    "image_id": i + 1,
                    "category_id": int(label) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    results = [
        {"image_id": i + 1, "category_id": int(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)}
        for i, (boxes, scores, classes) in enumerate(detections)
        for (y1, x1, y2, x2), s, c in zip(boxes.astype(np.float64), scores, classes)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        categories = [{"id": c + 1} for c in range(num_classes)]
        coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.params.iouThrs = np.array([0.5])
        evaluator.params.recThrs = rec_thrs
        evaluator.params.maxDets = [10_000]
        evaluator.params.areaRng = [[0, 1e10]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][0, :, :, 0, 0]  # [recall points, classes]
    return [float(p.mean()) if (p > -1).all() else math.nan for p in precision.T]


def comparable(detections, ground_truths, threshold=0.5):
    """Removes the detections where our (the devkit's) conventions and COCOeval's differ:

    * IoU >= threshold with two boxes of its class: the devkit takes the best box even
      if it is taken (then a duplicate, FP), COCOeval the best free box;
    * an inverted box (y2 < y1 or x2 < x1): a false positive for the devkit and us,
      but its negative COCO area falls outside every area range, so COCOeval ignores
      it.
    """
    from keras_spp.detection.boxes import pairwise_iou

    kept, dropped = [], 0
    for (boxes, scores, classes), (g_boxes, labels, _) in zip(detections, ground_truths):
        iou = pairwise_iou(boxes, g_boxes) * (classes[:, None] == labels[None, :])
        ok = ((iou >= threshold).sum(1) < 2) & (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
        dropped += int((~ok).sum())
        kept.append((boxes[ok], scores[ok], classes[ok]))
    return kept, dropped


@pytest.mark.parametrize("seed", range(30))
def test_voc07_equals_cocoeval_where_the_conventions_coincide(seed):
    # No difficult boxes (COCO's crowd regions are not the same thing), distinct scores
    # (tie order is a convention of each implementation), and none of the detections
    # that `comparable` removes.
    detections, ground_truths = random_dataset(1000 + seed, difficult=False, ties=False)
    detections, _ = comparable(detections, ground_truths)
    ours = evaluate_detections(detections, ground_truths, 3)["ap_voc07"]
    if not sum(len(s) for _, s, _ in detections):  # COCO.loadRes cannot take []
        positives = evaluate_detections(detections, ground_truths, 3)["num_positives"]
        assert all(ours[c] == 0 if positives[c] else math.isnan(ours[c]) for c in range(3))
        return
    scores = np.concatenate([s for _, s, _ in detections])
    assert len(np.unique(scores)) == len(scores)
    # k / 10 as our thresholds; np.linspace(0, 1, 11) differs at .3, .6 and .7 (see below).
    coco = coco_voc07(detections, ground_truths, 3, np.arange(11) / 10)
    np.testing.assert_allclose([ours[c] for c in range(3)], coco, atol=1e-6, equal_nan=True)


def test_random_datasets_exercise_the_comparison():
    datasets = [random_dataset(1000 + seed, difficult=False, ties=False) for seed in range(30)]
    dropped = sum(comparable(*d)[1] for d in datasets)
    aps = [evaluate_detections(comparable(*d)[0], d[1], 3)["ap_voc07"] for d in datasets]
    values = [v for ap in aps for v in ap.values() if not math.isnan(v)]
    assert len(values) > 40 and 0 < np.mean(values) < 1 and len(set(np.round(values, 6))) > 20
    assert dropped < 0.05 * sum(len(s) for d in datasets for _, s, _ in d[0])


def test_cocoeval_with_linspace_thresholds_misses_a_recall_of_exactly_0_3():
    # 10 objects, 3 found first, then 7 false positives: recall reaches exactly 3/10.
    ground_truths = [gt(*[[20 * i, 0, 20 * i + 10, 10, 0, 0] for i in range(10)])]
    rows = [[20 * i, 0, 20 * i + 10, 10, 1 - i / 100, 0] for i in range(3)]
    rows += [[500 + 20 * i, 0, 510 + 20 * i, 10, 0.5 - i / 100, 0] for i in range(7)]
    detections = [det(*rows)]
    ours = evaluate_detections(detections, ground_truths, 1)["ap_voc07"][0]
    assert ours == pytest.approx(4 / 11)
    assert coco_voc07(detections, ground_truths, 1, np.arange(11) / 10)[0] == pytest.approx(4 / 11)
    assert coco_voc07(detections, ground_truths, 1, np.linspace(0, 1, 11))[0] == pytest.approx(3 / 11)


# ---------------------------------------------------------------- validation and table


@pytest.mark.parametrize(
    "detections, ground_truths, kwargs, match",
    [
        ([det()], [], {}, "`detections` has 1 images and `ground_truths` 0"),
        ([det()], [gt()], {"num_classes": 0}, "`num_classes` must be a positive integer"),
        ([det()], [gt()], {"iou_threshold": 0.0}, r"`iou_threshold` must be a number in \(0, 1\]"),
        ([det()], [gt()], {"class_names": ["a"]}, "`class_names` has 1 names but `num_classes` is 2"),
        ([det([0, 0, 1, 1, 0.5, 2])], [gt()], {}, r"`detections\[0\] classes` must lie in \[0, 2\)"),
        ([det()], [gt([0, 0, 1, 1, -1, 0])], {}, r"`ground_truths\[0\] labels` must lie in \[0, 2\)"),
        ([det([0, 0, 1, 1, np.nan, 0])], [gt()], {}, "finite boxes and scores"),
        ([(np.zeros((1, 4)), [0.5, 0.4], [0])], [gt()], {}, "1 boxes, 2 scores and 1 classes"),
        ([(np.zeros((1, 4)), [0.5], [0.0])], [gt()], {}, "classes` must be integers"),
        ([(np.zeros((1, 4)), [0.5])], [gt()], {}, r"`detections\[0\]` must be a \(boxes"),
        ([det()], [(np.zeros((1, 4)), [0], [2])], {}, "difficult flags must be booleans"),
        ([det()], [(np.zeros((1, 4)), [0, 1], [False])], {}, "1 boxes, 2 labels and 1 difficult"),
        ([det()], [5], {}, r"`ground_truths\[0\]` must be a \(boxes"),
        ([(np.zeros((1, 3)), [0.5], [0])], [gt()], {}, r"`detections\[0\] boxes` must be \[num_boxes, 4\]"),
    ],
)
def test_evaluate_rejects_bad_input(detections, ground_truths, kwargs, match):
    kwargs = {"num_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        evaluate_detections(detections, ground_truths, **kwargs)


def test_format_table_lists_every_class_and_the_means():
    detections, ground_truths = random_dataset(7)
    result = evaluate_detections(detections, ground_truths, 3, class_names=["aeroplane", "bicycle", "bird"])
    lines = format_table(result).splitlines()
    assert lines[0].split()[:2] == ["class", "pos"] and len(lines) == 5
    assert [line.split()[0] for line in lines[1:]] == ["aeroplane", "bicycle", "bird", "mean"]
    assert lines[-1].split()[-1] == f"{100 * result['map_area']:.1f}"
    assert len({len(line) for line in lines[:-1]}) == 1  # aligned columns


def test_docstring_examples():
    result = doctest.testmod(evaluation)
    assert result.failed == 0 and result.attempted > 0
