"""Per-class linear SVMs on fc7 features, with one round of hard negative mining
(R-CNN's and the paper's recipe).

For class ``c``: positives are the ground-truth boxes of ``c``; negatives are
windows whose IoU with every ground truth of ``c`` is below ``negative_iou`` (0.3),
less near-duplicates: a window overlapping an earlier (better-ranked) window of the
same image by more than ``duplicate_iou`` = 0.7 is dropped, class-agnostically, so
one greedy pass per image serves every class. The first SVM sees every positive
and ``initial_negatives`` random negatives per image; then every negative is scored
and those inside the margin (score > -1) join the set for a second, final fit.

Features are scaled by one factor so that their mean L2 norm is ``feature_norm``
(20, as R-CNN), which makes the regularisation ``C`` mean the same for any
backbone; the factor is folded into the returned weights, so the SVMs apply to raw
fc7 features: ``scores = fc7 @ kernel + bias``.
"""

import dataclasses

import numpy as np
import tensorflow as tf
from sklearn.svm import LinearSVC

from keras_spp.detection.boxes import iou_matrix


@dataclasses.dataclass
class SvmConfig:
    C: float = 1e-3
    positive_weight: float = 2.0
    bias_scale: float = 10.0
    negative_iou: float = 0.3
    duplicate_iou: float = 0.7
    initial_negatives: int = 20
    hard_margin: float = -1.0
    # The hardest this many per class: a weak head makes nearly every window "hard",
    # and the dual solver's time grows faster than linearly with the count.
    max_hard_negatives: int = 20000
    # Trained detectors' SVMs converge in 84-407 dual iterations (mnist-detection,
    # 20000-24000 windows a class); one on a barely trained head does not converge
    # and ran to 20000 iterations, about 250 s a class. Past this it stops with
    # liblinear's ConvergenceWarning.
    max_iter: int = 1000
    feature_norm: float = 20.0
    seed: int = 0


def first_of_duplicates(windows, duplicate_iou):
    """Bool ``[R]``: greedy in proposal order, a window is kept unless it overlaps an
    earlier kept window by more than ``duplicate_iou`` (NMS with rank as score)."""
    keep = tf.image.non_max_suppression(
        tf.constant(windows, tf.float32),
        tf.range(len(windows), 0, -1, dtype=tf.float32),
        max_output_size=len(windows),
        iou_threshold=duplicate_iou,
    )
    mask = np.zeros(len(windows), bool)
    mask[keep.numpy()] = True
    return mask


def negative_candidates(windows, gt_boxes, gt_labels, num_classes, negative_iou=0.3, duplicate_iou=0.7):
    """Bool ``[R, K]``: window ``r`` may serve as a negative of class ``k``."""
    windows = np.asarray(windows, np.float32).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels).reshape(-1)
    allowed = np.ones((len(windows), num_classes), bool)
    if len(windows) and len(gt_boxes):
        overlaps = iou_matrix(windows, gt_boxes)
        for k in np.unique(gt_labels):
            allowed[:, k] = overlaps[:, gt_labels == k].max(axis=1) < negative_iou
    if len(windows) > 1 and duplicate_iou < 1.0:
        allowed &= first_of_duplicates(windows, duplicate_iou)[:, None]
    return allowed


def train_svms(positives, negatives, num_classes, config=SvmConfig(), progress=None):
    """Fits one SVM per class.

    ``positives``: ``(features [P, D], labels [P])`` of ground-truth boxes.
    ``negatives``: a list, one entry per image, of ``(features [R, D], allowed [R, K])``
    (``negative_candidates``). Returns ``kernel [D, K]``, ``bias [K]`` and per-class
    statistics (counts of positives, initial and hard negatives).
    """
    pos_features, pos_labels = positives
    pos_features = np.asarray(pos_features, np.float32)
    pos_labels = np.asarray(pos_labels).reshape(-1)
    dim = (
        pos_features.shape[1]
        if pos_features.ndim == 2 and len(pos_features)
        else (negatives[0][0].shape[1] if negatives else 0)
    )
    scale = _feature_scale(pos_features, negatives, config.feature_norm)
    rng = np.random.default_rng(config.seed)
    kernel = np.zeros((dim, num_classes), np.float32)
    bias = np.full(num_classes, -1.0, np.float32)
    stats = []
    for k in range(num_classes):
        pos = pos_features[pos_labels == k] * scale
        initial = []
        for features, allowed in negatives:
            rows = np.flatnonzero(allowed[:, k])
            if len(rows) > config.initial_negatives:
                rows = np.sort(rng.choice(rows, config.initial_negatives, replace=False))
            initial.append(features[rows] * scale)
        neg = np.concatenate(initial) if initial else np.zeros((0, dim), np.float32)
        entry = {"positives": len(pos), "initial_negatives": len(neg), "hard_negatives": 0}
        if len(pos) == 0 or len(neg) == 0:
            # No positives: the class can never be detected by SVM scoring; say so.
            stats.append(dict(entry, skipped=True))
            if progress:
                progress.update(1)
            continue
        w, b = _fit(pos, neg, config)
        hard, hard_scores = [], []
        for features, allowed in negatives:
            candidates = features[allowed[:, k]] * scale
            if len(candidates):
                scores = candidates @ w + b
                hard.append(candidates[scores > config.hard_margin])
                hard_scores.append(scores[scores > config.hard_margin])
        hard = np.concatenate(hard) if hard else np.zeros((0, dim), np.float32)
        entry["hard_negatives_found"] = len(hard)
        if len(hard) > config.max_hard_negatives:
            hardest = np.argsort(-np.concatenate(hard_scores), kind="stable")[: config.max_hard_negatives]
            hard = hard[np.sort(hardest)]
        entry["hard_negatives"] = len(hard)
        if len(hard):
            w, b = _fit(pos, np.concatenate([neg, hard]), config)
        kernel[:, k] = w * scale
        bias[k] = b
        stats.append(entry)
        if progress:
            progress.update(1)
    return kernel, bias, stats


def _feature_scale(pos_features, negatives, target_norm):
    norms = [np.linalg.norm(pos_features, axis=1)] if len(pos_features) else []
    norms += [np.linalg.norm(f[:50], axis=1) for f, _ in negatives if len(f)]
    mean = float(np.mean(np.concatenate(norms))) if norms else 0.0
    return target_norm / mean if mean > 0 else 1.0


def _fit(pos, neg, config):
    x = np.concatenate([pos, neg]).astype(np.float32)
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    svm = LinearSVC(
        C=config.C,
        loss="hinge",
        dual=True,
        class_weight={1: config.positive_weight, 0: 1.0},
        intercept_scaling=config.bias_scale,
        max_iter=config.max_iter,
        random_state=config.seed,
    )
    svm.fit(x, y)
    return svm.coef_[0].astype(np.float32), np.float32(svm.intercept_[0])
