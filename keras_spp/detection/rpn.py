"""A region proposal network on the detector's frozen conv5 (Faster R-CNN's RPN).

* ``rpn_head``: a 3x3 conv and two 1x1 convs, objectness logits and box deltas of
  every anchor (``keras_spp.detection.anchors``' order), on a conv5 map of any size.
* ``assign_anchor_targets``: labels and regression targets of the anchors of one
  image (numpy): positives IoU >= 0.7 with an object, or an object's best anchor;
  negatives IoU < 0.3; the rest and anchors crossing the image border ignored.
* ``sample_anchors``: 256 anchors an image, at most half positive (TF, in tf.data).
* ``RpnTrainer``: ``model.fit`` on cached conv5 maps with those targets.

Box deltas are the project's one parametrisation (``keras_spp.detection.boxes``).
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_spp.detection.boxes import encode_boxes, pairwise_iou

IGNORE, NEGATIVE, POSITIVE = -1, 0, 1


@dataclasses.dataclass(frozen=True)
class RpnTargetConfig:
    """Faster R-CNN's anchor labelling and minibatch."""

    positive_iou: float = 0.7
    negative_iou: float = 0.3
    allowed_border: float = 0.0
    batch_size: int = 256
    positive_fraction: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.negative_iou <= self.positive_iou <= 1.0:
            raise ValueError(
                f"need 0 <= negative_iou <= positive_iou <= 1; got {self.negative_iou}, {self.positive_iou}."
            )
        if int(self.batch_size) < 1 or not 0.0 < self.positive_fraction <= 1.0:
            raise ValueError(
                f"`batch_size` must be >= 1 and `positive_fraction` in (0, 1]; got "
                f"{self.batch_size}, {self.positive_fraction}."
            )


def rpn_head(channels, anchors_per_cell, hidden=256, name="rpn", dtype=None):
    """conv5 ``[1, h, w, channels]`` -> ``{"objectness": [1, h*w*A], "deltas": [1, h*w*A, 4]}``.

    Weights start as Faster R-CNN's, ``N(0, 0.01)`` with zero biases. ``dtype``: the
    3x3 conv's dtype policy (``None``: Keras's global one); give it the backbone's
    (``"mixed_bfloat16"`` under mixed precision), since that conv is most of the
    head's time. The two outputs are always float32.

    >>> head = rpn_head(8, 3, hidden=16)
    >>> out = head(np.zeros((1, 5, 7, 8), "float32"))
    >>> tuple(out["objectness"].shape), tuple(out["deltas"].shape)
    ((1, 105), (1, 105, 4))
    """
    if int(channels) < 1 or int(anchors_per_cell) < 1 or int(hidden) < 1:
        raise ValueError(
            f"channels, anchors_per_cell and hidden must be >= 1; got {channels}, {anchors_per_cell}, {hidden}."
        )
    init = keras.initializers.RandomNormal(stddev=0.01, seed=0)
    conv5 = keras.Input((None, None, int(channels)), batch_size=1, name="conv5")
    x = keras.layers.Conv2D(
        int(hidden), 3, padding="same", activation="relu", kernel_initializer=init, dtype=dtype, name="rpn_conv"
    )(conv5)
    logits = keras.layers.Conv2D(
        int(anchors_per_cell), 1, kernel_initializer=init, dtype="float32", name="rpn_objectness"
    )(x)
    deltas = keras.layers.Conv2D(
        4 * int(anchors_per_cell), 1, kernel_initializer=init, dtype="float32", name="rpn_deltas"
    )(x)
    return keras.Model(
        conv5,
        {
            "objectness": keras.layers.Reshape((-1,), name="objectness")(logits),
            "deltas": keras.layers.Reshape((-1, 4), name="deltas")(deltas),
        },
        name=name,
    )


def assign_anchor_targets(anchors, gt_boxes, height, width, config=RpnTargetConfig()):
    """``(labels int8 [N], deltas float32 [N, 4])`` for one image's anchors.

    ``labels``: ``POSITIVE`` (IoU >= ``positive_iou`` with some object, or among the
    anchors of highest IoU with an object when that IoU is above 0), ``NEGATIVE``
    (IoU < ``negative_iou`` with every object), else ``IGNORE``; anchors reaching
    more than ``allowed_border`` pixels past the ``height x width`` image are
    ``IGNORE`` whatever their overlap (Faster R-CNN). ``deltas``: ``encode_boxes``
    of each positive towards its best object, zeros elsewhere. No objects: every
    anchor inside the image is negative.
    """
    anchors = np.asarray(anchors, np.float32).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    labels = np.full(len(anchors), IGNORE, np.int8)
    deltas = np.zeros((len(anchors), 4), np.float32)
    b = config.allowed_border
    inside = (
        (anchors[:, 0] >= -b) & (anchors[:, 1] >= -b) & (anchors[:, 2] <= height + b) & (anchors[:, 3] <= width + b)
    )
    if len(gt_boxes) == 0:
        labels[inside] = NEGATIVE
        return labels, deltas
    iou = pairwise_iou(anchors, gt_boxes)  # float64 [N, G]
    iou[~inside] = -1.0
    best_gt = iou.argmax(axis=1)
    best_iou = iou.max(axis=1)
    labels[inside & (best_iou < config.negative_iou)] = NEGATIVE
    per_gt_best = iou.max(axis=0)
    is_best = (iou == per_gt_best[None, :]) & (per_gt_best[None, :] > 0)
    positive = inside & ((best_iou >= config.positive_iou) | is_best.any(axis=1))
    labels[positive] = POSITIVE
    # An object's best anchor regresses towards that object (its best one is not always it).
    target = np.where(is_best.any(axis=1) & (best_iou < config.positive_iou), is_best.argmax(axis=1), best_gt)
    if positive.any():
        deltas[positive] = encode_boxes(anchors[positive], gt_boxes[target[positive]])
    return labels, deltas


