"""Training ``SppNetDetector`` with its own ``compile`` and ``fit`` (``DetectorTraining``).

The detector's ``call`` maps images (and proposals) to detections; what trains is
its softmax branch on windows: fc6, fc7 and fc8 over classes + background, and,
through the RoI pyramid op's gradient, the conv layers. ``DetectorTraining`` gives
the model a ``train_step`` and ``test_step`` for the two kinds of training batch
the library streams, leaving ``call`` (inference) as it is:

* window features, ``(features float [B, D], labels int [B])``: the rows
  ``window_stream.fine_tuning_stream`` yields from the window cache (the paper's
  fc fine-tuning: the windows go through fc6, fc7 and fc8);
* an image with sampled windows, ``({"image": [1, h, w, 3], "boxes": [n, 4]},
  labels int [n])``: what ``conv_fine_tuning.image_windows_dataset`` yields (the
  image resized to one of the detector's scales, the windows in its pixels): conv,
  RoI pooling at that scale, then the fc layers, so that the loss reaches every
  trainable conv layer (Fast R-CNN's fine-tuning).

Labels: 0 background, ``k + 1`` class ``k``. The loss is ``compile``'s, by default
the softmax's cross-entropy (``sparse_categorical_crossentropy`` of
``class_probabilities``), the loss of ``training.fine_tune`` and
``conv_fine_tuning.fine_tune_end_to_end``, which train through this step. A layer
trains when it is trainable at ``compile`` (the conv layers are frozen unless made
trainable: ``heads.roi_features_of(detector.heads).backbone.trainable = True``,
then ``compile``); the SVMs and box regressors are fitted in closed form
(``training.fit_svms``, ``training.fit_box_regression``), not here.

Example (a tiny detector; pixels 0..255, windows ``[y1, x1, y2, x2]``):

>>> import numpy as np, tensorflow as tf, keras
>>> from keras_spp.detection.features import MultiScaleRoiFeatures
>>> from keras_spp.detection.heads import spp_detector
>>> from keras_spp.detection.spp_net_detector import SppNetDetector
>>> from keras_spp.detection.training_checks import RaiseOnNonFiniteLoss
>>> from keras_spp.models import backbone
>>> roi = MultiScaleRoiFeatures(backbone("zf5", width=0.125), (64,), (2, 1), window_size=48)
>>> model = SppNetDetector(spp_detector(roi, 2, fc_units=16), ["cat", "dog"])
>>> model.compile(keras.optimizers.Adam(1e-4), metrics=["accuracy"])
>>> features = np.random.default_rng(0).normal(size=(8, roi.output_dim)).astype("float32")
>>> windows = tf.data.Dataset.from_tensors((features, np.array([0, 0, 0, 1, 0, 2, 0, 0]))).repeat()
>>> stop = RaiseOnNonFiniteLoss("fine-tuning fc6-fc8")
>>> history = model.fit(windows, steps_per_epoch=2, verbose=0, shuffle=False, callbacks=[stop])
>>> sorted(history.history)
['accuracy', 'loss']

A non-finite loss does not stop ``fit`` by itself (nor does Keras's
``TerminateOnNaN`` stop it with an error): give ``fit``
``training_checks.RaiseOnNonFiniteLoss``, as the library's stages do, so that a
diverged run raises before anything is saved as trained.

``compile`` differs from ``keras.Model.compile`` in three defaults and one step:
the loss is the softmax's cross-entropy, the optimizer Adam, ``jit_compile`` off
(every image batch has its own size: XLA would compile each); and it builds the
loss, the metrics and the optimizer for the trained layers then, on symbolic
batches, because Keras would otherwise build them by running ``call`` on a training
batch (under a ``tf.distribute`` strategy), which is not ``call``'s input. The
compile state (optimizer, its slots) is not saved with the model: load, then
``compile`` again to go on training.
"""

import keras
import tensorflow as tf

from keras_spp.detection import heads
from keras_spp.tensorflow_only import require_tensorflow

FC_LAYERS = ("fc6", "drop6", "fc7", "drop7", "fc8")
IMAGE_BATCH_KEYS = ("boxes", "image")


class PooledAtOneScale(keras.layers.Layer):
    """``MultiScaleRoiFeatures.pool_scaled`` as a layer: conv and pooling of an image
    already resized to a scale, sharing (and training) that layer's backbone."""

    def __init__(self, roi_features, **kwargs):
        super().__init__(**kwargs)
        self.roi_features = roi_features

    def call(self, image, boxes):
        return self.roi_features.pool_scaled(image, boxes)

    def compute_output_shape(self, image_shape, boxes_shape):
        return (boxes_shape[0], self.roi_features.output_dim)


def end_to_end_model(detector):
    """resized image + its windows -> class probabilities, sharing every layer with
    ``detector`` (the conv layers inside its window features, fc6, fc7, fc8)."""
    roi = heads.roi_features_of(detector)
    image = keras.Input((None, None, 3), batch_size=1, name="image")
    boxes = keras.Input((4,), name="boxes")
    x = PooledAtOneScale(roi, name="pooled_at_one_scale")(image, boxes)
    for layer_name in FC_LAYERS:
        x = detector.get_layer(layer_name)(x)
    return keras.Model({"image": image, "boxes": boxes}, x, name="end_to_end")


