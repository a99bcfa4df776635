"""Training the detector's heads on cached window features (the paper's section 4.1).

The conv layers stay as pretrained; every training image's windows (its ground
truth boxes, then its proposals) are pooled once (``compute_window_features``,
cached on disk as float16). Then, on those features:

1. ``fine_tune``: fc6, fc7 and a new fc8 over classes + background with
   ``model.fit`` (``sampling.fine_tuning_dataset``: 25% positives), learning rate
   dropped by 10 for the last sixth of the steps (the paper: 1e-4, then 1e-5);
2. ``fit_box_regression``: ridge regressors of windows with IoU >= 0.5;
3. ``fit_svms``: per-class linear SVMs on fc7 with one round of hard negatives.
"""

import dataclasses
import hashlib
import logging
import os
import zipfile

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_spp.data.voc import load_image
from keras_spp.detection import heads, sampling
from keras_spp.detection.box_regression import fit_box_regressors, regression_targets
from keras_spp.detection.svm import SvmConfig, negative_candidates, train_svms

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ImageWindows:
    """One training image's windows: ground truth first (``num_gt`` rows), then
    proposals; ``features`` float16 ``[N, D]``; ``max_iou``/``gt_index`` against
    the image's ground truth."""

    image_id: str
    windows: np.ndarray
    num_gt: int
    features: np.ndarray
    max_iou: np.ndarray
    gt_index: np.ndarray


@dataclasses.dataclass
class HeadTrainingConfig:
    steps: int = 3000
    batch_size: int = 128
    positive_fraction: float = 0.25
    learning_rate: float = 1e-4
    final_learning_rate: float = 1e-5
    optimizer: str = "adam"
    positive_iou: float = 0.5
    negative_iou: tuple = (0.1, 0.5)
    box_regression_iou: float = 0.5
    box_regression_l2: float = 1000.0
    svm: SvmConfig = dataclasses.field(default_factory=SvmConfig)
    seed: int = 0


# The paper's lowest background IoU: windows below it are far from every object, most
# of an image's windows, and only the SVMs' negatives (and, with negative_iou starting
# at 0, fine-tuning's), so a sample of them serves.
NEAR_OBJECT_IOU = 0.1


def weights_fingerprint(*models_or_layers):
    """A short hash of weights: cached features are only reused for the same network."""
    digest = hashlib.sha1()
    for item in models_or_layers:
        for w in item.get_weights():
            digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()[:12]


def compute_window_features(
    feature_layer, examples, proposals, cache_dir=None, max_windows=None, keep_iou=0.5, seed=0, desc="features"
):
    """Pools every window of every example once; returns a list of ``ImageWindows``.

    ``proposals``: ``{image_id: boxes [R, 4]}``. ``max_windows``: keep at most this
    many windows per image: all ground truth and every window overlapping some
    object by IoU >= ``keep_iou`` (default 0.5, the positives; fine-tuning's
    background windows start at 0.1), then a seeded random sample of the rest. For
    costly feature extractors such as R-CNN's, and to keep the far-from-object
    windows, which are most of an image's and only serve the SVMs' negatives, few.
    ``cache_dir``: a folder for this exact network and settings (the caller names
    it, e.g. with ``weights_fingerprint``); images found there are not recomputed.
    Unreadable images are skipped with a warning.
    """
    run = tf.function(
        lambda image, boxes: feature_layer(image, boxes),
        input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32), tf.TensorSpec([None, 4], tf.float32)],
    )
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for example in tqdm(examples, desc=desc, unit="img"):
        windows = np.concatenate([example.boxes, np.asarray(proposals[example.image_id], np.float32).reshape(-1, 4)])
        max_iou, gt_index = sampling.best_overlaps(windows, example.boxes)
        if max_windows is not None and len(windows) > max_windows:
            keep = _subsample(max_iou, len(example.boxes), max_windows, keep_iou, rng)
            windows, max_iou, gt_index = windows[keep], max_iou[keep], gt_index[keep]
        path = os.path.join(cache_dir, f"{example.image_id}.npz") if cache_dir else None
        features = _load_cached(path, windows)
        if features is None:
            try:
                image = load_image(example.image_path)
            except ValueError as error:
                log.warning("skipping %s: %s", example.image_id, error)
                continue
            features = run(tf.constant(image[None], tf.float32), tf.constant(windows)).numpy().astype(np.float16)
            if path:
                _save_cached(path, windows, features)
        records.append(ImageWindows(example.image_id, windows, len(example.boxes), features, max_iou, gt_index))
    return records


def _subsample(max_iou, num_gt, budget, keep_iou, rng):
    must = np.flatnonzero((np.arange(len(max_iou)) < num_gt) | (max_iou >= keep_iou))
    rest = np.setdiff1d(np.arange(len(max_iou)), must)
    extra = max(budget - len(must), 0)
    if len(rest) > extra:
        rest = rng.choice(rest, extra, replace=False)
    return np.sort(np.concatenate([must, rest]).astype(np.int64))


