"""Fine-tuning the conv layers through the RoI pyramid op (an option beyond the paper).

The paper fine-tunes only fc6-fc8, on cached features, and keeps the conv layers as
pretrained. Fast R-CNN (Girshick, 2015) showed that back-propagating through the
RoI pooling into the conv layers gains several mAP points when the pretrained
features are not yet right for the detection data. ``roi_pyramid_pool`` passes
gradients to its feature map, so the same detector model trains end to end here:

* one image per step, whole, resized to one of the detector's scales drawn at
  random (one conv pass a step instead of one a scale), among those where some
  of its positive windows are pooled when detecting; the windows pooled at that
  scale are sampled as in the paper's fc fine-tuning: ``positive_fraction`` with
  IoU >= ``positive_iou`` against a ground truth box of the image, the rest with
  IoU in ``negative_iou``;
* the loss is the softmax's cross-entropy over classes + background, with the
  detector's own ``fit`` (``SppNetDetector``'s train step on image batches:
  ``keras_spp.detection.detector_training``; Keras progress bars, callbacks), the
  learning rate dropped by 10 for the last sixth of the steps.

It runs after ``training.fine_tune`` (so that fc8 is not random while the conv
layers move), and before the box regressors and SVMs, which then need window
features computed again with the new conv layers.

Example:

>>> config = ConvFineTuningConfig(steps=1000, windows_per_image=64)
>>> config.windows_per_image
64
"""

import contextlib
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_spp.data.voc import load_image
from keras_spp.detection import heads, sampling, training
from keras_spp.detection import scales as scales_lib

# The single-scale training model lives with the detector's train step, which uses it.
from keras_spp.detection.detector_training import PooledAtOneScale, end_to_end_model  # noqa: F401
from keras_spp.detection.training_checks import RaiseOnNonFiniteLoss


@dataclasses.dataclass
class ConvFineTuningConfig:
    steps: int = 1000
    windows_per_image: int = 64
    positive_fraction: float = 0.25
    learning_rate: float = 1e-4
    final_learning_rate: float = 1e-5
    positive_iou: float = 0.5
    negative_iou: tuple = (0.1, 0.5)
    seed: int = 0

    def __post_init__(self):
        if int(self.steps) < 1:
            raise ValueError(f"`steps` must be >= 1; got {self.steps}.")
        if int(self.windows_per_image) < 1:
            raise ValueError(f"`windows_per_image` must be >= 1; got {self.windows_per_image}.")
        if not 0.0 < self.positive_fraction <= 1.0:
            raise ValueError(f"`positive_fraction` must be in (0, 1]; got {self.positive_fraction}.")


def sample_windows(windows, labels, config, rng):
    """One step's windows of one image and their labels (0 background, k + 1 class k).

    ``labels``: ``sampling.window_labels`` of ``windows`` (-1: not used). Returns
    ``(boxes [n, 4], labels [n])`` with ``n <= windows_per_image``: at most
    ``positive_fraction`` positives, the rest negatives; fewer when the image has
    fewer usable windows, none when it has none.
    """
    labels = np.asarray(labels)
    positives = np.flatnonzero(labels > 0)
    negatives = np.flatnonzero(labels == 0)
    num_pos = min(len(positives), int(round(config.windows_per_image * config.positive_fraction)))
    num_neg = min(len(negatives), config.windows_per_image - num_pos)
    chosen = np.concatenate(
        [rng.choice(positives, num_pos, replace=False), rng.choice(negatives, num_neg, replace=False)]
    ).astype(np.int64)
    return np.asarray(windows, np.float32)[chosen], labels[chosen].astype(np.int32)