def sample_anchors(labels, seed, config=RpnTargetConfig()):
    """float32 ``[N]`` weights: 1 for the anchors of one image's minibatch, 0 for the rest.

    At most ``positive_fraction * batch_size`` positives drawn at random, negatives
    fill the rest of ``batch_size`` (fewer if there are not enough); ``seed``: a
    ``[2]`` int seed (``tf.random.stateless_uniform``), so each epoch's draw repeats.
    """
    labels = tf.cast(labels, tf.int32)
    keys = tf.random.stateless_uniform(tf.shape(labels), seed)
    positive, negative = tf.equal(labels, POSITIVE), tf.equal(labels, NEGATIVE)
    count_pos = tf.reduce_sum(tf.cast(positive, tf.int32))
    count_neg = tf.reduce_sum(tf.cast(negative, tf.int32))
    keep_pos = tf.minimum(count_pos, int(config.batch_size * config.positive_fraction))
    keep_neg = tf.minimum(count_neg, int(config.batch_size) - keep_pos)

    def first(mask, k):
        rank = tf.argsort(tf.argsort(tf.where(mask, keys, -1.0), direction="DESCENDING"))
        return mask & (rank < k)

    return tf.cast(first(positive, keep_pos) | first(negative, keep_neg), tf.float32)


def smooth_l1(x, beta=1.0 / 9):
    """Huber with Faster R-CNN's ``sigma = 3`` (``beta = 1 / sigma ** 2``), elementwise."""
    x = tf.abs(x)
    return tf.where(x < beta, 0.5 * x * x / beta, x - 0.5 * beta)


class RpnTrainer(keras.Model):
    """Trains an ``rpn_head`` with ``model.fit`` on ``(conv5, targets)`` batches of one
    image: ``targets = {"labels": [1, N], "deltas": [1, N, 4], "weights": [1, N]}``
    (``sample_anchors``' minibatch). The loss is Faster R-CNN's: binary cross-entropy
    of the minibatch's anchors plus ``box_weight`` times the smooth L1 of the
    positives' deltas, both divided by the minibatch size."""

    def __init__(self, head, box_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self.head = head
        self.box_weight = float(box_weight)
        self.objectness_loss = keras.metrics.Mean(name="objectness_loss")
        self.box_loss = keras.metrics.Mean(name="box_loss")
        self.positive_recall = keras.metrics.Mean(name="positive_recall")

    def call(self, conv5, training=False):
        return self.head(conv5, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels = tf.cast(tf.reshape(y["labels"], [-1]), tf.float32)
        weights = tf.reshape(y["weights"], [-1])
        logits = tf.reshape(y_pred["objectness"], [-1])
        count = tf.maximum(tf.reduce_sum(weights), 1.0)
        positive = tf.cast(tf.equal(labels, POSITIVE), tf.float32) * weights
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=logits)
        objectness = tf.reduce_sum(bce * weights) / count
        box_error = tf.reduce_sum(
            smooth_l1(tf.reshape(y_pred["deltas"], [-1, 4]) - tf.reshape(y["deltas"], [-1, 4])), axis=1
        )
        box = tf.reduce_sum(box_error * positive) / count
        self.objectness_loss.update_state(objectness)
        self.box_loss.update_state(box)
        found = tf.reduce_sum(tf.cast(logits > 0, tf.float32) * positive)
        self.positive_recall.update_state(found / tf.maximum(tf.reduce_sum(positive), 1.0))
        return objectness + self.box_weight * box

    @property
    def metrics(self):
        return [*super().metrics, self.objectness_loss, self.box_loss, self.positive_recall]


def training_dataset(records, config=RpnTargetConfig(), seed=0):
    """Endless tf.data of ``(conv5 [1, h, w, C], targets)`` from ``records``: each
    either an ``rpn_training.RpnRecord`` (read from its shard when its turn comes) or
    a tuple ``(conv5 [h, w, C], labels [N], deltas [N, 4])``; one image a step, in a
    shuffled order that repeats with ``seed``; each step's anchors sampled anew."""
    if not records:
        raise ValueError("no training images for the RPN.")

    def arrays(record):
        return record.arrays() if hasattr(record, "arrays") else record

    channels = arrays(records[0])[0].shape[-1]
    rng = np.random.default_rng(seed)

    def generate():
        while True:
            for i in rng.permutation(len(records)):
                conv5, labels, deltas = arrays(records[i])
                yield np.asarray(conv5, np.float32), labels, deltas

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec([None, None, channels], tf.float32),
            tf.TensorSpec([None], tf.int8),
            tf.TensorSpec([None, 4], tf.float32),
        ),
    )

    def with_minibatch(step, record):
        conv5, labels, deltas = record
        weights = sample_anchors(labels, tf.stack([tf.cast(seed, tf.int64), step]), config)
        return conv5[None], {"labels": labels[None], "deltas": deltas[None], "weights": weights[None]}

    return dataset.enumerate().map(with_minibatch, num_parallel_calls=1).prefetch(2)
