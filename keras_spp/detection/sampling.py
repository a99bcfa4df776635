"""Window labels and the fc fine-tuning minibatches of the paper (section 4.1).

A window is a positive of the class of its best-overlapping ground truth when that
IoU is at least ``positive_iou`` (0.5); a background negative when its best IoU is in
``negative_iou`` = ``[0.1, 0.5)``; otherwise it is not used for fine-tuning. Ground
truth boxes are windows too (IoU 1). Minibatches hold ``positive_fraction`` (25%)
positives, drawn with replacement from each pool by tf.data.
"""

import numpy as np
import tensorflow as tf

from keras_spp.detection.boxes import iou_matrix

IGNORE = -1
BACKGROUND = 0


def best_overlaps(windows, gt_boxes):
    """``(max_iou [R], gt_index [R])`` of each window against the ground truth
    (``max_iou`` 0 and ``gt_index`` -1 for an image with no objects)."""
    windows = np.asarray(windows, np.float32).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    if len(gt_boxes) == 0 or len(windows) == 0:
        return np.zeros(len(windows), np.float32), np.full(len(windows), -1, np.int64)
    iou = iou_matrix(windows, gt_boxes)
    return iou.max(axis=1).astype(np.float32), iou.argmax(axis=1)


def check_iou_thresholds(positive_iou, negative_iou):
    """ValueError unless ``0 <= negative_iou[0] <= negative_iou[1] <= positive_iou <= 1``."""
    low, high = negative_iou
    if not 0.0 <= low <= high <= positive_iou <= 1.0:
        raise ValueError(
            f"need 0 <= negative_iou[0] <= negative_iou[1] <= positive_iou <= 1; got "
            f"negative_iou={negative_iou}, positive_iou={positive_iou}."
        )


def window_labels(max_iou, gt_index, gt_labels, positive_iou=0.5, negative_iou=(0.1, 0.5)):
    """Fine-tuning targets: ``class + 1`` for positives, 0 background, -1 unused."""
    check_iou_thresholds(positive_iou, negative_iou)
    low, high = negative_iou
    gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
    labels = np.full(len(max_iou), IGNORE, np.int64)
    labels[(max_iou >= low) & (max_iou < high)] = BACKGROUND
    positive = max_iou >= positive_iou
    labels[positive] = gt_labels[gt_index[positive]] + 1
    return labels


def fine_tuning_dataset(features, labels, batch_size=128, positive_fraction=0.25, seed=0):
    """An endless ``tf.data`` stream of ``(features, labels)`` batches, each holding
    ``round(positive_fraction * batch_size)`` positives (the paper: 32 of 128), the rest
    background, each drawn uniformly with replacement from its pool.

    ``features`` ``[N, D]`` and ``labels`` ``[N]`` as ``window_labels`` gives them
    (rows labelled -1 are never drawn). Batch ``i`` depends only on ``seed`` and ``i``.
    """
    features = np.asarray(features)
    labels = np.asarray(labels, np.int64)
    if not 0.0 < positive_fraction < 1.0:
        raise ValueError(f"`positive_fraction` must be in (0, 1); got {positive_fraction}.")
    batch_size = int(batch_size)
    if batch_size < 2:
        raise ValueError(f"`batch_size` must be >= 2 (a positive and a negative); got {batch_size}.")
    positives = np.flatnonzero(labels > 0)
    negatives = np.flatnonzero(labels == BACKGROUND)
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError(
            f"fine-tuning needs positive and background windows; got {len(positives)} positives "
            f"and {len(negatives)} negatives. Check the proposals cover the objects (IoU >= 0.5)."
        )
    num_positives = min(max(int(round(batch_size * positive_fraction)), 1), batch_size - 1)
    # A whole batch of indices per step from a stateless generator: drawing element by
    # element through tf.data (sample_from_datasets over shuffled pools) cost 10.8 ms a
    # batch on 2 CPU cores, next to a 17 ms train step. The features sit in a variable,
    # which the tf.data function captures by reference (a constant of that size would be
    # copied into its graph), on the CPU where tf.data runs, also when a GPU is visible.
    with tf.device("/CPU:0"):
        features_t = tf.Variable(features, trainable=False)
    positives_t = tf.constant(positives)
    negatives_t = tf.constant(negatives)
    labels_t = tf.constant(labels)

    def draw(pool, count, step, stream):
        where = tf.random.stateless_uniform(
            [count], tf.stack([tf.constant(seed, tf.int64), 2 * step + stream]), 0, tf.size(pool, tf.int64), tf.int64
        )
        return tf.gather(pool, where)

    def batch(step):
        rows = tf.concat(
            [draw(positives_t, num_positives, step, 0), draw(negatives_t, batch_size - num_positives, step, 1)], 0
        )
        return tf.cast(tf.gather(features_t, rows), tf.float32), tf.gather(labels_t, rows)

    return tf.data.Dataset.counter().map(batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
