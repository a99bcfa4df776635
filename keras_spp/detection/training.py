"""Training the detector's heads on cached window features (the paper's section 4.1).

The conv layers stay as pretrained; every training image's windows (its ground
truth boxes, then its proposals) are pooled once (``compute_window_features``) into
on-disk shards (``keras_spp.detection.window_cache``). Then, streaming the shards
so that memory does not grow with the number of images:

1. ``fine_tune``: fc6, fc7 and a new fc8 over classes + background with the
   detector's ``fit`` (``window_stream.fine_tuning_stream``: 25% positives), learning
   rate dropped by 10 for the last sixth of the steps (the paper: 1e-4, then 1e-5);
2. ``fit_box_regression``: ridge regressors of windows with IoU >= 0.5, at most
   ``box_regression_max_windows`` a class (a seeded uniform sample), one class at a time;
3. ``fit_svms``: per-class linear SVMs on fc7 with hard negative mining over the
   streamed images into a bounded cache (``keras_spp.detection.svm``).
"""

import contextlib
import dataclasses
import hashlib
import json
import logging
import os

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_spp.data.voc import load_image
from keras_spp.detection import heads, sampling
from keras_spp.detection.box_regression import fit_one_class, regression_targets
from keras_spp.detection.features import MultiScaleRoiFeatures
from keras_spp.detection.svm import SvmConfig, negative_candidates, train_svms_streamed
from keras_spp.detection.training_checks import RaiseOnNonFiniteLoss, softmax_chance_loss, warn_if_at_chance
from keras_spp.detection.window_cache import ConvMapCache, ImageWindows, WindowFeatureCache
from keras_spp.detection.window_stream import SHUFFLE_BYTES, fine_tuning_stream
from keras_spp.memory import release_free_memory

log = logging.getLogger(__name__)

__all__ = ["ImageWindows", "HeadTrainingConfig", "compute_window_features", "fine_tune", "trainable_detector"]


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
    # Windows a class's regressor is fitted on, at most: a uniform sample of the
    # stream. The ridge solve holds them in float64, so memory is about
    # 8 * max_windows * (feature_dim + max_windows) bytes, whatever the data set.
    box_regression_max_windows: int = 5000
    # Rows of features the fine-tuning stream's shuffle buffers hold, in bytes.
    shuffle_bytes: int = SHUFFLE_BYTES
    svm: SvmConfig = dataclasses.field(default_factory=SvmConfig)
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "box_regression_max_windows", "shuffle_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
        for name in ("learning_rate", "final_learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"`{name}` must be a positive finite number; got {value!r}.")


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


def select_windows(example, proposals, max_windows=None, keep_iou=0.5, rng=None):
    """``(windows, max_iou, gt_index)`` of one training image: its ground truth, then
    its proposals, thinned to ``max_windows`` as ``compute_window_features`` says."""
    boxes = np.asarray(proposals.get(example.image_id, np.zeros((0, 4))), np.float32).reshape(-1, 4)
    windows = np.concatenate([np.asarray(example.boxes, np.float32).reshape(-1, 4), boxes])
    max_iou, gt_index = sampling.best_overlaps(windows, example.boxes)
    if max_windows is not None and len(windows) > max_windows:
        keep = _subsample(max_iou, len(example.boxes), max_windows, keep_iou, rng or np.random.default_rng(0))
        windows, max_iou, gt_index = windows[keep], max_iou[keep], gt_index[keep]
    return windows, max_iou, gt_index


def compute_window_features(
    feature_layer,
    examples,
    proposals,
    cache_dir=None,
    max_windows=None,
    keep_iou=0.5,
    seed=0,
    desc="features",
    key="",
    store="features",
):
    """Pools every window of every example once into the shards of a
    ``WindowFeatureCache``; returns a list of ``ImageWindows`` (windows and overlaps
    in memory, features on disk).

    ``proposals``: ``{image_id: boxes [R, 4]}`` (an image without an entry has only
    its ground truth). ``max_windows``: keep at most this many windows per image:
    all ground truth and every window overlapping some object by IoU >= ``keep_iou``
    (default 0.5, the positives; fine-tuning's background windows start at 0.1),
    then a seeded random sample of the rest. For costly feature extractors such as
    R-CNN's, and to keep the far-from-object windows, which are most of an image's
    and only serve the SVMs' negatives, few.
    ``cache_dir``: a folder for this exact network and settings (the caller names
    it, e.g. with ``weights_fingerprint``, and passes the same as ``key``); shards
    found there are not recomputed. ``None``: a temporary folder, removed at exit.
    A ``WindowFeatureCache`` may be passed as ``cache_dir`` too. Unreadable images
    are skipped with a warning.
    ``store``: ``"features"`` caches each window's features; ``"conv5"`` caches the
    image's conv5 maps at the scales its windows use, and pools the features from
    them when they are read (``window_cache.ConvMapCache``; ``feature_layer`` must
    be a ``MultiScaleRoiFeatures``): less disk when an image keeps many windows.
    """
    cache = _cache_for(feature_layer, cache_dir, key, store)
    run = tf.function(
        lambda image, boxes: feature_layer(image, boxes),
        input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32), tf.TensorSpec([None, 4], tf.float32)],
    )
    rng = np.random.default_rng(seed)
    records = []
    for example in tqdm(examples, desc=desc, unit="img"):
        windows, max_iou, gt_index = select_windows(example, proposals, max_windows, keep_iou, rng)
        path = cache.shard_path(example)
        if cache.load(path, windows) is None:
            try:
                image = load_image(example.image_path)
            except (ValueError, OSError) as error:
                log.warning("skipping %s: %s", example.image_id, error)
                continue
            if isinstance(cache, ConvMapCache):
                cache.compute(path, image, windows)
            else:
                cache.save(path, windows, run(tf.constant(image[None], tf.float32), tf.constant(windows)).numpy())
        source = cache if isinstance(cache, ConvMapCache) else None
        records.append(ImageWindows(example.image_id, windows, len(example.boxes), max_iou, gt_index, path, source))
    return records