class _TrainingModels:
    """The two training paths as functional models sharing the detector's layers.

    A plain object, so that neither Keras nor TensorFlow tracks the models: the
    detector's saved weights stay those of its own layers."""

    def __init__(self, detector_heads):
        self.features = heads.head_model(detector_heads)
        roi = heads.roi_features_of(detector_heads)
        # R-CNN's warped windows have no single-scale pooling: features only.
        self.image = end_to_end_model(detector_heads) if hasattr(roi, "pool_scaled") else None
        self.feature_dim = roi.output_dim
        # The weights each path moves, as trainable now (at compile, as Keras's own
        # models fix theirs): the fc layers, and the conv layers made trainable.
        self.trained = {
            "features": list(self.features.trainable_weights),
            "image": list(self.image.trainable_weights) if self.image is not None else [],
        }

    def variables(self):
        """Every weight a training batch may move (the optimizer's)."""
        found = {}
        for v in self.trained["features"] + self.trained["image"]:
            found.setdefault(id(v), v)
        return list(found.values())


class DetectorTraining:
    """``compile``, ``train_step`` and ``test_step`` of a detector (a ``keras.Model``
    holding the ``spp_detector`` model as ``self.heads``): module docstring."""

    def compile(
        self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None, jit_compile=False, **kwargs
    ):
        """``keras.Model.compile`` with the softmax's cross-entropy as the loss and
        without XLA by default; builds the loss, metrics and optimizer for the layers
        trainable now (module docstring). TensorFlow backend only (the streams are
        tf.data, the steps ``tf.GradientTape``); other backends get a RuntimeError."""
        require_tensorflow("SppNetDetector.compile (training the detector)")
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile, **kwargs)
        models = _TrainingModels(self.heads)
        self._training_models = models
        labels = keras.KerasTensor((None,), "int64")
        probabilities = keras.KerasTensor((None, self.heads.get_layer("fc8").units), "float32")
        if self._compile_loss is not None and not self._compile_loss.built:
            self._compile_loss.build(labels, probabilities)
        if self._compile_metrics is not None and not self._compile_metrics.built:
            self._compile_metrics.build(labels, probabilities)
        if not self.optimizer.built:
            self.optimizer.build(models.variables())

    def compile_from_config(self, config):
        # Keras skips compiling a model whose compile is its own, with a warning: the
        # compile state is not kept (module docstring), so there is nothing to restore.
        del config

    def get_compile_config(self):
        return None

    def training_outputs(self, x, training=False):
        """The class probabilities ``[n, K + 1]`` of a training batch's inputs ``x``
        (window features, or an image and its windows: module docstring)."""
        return self._training_model(x)(x, training=training)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        model = self._training_model(x)
        variables = self._training_models.trained["image" if isinstance(x, dict) else "features"]
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            self._track_loss(loss, x)
            loss = self.optimizer.scale_loss(loss)
        if variables:
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self._training_model(x)(x, training=False)
        loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False)
        self._track_loss(loss, x)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _track_loss(self, loss, x):
        # As Keras's own step: the loss of one replica's part of the batch, scaled
        # back to the global batch's, weighted by the windows in it.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss * tf.cast(replicas, loss.dtype)
        windows = x["boxes"] if isinstance(x, dict) else x
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(windows)[0])

    def _training_model(self, x):
        models = getattr(self, "_training_models", None)
        if models is None:
            raise ValueError("compile the detector (detector.compile(optimizer)) before training or evaluating it.")
        if isinstance(x, dict):
            return _image_path(models, x)
        if not hasattr(x, "shape") or len(x.shape) != 2 or x.shape[-1] not in (None, models.feature_dim):
            raise ValueError(
                f"a training batch's inputs are window features float [B, {models.feature_dim}] or "
                f'{{"image": [1, h, w, 3], "boxes": [n, 4]}}; got {_describe(x)}.'
            )
        return models.features


def _image_path(models, x):
    if tuple(sorted(x)) != IMAGE_BATCH_KEYS:
        raise ValueError(
            f'an image training batch\'s inputs are {{"image": [1, h, w, 3], "boxes": [n, 4]}}; got the keys '
            f"{sorted(x)}."
        )
    if models.image is None:
        raise ValueError(
            "this detector's window features (R-CNN's warped windows) train on cached window features only, "
            "not on images with windows."
        )
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        # One image a step cannot be split between replicas.
        raise ValueError(
            "image training batches (one image a step) train on one device; got a strategy with "
            f"{tf.distribute.get_strategy().num_replicas_in_sync} replicas. Train them outside the strategy's scope."
        )
    return models.image


def _describe(x):
    shape = getattr(x, "shape", None)
    return f"{type(x).__name__} of shape {tuple(shape)}" if shape is not None else repr(x)[:80]