def image_windows_dataset(roi_features, records, examples, config):
    """An endless, seeded stream of ``({"image": [1, h, w, 3], "boxes": [n, 4]}, labels [n])``:
    each image resized to one of ``roi_features``' scales drawn at random among
    those where it has positives (``_scale_plan``), its windows pooled at that
    scale sampled and scaled with it.

    ``records``: ``training.ImageWindows`` of the training images (their windows
    and overlaps; the cached features are not used). Images with no usable window
    are skipped.
    """
    by_id = {e.image_id: e for e in examples}
    planned = [(r, _scale_plan(roi_features, r, by_id[r.image_id], config)) for r in records]
    usable = [(r, plan) for r, plan in planned if len(plan[2])]
    if not usable:
        raise ValueError(
            "no training image has a window to learn from (IoU >= "
            f"{config.positive_iou} or in {config.negative_iou} with its ground truth)."
        )

    def generate():
        rng = np.random.default_rng(config.seed)
        while True:
            for i in rng.permutation(len(usable)):
                r, (labels, chosen, candidates) = usable[i]
                scale_index = int(rng.choice(candidates))
                at_scale = np.flatnonzero(chosen == scale_index)
                boxes, window_labels = sample_windows(r.windows[at_scale], labels[at_scale], config, rng)
                image = load_image(by_id[r.image_id].image_path).astype(np.float32)
                yield image, boxes, window_labels, scale_index

    def resize(image, boxes, labels, scale_index):
        shape = tf.shape(image)
        factors = scales_lib.resize_factors(shape[0], shape[1], roi_features.scales, roi_features.max_side)
        factor = tf.gather(factors, scale_index)
        resized = roi_features.resized(image[None], factor)
        return {"image": resized, "boxes": boxes * tf.cast(factor, tf.float32)}, labels

    signature = (
        tf.TensorSpec([None, None, 3], tf.float32),
        tf.TensorSpec([None, 4], tf.float32),
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([], tf.int64),
    )
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return dataset.map(resize).prefetch(2)


def _scale_plan(roi_features, record, example, config):
    """The windows' labels, the scale each is pooled at by the detector, and the
    scales a step may train at: those holding a positive, else any usable window.

    Training a window at the scale it is pooled at when detecting keeps what the
    conv layers learn about the sizes they will see (a window at another scale is
    another picture to a network that is not scale invariant: measured, fc accuracy
    on sampled windows fell from 0.95 to 0.83 when every window of an image was
    pooled at one random scale).
    """
    labels = sampling.window_labels(
        record.max_iou, record.gt_index, example.labels, config.positive_iou, config.negative_iou
    )
    factors = scales_lib.scale_factors(example.height, example.width, roi_features.scales, roi_features.max_side)
    chosen = scales_lib.assign_scales(record.windows, factors, roi_features.window_size)
    with_positive = np.unique(chosen[labels > 0])
    candidates = with_positive if len(with_positive) else np.unique(chosen[labels >= 0])
    return labels, chosen, candidates


def fine_tune_end_to_end(detector, records, examples, config=ConvFineTuningConfig(), verbose=1, callbacks=None):
    """Trains the conv layers and fc6-fc8 of ``detector`` together with its own
    ``fit`` (``SppNetDetector.train_step`` on ``image_windows_dataset``'s batches);
    returns the History (``loss``, ``accuracy``).

    ``detector``: an ``SppNetDetector`` or its heads model (``heads.spp_detector``,
    trained through an ``SppNetDetector`` sharing its layers). The conv layers are
    trainable only for this call: they are frozen again after, as the rest of the
    pipeline expects. A non-finite loss raises ``NonFiniteLossError``.
    """
    model = training.trainable_detector(detector)
    roi = heads.roi_features_of(model.heads)
    schedule = training.step_decay(config.steps, config.learning_rate, config.final_learning_rate)
    epochs, steps_per_epoch = training.epoch_split(config.steps)
    with _trainable(roi.backbone):
        # Compiled after the backbone is made trainable: compile collects the weights
        # the optimizer moves.
        model.compile(
            keras.optimizers.Adam(schedule),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=False,
        )
        stop = RaiseOnNonFiniteLoss("fine-tuning the conv layers", "Try a lower learning rate (--conv-lr).")
        return model.fit(
            image_windows_dataset(roi, records, examples, config),
            steps_per_epoch=steps_per_epoch,
            epochs=epochs,
            verbose=verbose,
            callbacks=[stop, *(callbacks or [])],
            shuffle=False,
        )


@contextlib.contextmanager
def _trainable(model):
    before = model.trainable
    model.trainable = True
    try:
        yield
    finally:
        model.trainable = before