STORES = ("features", "conv5")


def _cache_for(feature_layer, cache_dir, key, store):
    if isinstance(cache_dir, WindowFeatureCache):
        return cache_dir
    if store == "features":
        return WindowFeatureCache(cache_dir, key)
    if store == "conv5":
        if not isinstance(feature_layer, MultiScaleRoiFeatures):
            raise ValueError(f"store='conv5' needs a MultiScaleRoiFeatures layer; got {feature_layer!r}.")
        return ConvMapCache(feature_layer, cache_dir, key)
    raise ValueError(f"`store` must be one of {STORES}; got {store!r}.")


def _subsample(max_iou, num_gt, budget, keep_iou, rng):
    must = np.flatnonzero((np.arange(len(max_iou)) < num_gt) | (max_iou >= keep_iou))
    rest = np.setdiff1d(np.arange(len(max_iou)), must)
    extra = max(budget - len(must), 0)
    if len(rest) > extra:
        rest = rng.choice(rest, extra, replace=False)
    return np.sort(np.concatenate([must, rest]).astype(np.int64))


def _labels(records, examples_by_id, config):
    return [
        sampling.window_labels(
            r.max_iou, r.gt_index, examples_by_id[r.image_id].labels, config.positive_iou, config.negative_iou
        )
        for r in records
    ]


def fine_tune(
    detector, records, examples, config=HeadTrainingConfig(), verbose=1, callbacks=None, backup_dir=None, strategy=None
):
    """fc6, fc7, fc8 with the detector's own ``fit`` on the streamed window features
    (``SppNetDetector.train_step``: ``keras_spp.detection.detector_training``);
    returns the History (``loss``, ``accuracy``).

    ``detector``: an ``SppNetDetector``, or its heads model (``heads.spp_detector``),
    which trains through an ``SppNetDetector`` sharing its layers
    (``trainable_detector``).

    ``backup_dir``: where Keras's ``BackupAndRestore`` keeps the weights and the
    optimizer at each progress-bar epoch: a killed run given the same folder resumes
    from its last finished epoch (the stream restarts from an order seeded by that
    epoch, so a resumed run is reproducible, though not equal to an uninterrupted
    one). A non-finite loss raises ``NonFiniteLossError``; a loss that ends at chance
    level is warned about.

    ``strategy``: the ``tf.distribute`` strategy ``detector`` was built under. Every
    replica runs the same stream (a pure function of the shards and the seed) and
    takes its part of each global batch of ``config.batch_size`` windows, so the
    batches are those of one device; under a multi-worker strategy, every worker
    must see every image's shard (a shared ``cache_dir``, or each computes the
    missing ones).
    """
    by_id = {e.image_id: e for e in examples}
    labels = _labels(records, by_id, config)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        # Made in the scope: Keras distributes the fit of a model made under it.
        model = trainable_detector(detector)
        return _fit_heads(model, records, labels, config, verbose, callbacks, backup_dir, strategy)


