"""A slow, obviously correct per-class greedy NMS in plain numpy loops (no
TensorFlow, so the tests on JAX and PyTorch use it too), and the inputs that try
its corners: ties, identical, nested, touching, inverted and degenerate boxes, NaN
scores, R = 0 and K = 0."""

import numpy as np


def reference_iou(a, b):
    """TensorFlow's float32 formula, with inverted boxes as zero-area ones."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    area_a = max(a[2] - a[0], np.float32(0)) * max(a[3] - a[1], np.float32(0))
    area_b = max(b[2] - b[0], np.float32(0)) * max(b[3] - b[1], np.float32(0))
    if area_a <= 0 or area_b <= 0:
        return np.float32(0)
    ih = max(min(a[2], b[2]) - max(a[0], b[0]), np.float32(0))
    iw = max(min(a[3], b[3]) - max(a[1], b[1]), np.float32(0))
    inter = ih * iw
    return inter / (area_a + area_b - inter)


def reference_nms(boxes, scores, iou_threshold, score_threshold, max_detections, max_per_class=None):
    """Greedy NMS per class: candidates by (score descending, row); then the best
    ``max_detections`` over classes by (score descending, class, row)."""
    boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
    rows, classes = scores.shape
    per_class = max_per_class or max_detections
    found = []
    for k in range(classes):
        box = (lambda r: boxes[r]) if boxes.ndim == 2 else (lambda r, k=k: boxes[r, k])
        passing = [r for r in range(rows) if scores[r, k] > np.float32(score_threshold)]
        order = sorted(passing, key=lambda r, k=k: (-scores[r, k], r))
        kept = []
        for r in order:
            if len(kept) == per_class:
                break
            if all(reference_iou(box(r), box(q)) <= np.float32(iou_threshold) for q in kept):
                kept.append(r)
        found += [(-scores[r, k], k, r, box(r)) for r in kept]
    found.sort(key=lambda t: t[:3])
    found = found[:max_detections]
    return (
        np.array([t[3] for t in found], np.float32).reshape(-1, 4),
        np.array([-t[0] for t in found], np.float32),
        np.array([t[1] for t in found], np.int32),
    )


def problem(seed, max_rows=14, max_classes=4):
    """``(boxes, scores)``: boxes on a coarse grid (identical, nested, touching,
    inverted, zero-area) or anywhere, shared ``[R, 4]`` or per class ``[R, K, 4]``;
    scores from a few values (ties), anywhere, or with NaN; R = 0 and K = 0 included."""
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(0, max_rows + 1))
    classes = int(rng.integers(0, max_classes + 1))
    shape = (rows, classes, 4) if rng.random() < 0.5 else (rows, 4)
    grid = int(rng.choice([2, 4, 50]))
    boxes = rng.integers(0, grid, size=shape).astype(np.float32) * np.float32(30.0 / grid)
    if rng.random() < 0.5:
        boxes[..., 2:] = boxes[..., :2] + np.abs(boxes[..., 2:] - boxes[..., :2])
    if rng.random() < 0.3:
        boxes = rng.uniform(0, 100, size=shape).astype(np.float32)
        boxes[..., 2:] += boxes[..., :2]
    if rng.random() < 0.5 and rows > 1:
        boxes[1] = boxes[0]
    if rng.random() < 0.5:
        scores = rng.choice([-0.5, 0.0, 0.25, 0.5, 0.9], size=(rows, classes)).astype(np.float32)
    else:
        scores = rng.uniform(-1, 1, size=(rows, classes)).astype(np.float32)
    if rng.random() < 0.2:
        scores[rng.random(scores.shape) < 0.3] = np.nan
    return boxes, scores


def settings(seed):
    """``(iou_threshold, score_threshold, max_detections, max_per_class)`` from corners."""
    rng = np.random.default_rng(seed + 1)
    return (
        float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0])),
        float(rng.choice([-np.inf, -0.6, 0.0, 0.25, 2.0])),
        int(rng.choice([1, 3, 100])),
        [None, 1, 2][int(rng.integers(0, 3))],
    )
