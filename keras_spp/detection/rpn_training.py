"""Training an RPN head on the frozen conv5 of the detector's backbone: conv5 maps of
the training images at the RPN's scales are computed once into on-disk shards (one
per image and scale, float16, written aside then renamed: a killed run resumes from
the shards it finished), their anchors labelled (``rpn.assign_anchor_targets``), and
the head trained with ``model.fit`` (``rpn.RpnTrainer``) on 256 sampled anchors an
image, streaming the shards: memory holds a few images' maps, whatever their number.
"""

import dataclasses
import hashlib
import logging
import math
import os
import zipfile

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_spp.detection import rpn as rpn_lib
from keras_spp.detection import scales as scales_lib
from keras_spp.detection.anchors import anchor_grid_np
from keras_spp.detection.training import weights_fingerprint
from keras_spp.detection.training_checks import RaiseOnNonFiniteLoss, warn_if_at_chance
from keras_spp.detection.window_cache import WindowFeatureCache, save_npz_aside

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RpnTrainingConfig:
    """``steps``: images (one a step) the head trains on, whatever the data set's
    size: a small data set is seen many times, a large one once or less."""

    steps: int = 6000
    learning_rate: float = 1e-3
    final_learning_rate: float = 1e-4
    targets: rpn_lib.RpnTargetConfig = rpn_lib.RpnTargetConfig()
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise ValueError(f"`steps` must be a positive integer; got {self.steps!r}.")


@dataclasses.dataclass
class RpnRecord:
    """One training image at one RPN scale, its conv5 and anchor targets in ``path``."""

    image_id: str
    path: str
    positives: int

    def arrays(self):
        with np.load(self.path) as shard:
            return shard["conv5"].astype(np.float32), shard["labels"], shard["deltas"]


def rpn_records(learned, examples, load_image, config=rpn_lib.RpnTargetConfig(), desc="rpn conv5", cache_dir=None):
    """``(records, stats)``: one ``RpnRecord`` per training image and RPN scale, its
    conv5 ``[h, w, C]`` (float16), anchor labels and deltas in a shard under
    ``cache_dir`` (``None``: a temporary folder). ``stats``: images, positives per
    record, and how many records had no anchor inside the image (they train nothing:
    every weight is 0)."""
    roi = learned.roi
    conv = tf.function(
        lambda image, factor: roi.backbone(roi.resized(image, factor), training=False),
        input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32), tf.TensorSpec([], tf.float32)],
    )
    cache = WindowFeatureCache(cache_dir, _cache_key(learned, config))
    records, no_anchor = [], 0
    for example in tqdm(examples, desc=desc, unit="img"):
        image = None
        for i in learned.scale_indices:
            path = cache.shard_path(example)[: -len(".npz")] + f"-s{i}.npz"
            labels = _load_labels(path, cache.key)
            if labels is None:
                if image is None:
                    try:
                        image = np.asarray(load_image(example.image_path), np.float32)
                    except (ValueError, OSError) as error:
                        log.warning("RPN training skips %s: %s", example.image_id, error)
                        break
                labels = _write_record(path, cache.key, conv, image, example, learned, i, config)
            no_anchor += int(not (labels != rpn_lib.IGNORE).any())
            records.append(RpnRecord(example.image_id, path, int((labels == rpn_lib.POSITIVE).sum())))
    positives = [r.positives for r in records]
    stats = {
        "records": len(records),
        "positives_mean": float(np.mean(positives)) if positives else 0.0,
        "records_without_positives": int(sum(p == 0 for p in positives)),
        "records_without_anchors": no_anchor,
        "disk_bytes": sum(os.path.getsize(r.path) for r in records),
    }
    return records, stats


def _cache_key(learned, config):
    settings = (learned.roi.scales, learned.roi.max_side, learned.anchors, config)
    return f"{weights_fingerprint(learned.roi.backbone)}-{hashlib.sha1(repr(settings).encode()).hexdigest()[:12]}"


def _write_record(path, key, conv, image, example, learned, scale_index, config):
    h, w = image.shape[:2]
    factor = float(scales_lib.scale_factors(h, w, learned.roi.scales, learned.roi.max_side)[scale_index])
    conv5 = conv(tf.constant(image[None]), tf.constant(factor, tf.float32))[0].numpy()
    sh, sw = scales_lib.scaled_size(h, w, factor)
    anchors = anchor_grid_np(conv5.shape[0], conv5.shape[1], learned.anchors)
    gt = np.asarray(example.boxes, np.float32).reshape(-1, 4) * factor
    labels, deltas = rpn_lib.assign_anchor_targets(anchors, gt, sh, sw, config)
    save_npz_aside(path, key=np.array(key), conv5=conv5.astype(np.float16), labels=labels, deltas=deltas)
    return labels


def _load_labels(path, key):
    """The labels of a finished shard of this network, else None (recomputed; a bad
    shard with a warning)."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path) as shard:
            if str(shard["key"]) != key:
                log.warning("RPN shard %s is from another network or settings; recomputing it", path)
                return None
            labels = shard["labels"]
            if shard["conv5"].ndim != 3 or len(shard["deltas"]) != len(labels):
                raise ValueError("arrays of mismatched shapes")
            return labels
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        log.warning("RPN shard %s is unreadable (%s: %s); recomputing it", path, type(error).__name__, error)
        return None


def train_rpn(learned, records, config=RpnTrainingConfig(), verbose=1, callbacks=None):
    """Fits ``learned.head`` on ``records`` (``rpn_records``) for ``config.steps``
    images, Adam, the rate 10x lower for the last quarter; returns the History. A
    non-finite loss raises ``NonFiniteLossError``; an objectness loss that ends at
    chance level (ln 2) is warned about."""
    if not records:
        raise ValueError("no RPN training records (no readable training images).")
    keras.utils.set_random_seed(config.seed)
    total = int(config.steps)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [max(int(total * 0.75), 1)], [config.learning_rate, config.final_learning_rate]
    )
    trainer = rpn_lib.RpnTrainer(learned.head)
    trainer.compile(optimizer=keras.optimizers.Adam(schedule), jit_compile=False)
    dataset = rpn_lib.training_dataset(records, config.targets, seed=config.seed)
    epochs = 10 if total >= 10 else 1
    history = trainer.fit(
        dataset,
        epochs=epochs,
        steps_per_epoch=max(total // epochs, 1),
        verbose=verbose,
        callbacks=[RaiseOnNonFiniteLoss("RPN training", "Try a lower --rpn-lr."), *(callbacks or [])],
    )
    warn_if_at_chance(history, "objectness_loss", math.log(2.0), "RPN training", "--rpn-steps", margin=0.9)
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