def trainable_detector(model):
    """``model`` if it is an ``SppNetDetector``; else an ``SppNetDetector`` around the
    heads model ``model`` (``heads.spp_detector``), sharing its layers: fitting it
    trains ``model``. Its class names are placeholders (``class_1``, ...)."""
    from keras_spp.detection.spp_net_detector import SppNetDetector

    if isinstance(model, SppNetDetector):
        return model
    if not isinstance(model, keras.Model):
        raise ValueError(f"`detector` must be an SppNetDetector or a heads.spp_detector model; got {model!r:.80}.")
    num_classes = model.get_layer("svm").units
    return SppNetDetector(model, [f"class_{k + 1}" for k in range(num_classes)], name="spp_net_detector")


def _fit_heads(model, records, labels, config, verbose, callbacks, backup_dir, strategy):
    epochs, steps_per_epoch = epoch_split(config.steps)
    resume_epoch = _backup_epoch(backup_dir)
    dataset = fine_tuning_stream(
        records,
        labels,
        config.batch_size,
        config.positive_fraction,
        config.seed + 1000 * resume_epoch,
        config.shuffle_bytes,
    )
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Each worker keeps its part of every global batch: the batches of one device.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
        backup_dir = None  # every worker would write the one folder
    schedule = step_decay(config.steps, config.learning_rate, config.final_learning_rate)
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=5e-4)
    elif config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(schedule)
    else:
        raise ValueError(f"`optimizer` must be 'sgd' or 'adam'; got {config.optimizer!r}.")
    model.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    stage_callbacks = [RaiseOnNonFiniteLoss("fine-tuning fc6-fc8", "Try a lower learning rate (--lr).")]
    if backup_dir:
        stage_callbacks.append(keras.callbacks.BackupAndRestore(backup_dir, save_freq="epoch"))
    history = model.fit(
        dataset,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        verbose=verbose,
        callbacks=[*stage_callbacks, *(callbacks or [])],
        shuffle=False,  # the stream is already shuffled, and endless
    )
    num_classes = model.heads.get_layer("svm").units
    warn_if_at_chance(
        history, "loss", softmax_chance_loss(num_classes, config.positive_fraction), "fine-tuning fc6-fc8", "--steps"
    )
    return history


