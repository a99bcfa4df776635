"""Training an RPN head on the frozen conv5 of the detector's backbone: conv5 maps of
the training images at the RPN's scales are computed once, their anchors labelled
(``rpn.assign_anchor_targets``), and the head trained with ``model.fit``
(``rpn.RpnTrainer``) on 256 sampled anchors an image."""

import dataclasses
import logging

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_spp.detection import rpn as rpn_lib
from keras_spp.detection import scales as scales_lib
from keras_spp.detection.anchors import anchor_grid_np

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RpnTrainingConfig:
    epochs: int = 8
    learning_rate: float = 1e-3
    final_learning_rate: float = 1e-4
    targets: rpn_lib.RpnTargetConfig = rpn_lib.RpnTargetConfig()
    seed: int = 0


def rpn_records(learned, examples, load_image, config=rpn_lib.RpnTargetConfig(), desc="rpn conv5"):
    """``(records, stats)``: one ``(conv5 [h, w, C], labels, deltas)`` per training image
    and RPN scale. ``stats``: images, positives per record, and how many records had
    no anchor inside the image (they train nothing: every weight is 0)."""
    roi = learned.roi
    conv = tf.function(
        lambda image, factor: roi.backbone(roi.resized(image, factor), training=False),
        input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32), tf.TensorSpec([], tf.float32)],
    )
    records, positives, no_anchor = [], [], 0
    for example in tqdm(examples, desc=desc, unit="img"):
        try:
            image = np.asarray(load_image(example.image_path), np.float32)
        except ValueError as error:
            log.warning("RPN training skips %s: %s", example.image_id, error)
            continue
        h, w = image.shape[:2]
        factors = scales_lib.scale_factors(h, w, roi.scales, roi.max_side)
        for i in learned.scale_indices:
            factor = float(factors[i])
            conv5 = conv(tf.constant(image[None]), tf.constant(factor, tf.float32))[0].numpy().astype(np.float32)
            sh, sw = scales_lib.scaled_size(h, w, factor)
            anchors = anchor_grid_np(conv5.shape[0], conv5.shape[1], learned.anchors)
            gt = np.asarray(example.boxes, np.float32).reshape(-1, 4) * factor
            labels, deltas = rpn_lib.assign_anchor_targets(anchors, gt, sh, sw, config)
            no_anchor += int(not (labels != rpn_lib.IGNORE).any())
            positives.append(int((labels == rpn_lib.POSITIVE).sum()))
            records.append((conv5, labels, deltas))
    stats = {
        "records": len(records),
        "positives_mean": float(np.mean(positives)) if positives else 0.0,
        "records_without_positives": int(sum(p == 0 for p in positives)),
        "records_without_anchors": no_anchor,
    }
    return records, stats


def train_rpn(learned, records, config=RpnTrainingConfig(), verbose=1, callbacks=None):
    """Fits ``learned.head`` on ``records`` (``rpn_records``) for ``config.epochs``
    passes, Adam, the rate 10x lower for the last quarter; returns the History."""
    steps = len(records)
    if steps == 0:
        raise ValueError("no RPN training records (no readable training images).")
    keras.utils.set_random_seed(config.seed)
    total = steps * int(config.epochs)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [int(total * 0.75)], [config.learning_rate, config.final_learning_rate]
    )
    trainer = rpn_lib.RpnTrainer(learned.head)
    trainer.compile(optimizer=keras.optimizers.Adam(schedule), jit_compile=False)
    dataset = rpn_lib.training_dataset(records, config.targets, seed=config.seed)
    history = trainer.fit(
        dataset, epochs=int(config.epochs), steps_per_epoch=steps, verbose=verbose, callbacks=callbacks or []
    )
    # The trainer holds the dataset of every record's conv5 (GBs at 800 px): let it go.
    history.set_model(None)
    return history


def proposal_recall(proposals, examples, counts=(50, 100, 300, 1000, None), iou=0.5):
    """Recall at ``iou`` of the first ``n`` proposals of each image, for each ``n`` of
    ``counts`` (``None``: all): ``{"50": r, ..., "all": r}`` over every object."""
    from keras_spp.detection.boxes import pairwise_iou

    found = {n: 0 for n in counts}
    total = 0
    for example in examples:
        gt = np.asarray(example.boxes, np.float32).reshape(-1, 4)
        total += len(gt)
        boxes = np.asarray(proposals[example.image_id], np.float32).reshape(-1, 4)
        for n in counts:
            head = boxes if n is None else boxes[:n]
            if len(gt) and len(head):
                found[n] += int((pairwise_iou(gt, head).max(axis=1) >= iou).sum())
    return {("all" if n is None else str(n)): (found[n] / total if total else float("nan")) for n in counts}