def _load_cached(path, windows):
    """The cached features of exactly these windows, else None (then recomputed).

    A file that cannot be read as such a cache (empty, cut short by a killed run,
    other arrays) is treated as missing, with a warning; it is overwritten.
    """
    if not path or not os.path.exists(path):
        return None
    try:
        with np.load(path) as cached:
            cached_windows, features = cached["windows"], cached["features"]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        log.warning("window-feature cache %s is unreadable (%s: %s); recomputing it", path, type(error).__name__, error)
        return None
    if cached_windows.shape == windows.shape and np.array_equal(cached_windows, windows):
        if features.ndim == 2 and len(features) == len(windows):
            return features
        log.warning(
            "window-feature cache %s holds %s features for %d windows; recomputing it",
            path,
            features.shape,
            len(windows),
        )
    return None


def _save_cached(path, windows, features):
    temporary = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(temporary, windows=windows, features=features)
    os.replace(temporary, path)


def _labels(records, examples_by_id, config):
    return [
        sampling.window_labels(
            r.max_iou, r.gt_index, examples_by_id[r.image_id].labels, config.positive_iou, config.negative_iou
        )
        for r in records
    ]


def fine_tune(detector, records, examples, config=HeadTrainingConfig(), verbose=1, callbacks=None):
    """fc6, fc7, fc8 with ``model.fit`` on the cached features; returns the History."""
    by_id = {e.image_id: e for e in examples}
    labels = np.concatenate(_labels(records, by_id, config))
    features = np.concatenate([r.features for r in records])
    used = labels >= 0
    dataset = sampling.fine_tuning_dataset(
        features[used], labels[used], config.batch_size, config.positive_fraction, config.seed
    )
    model = heads.head_model(detector)
    schedule = step_decay(config.steps, config.learning_rate, config.final_learning_rate)
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=5e-4)
    elif config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(schedule)
    else:
        raise ValueError(f"`optimizer` must be 'sgd' or 'adam'; got {config.optimizer!r}.")
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    epochs, steps_per_epoch = epoch_split(config.steps)
    return model.fit(
        dataset,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        verbose=verbose,
        callbacks=callbacks,
        shuffle=False,  # the stream is already shuffled, and endless
    )


def step_decay(steps, learning_rate, final_learning_rate):
    """The paper's schedule: ``learning_rate``, then ``final_learning_rate`` for the
    last sixth of ``steps``."""
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [max(int(steps * 5 / 6), 1)], [learning_rate, final_learning_rate]
    )


def epoch_split(steps):
    """``(epochs, steps_per_epoch)`` for an endless stream: ten progress-bar epochs
    (one when there are fewer than ten steps)."""
    epochs = 10 if steps >= 10 else 1
    return epochs, max(steps // epochs, 1)


def fit_box_regression(detector, records, examples, config=HeadTrainingConfig()):
    """Fits the regressors and writes them into the detector's ``bbox`` layer;
    returns the number of training windows per class."""
    by_id = {e.image_id: e for e in examples}
    xs, classes, targets = [], [], []
    for r in records:
        example = by_id[r.image_id]
        rows, cls, tgt = regression_targets(
            r.windows, example.boxes, r.max_iou, r.gt_index, example.labels, config.box_regression_iou
        )
        xs.append(r.features[rows].astype(np.float32))
        classes.append(cls)
        targets.append(tgt)
    num_classes = detector.get_layer("svm").units
    dim = heads.roi_features_of(detector).output_dim
    x = np.concatenate(xs) if xs else np.zeros((0, dim), np.float32)
    c = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    t = np.concatenate(targets) if targets else np.zeros((0, 4), np.float32)
    kernel, bias = fit_box_regressors(x, c, t, num_classes, config.box_regression_l2)
    heads.set_linear(detector, "bbox", kernel, bias)
    return np.bincount(c, minlength=num_classes)


def fit_svms(detector, records, examples, config=HeadTrainingConfig()):
    """Per-class SVMs on fc7 features, written into the ``svm`` layer; returns stats."""
    by_id = {e.image_id: e for e in examples}
    num_classes = detector.get_layer("svm").units
    fc7 = heads.fc7_model(detector)
    positives_x, positives_y, negatives = [], [], []
    for r in tqdm(records, desc="fc7 features", unit="img"):
        example = by_id[r.image_id]
        features = fc7.predict_on_batch(r.features.astype(np.float32)) if len(r.windows) else None
        if features is None:
            continue
        features = np.asarray(features)
        keep = ~example.difficult
        positives_x.append(features[: r.num_gt][keep])
        positives_y.append(example.labels[keep])
        proposals = slice(r.num_gt, None)
        allowed = negative_candidates(
            r.windows[proposals],
            example.boxes,
            example.labels,
            num_classes,
            config.svm.negative_iou,
            config.svm.duplicate_iou,
        )
        negatives.append((features[proposals], allowed))
    dim = fc7.output_shape[-1]
    pos = (
        np.concatenate(positives_x) if positives_x else np.zeros((0, dim), np.float32),
        np.concatenate(positives_y) if positives_y else np.zeros(0, np.int64),
    )
    with tqdm(total=num_classes, desc="SVMs", unit="class") as progress:
        kernel, bias, stats = train_svms(pos, negatives, num_classes, config.svm, progress)
    heads.set_linear(detector, "svm", kernel, bias)
    return stats