def _backup_epoch(backup_dir):
    """The epoch a ``BackupAndRestore`` folder resumes at (0: none)."""
    path = os.path.join(backup_dir, "training_metadata.json") if backup_dir else None
    if not path or not os.path.exists(path):
        return 0
    try:
        with open(path) as f:
            return int(json.load(f).get("epoch", 0))
    except (OSError, ValueError, TypeError):
        return 0


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
    returns the number of regression windows per class.

    A class with more than ``config.box_regression_max_windows`` windows is fitted
    on a uniform sample of them. The windows are chosen from the overlaps alone
    (held in memory), then each class's features are read from the shards and
    fitted in turn, so memory holds one class's sample, whatever the data set.
    """
    # The stage before freed more than this one needs: give it back first.
    release_free_memory()
    by_id = {e.image_id: e for e in examples}
    num_classes = detector.get_layer("svm").units
    dim = heads.roi_features_of(detector).output_dim
    chosen, counts = _regression_sample(records, by_id, config, num_classes)
    # One feature scale for every class, as a joint fit would have.
    norm_sum = 0.0
    for i, rows in _rows_by_record(chosen, range(num_classes)).items():
        norm_sum += float(np.linalg.norm(records[i].features_of(rows).astype(np.float64), axis=1).sum())
    total = sum(len(c[0]) for c in chosen)
    mean_norm = norm_sum / total if total else 1.0
    kernel = np.zeros((dim, 4 * num_classes), np.float32)
    bias = np.zeros(4 * num_classes, np.float32)
    for k in tqdm(range(num_classes), desc="box regressors", unit="class"):
        record_index, row, targets = chosen[k]
        if not len(row):
            continue
        # float32 holds the cache's float16 or float32 exactly, in half a float64 copy.
        x = np.empty((len(row), dim), np.float32)
        for i, rows in _rows_by_record(chosen, [k]).items():
            x[record_index == i] = records[i].features_of(rows)
        w, b = fit_one_class(x, targets, config.box_regression_l2, 20.0 / max(mean_norm, 1e-12))
        kernel[:, 4 * k : 4 * k + 4], bias[4 * k : 4 * k + 4] = w, b
    heads.set_linear(detector, "bbox", kernel, bias)
    return counts


def _regression_sample(records, by_id, config, num_classes):
    """Per class ``(record index [n], row [n], targets [n, 4])`` of at most
    ``box_regression_max_windows`` windows, a seeded uniform sample, in stream order;
    and every class's count of windows."""
    per_class = [[] for _ in range(num_classes)]
    for i, r in enumerate(records):
        example = by_id[r.image_id]
        rows, cls, tgt = regression_targets(
            r.windows, example.boxes, r.max_iou, r.gt_index, example.labels, config.box_regression_iou
        )
        for k in np.unique(cls).astype(int):
            mine = cls == k
            per_class[k].append((np.full(int(mine.sum()), i), rows[mine], tgt[mine]))
    rng = np.random.default_rng(config.seed)
    chosen, counts = [], np.zeros(num_classes, np.int64)
    for k, parts in enumerate(per_class):
        index = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        row = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        targets = np.concatenate([p[2] for p in parts]) if parts else np.zeros((0, 4), np.float32)
        counts[k] = len(index)
        if len(index) > config.box_regression_max_windows:
            keep = np.sort(rng.choice(len(index), config.box_regression_max_windows, replace=False))
            index, row, targets = index[keep], row[keep], targets[keep]
        chosen.append((index, row, targets.astype(np.float64)))
    return chosen, counts


def _rows_by_record(chosen, classes):
    """``{record index: rows}`` of the chosen windows of ``classes``, in stream order."""
    found = {}
    for k in classes:
        index, row, _ = chosen[k]
        for i in np.unique(index):
            found.setdefault(int(i), []).append(row[index == i])
    return {i: np.concatenate(rows) for i, rows in sorted(found.items())}


def fit_svms(detector, records, examples, config=HeadTrainingConfig(), state_dir=None):
    """Per-class SVMs on fc7 features, written into the ``svm`` layer; returns stats.

    Streams the images' fc7 features (computed from each shard in turn) through
    ``svm.train_svms_streamed``: random negatives, a first fit, then
    ``config.svm.mining_rounds`` passes of hard negative mining into a cache of at
    most ``config.svm.max_hard_negatives`` a class. ``state_dir``: where each
    finished round is saved, so a killed run resumes at the round it was in.
    """
    release_free_memory()
    by_id = {e.image_id: e for e in examples}
    num_classes = detector.get_layer("svm").units
    fc7 = heads.fc7_model(detector)
    dim = fc7.output_shape[-1]
    svm_config = config.svm

    def images(desc):
        for r in tqdm(records, desc=desc, unit="img"):
            if not len(r.windows):
                continue
            example = by_id[r.image_id]
            features = np.asarray(fc7.predict_on_batch(r.features.astype(np.float32)))
            keep = ~np.asarray(example.difficult, bool)
            allowed = negative_candidates(
                r.windows[r.num_gt :],
                example.boxes,
                example.labels,
                num_classes,
                svm_config.negative_iou,
                svm_config.duplicate_iou,
            )
            yield features[: r.num_gt][keep], np.asarray(example.labels)[keep], features[r.num_gt :], allowed

    key = f"{weights_fingerprint(fc7)}-{len(records)}-{dataclasses.astuple(svm_config)}"
    with tqdm(total=num_classes, desc="SVMs", unit="class") as progress:
        kernel, bias, stats = train_svms_streamed(images, num_classes, dim, svm_config, progress, state_dir, key)
    heads.set_linear(detector, "svm", kernel, bias)
    return stats
