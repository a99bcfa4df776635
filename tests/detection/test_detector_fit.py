"""``SppNetDetector.compile`` and ``fit`` (``keras_spp.detection.detector_training``):
the detector trains itself on the library's two kinds of batch, window features and
an image with windows, to the weights the earlier stage models reached; it saves
and loads once trained, and a non-finite loss stops a run with an error."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_spp.data.detection_examples import DetectionExample
from keras_spp.detection import conv_fine_tuning, heads, training
from keras_spp.detection.features import MultiScaleRoiFeatures
from keras_spp.detection.spp_net_detector import SppNetDetector, load_spp_net_detector
from keras_spp.detection.training_checks import NonFiniteLossError, RaiseOnNonFiniteLoss
from keras_spp.detection.window_stream import fine_tuning_stream
from keras_spp.models import backbone

FC = ("fc6", "fc7", "fc8")


def heads_model(seed=0):
    """A tiny ``spp_detector``: the same seed gives the same weights and dropout state."""
    keras.utils.set_random_seed(seed)
    conv = backbone("zf5", width=0.125)
    conv.trainable = False
    roi = MultiScaleRoiFeatures(conv, (64, 96), (2, 1), window_size=48, name="roi_features")
    return heads.spp_detector(roi, num_classes=2, fc_units=16)


def state(model):
    """Every variable's value, dropout's random state included."""
    return [v.numpy().copy() for v in model.variables]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three images with two objects each, windows near them and far from them, and
    their cached window features."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    examples, proposals = [], {}
    for i in range(3):
        path = folder / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(path)
        gt = np.array([[8, 8, 45, 40], [40, 50, 78, 96]], np.float32)
        examples.append(DetectionExample(f"im{i}", str(path), 80, 100, gt, np.array([0, 1]), np.zeros(2, bool)))
        near = np.repeat(gt, 8, axis=0) + rng.normal(0, 4, (16, 4))
        y, x = rng.uniform(0, 79, (20, 2)), rng.uniform(0, 99, (20, 2))
        far = np.stack([y.min(1), x.min(1), y.max(1) + 1, x.max(1) + 1], 1)
        proposals[f"im{i}"] = np.clip(np.concatenate([near, far]), 0, 79).astype(np.float32)
    model = heads_model()
    records = training.compute_window_features(heads.roi_features_of(model), examples, proposals)
    return examples, records


HEAD_CONFIG = training.HeadTrainingConfig(steps=10, batch_size=8, negative_iou=(0.0, 0.5), learning_rate=1e-3)


def fit_head_model(model, records, examples, config):
    """The fc fine-tuning as it was before the detector trained itself: ``model.fit``
    of ``heads.head_model`` on the same stream, loss, optimizer and schedule."""
    by_id = {e.image_id: e for e in examples}
    labels = training._labels(records, by_id, config)
    head = heads.head_model(model)
    epochs, steps_per_epoch = training.epoch_split(config.steps)
    schedule = training.step_decay(config.steps, config.learning_rate, config.final_learning_rate)
    optimizer = (
        keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=5e-4)
        if config.optimizer == "sgd"
        else keras.optimizers.Adam(schedule)
    )
    head.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    stream = fine_tuning_stream(
        records, labels, config.batch_size, config.positive_fraction, config.seed, config.shuffle_bytes
    )
    return head.fit(stream, steps_per_epoch=steps_per_epoch, epochs=epochs, verbose=0, shuffle=False)


def weights_of(model, names):
    found = []
    for name in names:
        layer = heads.roi_features_of(model) if name == "roi_features" else model.get_layer(name)
        found += [w.copy() for w in layer.get_weights()]
    return found


def assert_close(actual, expected):
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fine_tune_through_the_detector_reaches_the_head_models_weights(data, optimizer):
    examples, records = data
    config = training.HeadTrainingConfig(**{**HEAD_CONFIG.__dict__, "optimizer": optimizer})
    old, new = heads_model(), heads_model()
    assert_close(state(new), state(old))  # the same start, dropout's random state included
    untouched = weights_of(new, ("svm", "bbox", "roi_features"))
    fc_before = weights_of(new, FC)
    old_history = fit_head_model(old, records, examples, config)
    new_history = training.fine_tune(new, records, examples, config, verbose=0)
    assert sorted(new_history.history) == ["accuracy", "loss"]
    np.testing.assert_allclose(new_history.history["loss"], old_history.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(new_history.history["accuracy"], old_history.history["accuracy"], rtol=1e-6)
    assert_close(weights_of(new, FC), weights_of(old, FC))
    # It trained the fc layers, and only them.
    assert all(not np.allclose(a, b) for a, b in zip(weights_of(new, FC), fc_before))
    assert_close(weights_of(new, ("svm", "bbox", "roi_features")), untouched)


CONV_CONFIG = conv_fine_tuning.ConvFineTuningConfig(steps=4, windows_per_image=8, learning_rate=1e-3)


def fit_end_to_end_model(model, records, examples, config):
    """The conv fine-tuning as it was before the detector trained itself: ``model.fit``
    of ``end_to_end_model`` on the same image batches, loss, optimizer and schedule."""
    roi = heads.roi_features_of(model)
    end_to_end = conv_fine_tuning.end_to_end_model(model)
    epochs, steps_per_epoch = training.epoch_split(config.steps)
    schedule = training.step_decay(config.steps, config.learning_rate, config.final_learning_rate)
    roi.backbone.trainable = True
    try:
        end_to_end.compile(
            keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False
        )
        dataset = conv_fine_tuning.image_windows_dataset(roi, records, examples, config)
        return end_to_end.fit(dataset, steps_per_epoch=steps_per_epoch, epochs=epochs, verbose=0, shuffle=False)
    finally:
        roi.backbone.trainable = False


def test_conv_fine_tuning_through_the_detector_reaches_the_end_to_end_models_weights(data):
    examples, records = data
    old, new = heads_model(), heads_model()
    conv_before = weights_of(new, ("roi_features",))
    old_history = fit_end_to_end_model(old, records, examples, CONV_CONFIG)
    new_history = conv_fine_tuning.fine_tune_end_to_end(new, records, examples, CONV_CONFIG, verbose=0)
    np.testing.assert_allclose(new_history.history["loss"], old_history.history["loss"], rtol=1e-5)
    trained = ("roi_features", *FC)
    assert_close(weights_of(new, trained), weights_of(old, trained))
    assert all(not np.allclose(a, b) for a, b in zip(weights_of(new, ("roi_features",)), conv_before))
    assert heads.roi_features_of(new).backbone.trainable is False


def detector_of(model):
    return SppNetDetector(model, ["a", "b"], name="spp_net_detector")


def feature_batches(records, examples, config=HEAD_CONFIG):
    labels = training._labels(records, {e.image_id: e for e in examples}, config)
    return fine_tuning_stream(records, labels, config.batch_size, config.positive_fraction, config.seed)


def test_fit_evaluate_and_callbacks_work_as_for_any_model(data, tmp_path):
    examples, records = data
    detector = detector_of(heads_model())
    detector.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    seen = []
    log = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(sorted(logs)))
    history = detector.fit(
        feature_batches(records, examples),
        validation_data=feature_batches(records, examples),
        validation_steps=2,
        steps_per_epoch=3,
        epochs=2,
        verbose=0,
        shuffle=False,
        callbacks=[log, keras.callbacks.CSVLogger(str(tmp_path / "history.csv"))],
    )
    assert seen == [["accuracy", "loss", "val_accuracy", "val_loss"]] * 2
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()
    result = detector.evaluate(feature_batches(records, examples), steps=2, verbose=0, return_dict=True)
    assert sorted(result) == ["accuracy", "loss"]
    # An image batch evaluates through the conv layers.
    roi = heads.roi_features_of(detector.heads)
    images = conv_fine_tuning.image_windows_dataset(roi, records, examples, CONV_CONFIG)
    assert np.isfinite(detector.evaluate(images, steps=2, verbose=0, return_dict=True)["loss"])
    # Inference is untouched: call maps an image and its boxes to detections.
    out = detector(np.zeros((1, 80, 100, 3), np.float32), records[0].windows[:5])
    assert out["detection_boxes"].shape[0] == 1


def test_the_conv_layers_train_only_when_trainable_at_compile(data):
    examples, records = data
    detector = detector_of(heads_model())
    roi = heads.roi_features_of(detector.heads)
    images = conv_fine_tuning.image_windows_dataset(roi, records, examples, CONV_CONFIG)
    conv_before, fc_before = weights_of(detector.heads, ("roi_features",)), weights_of(detector.heads, FC)
    detector.compile(keras.optimizers.Adam(1e-2))
    roi.backbone.trainable = True  # after compile: not trained until compiled again
    detector.fit(images, steps_per_epoch=2, verbose=0, shuffle=False)
    assert_close(weights_of(detector.heads, ("roi_features",)), conv_before)
    assert all(not np.allclose(a, b) for a, b in zip(weights_of(detector.heads, FC), fc_before))
    detector.compile(keras.optimizers.Adam(1e-2))
    detector.fit(images, steps_per_epoch=2, verbose=0, shuffle=False)
    roi.backbone.trainable = False
    assert all(not np.allclose(a, b) for a, b in zip(weights_of(detector.heads, ("roi_features",)), conv_before))


def test_a_trained_detector_saves_and_loads_with_its_weights(data, tmp_path):
    examples, records = data
    detector = detector_of(heads_model())
    detector.compile(keras.optimizers.Adam(1e-3))
    detector.fit(feature_batches(records, examples), steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)
    path = str(tmp_path / "detector.keras")
    detector.save(path)
    loaded = load_spp_net_detector(path)
    assert_close(loaded.heads.get_weights(), detector.heads.get_weights())
    image = np.random.default_rng(1).uniform(0, 255, (1, 80, 100, 3)).astype(np.float32)
    expected = detector.raw_outputs(image, records[0].windows)[1]
    actual = loaded.raw_outputs(image, records[0].windows)[1]
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5, atol=1e-6)
    # The compile state is not kept: a loaded detector compiles again to go on training.
    assert getattr(loaded, "optimizer", None) is None
    loaded.compile(keras.optimizers.Adam(1e-3))
    more = loaded.fit(feature_batches(records, examples), steps_per_epoch=2, verbose=0, shuffle=False)
    assert len(more.history["loss"]) == 1


def test_under_a_strategy_the_detector_trains_as_on_one_device(data):
    examples, records = data
    config = HEAD_CONFIG
    plain = heads_model()
    training.fine_tune(plain, records, examples, config, verbose=0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        distributed = heads_model()
    history = training.fine_tune(distributed, records, examples, config, verbose=0, strategy=strategy)
    assert len(history.history["loss"]) == 10
    assert_close(weights_of(distributed, FC), weights_of(plain, FC))


def diverged(model):
    """``model`` with a NaN in fc8: every loss through it is NaN. (NaN features would
    not do: under ``tf.function`` the fused MatMul + ReLU turns NaN into 0.)"""
    kernel, bias = model.get_layer("fc8").get_weights()
    model.get_layer("fc8").set_weights([kernel, np.full_like(bias, np.nan)])
    return model


def test_a_non_finite_loss_stops_fit_with_an_error(data):
    examples, records = data
    detector = detector_of(diverged(heads_model()))
    detector.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(NonFiniteLossError, match="loss became nan"):
        detector.fit(
            feature_batches(records, examples),
            steps_per_epoch=2,
            verbose=0,
            shuffle=False,
            callbacks=[RaiseOnNonFiniteLoss("test")],
        )
    # The library's stages stop too, so nothing goes on to be saved as trained.
    with pytest.raises(NonFiniteLossError, match="fine-tuning fc6-fc8"):
        training.fine_tune(diverged(heads_model()), records, examples, HEAD_CONFIG, verbose=0)
    model = diverged(heads_model())
    with pytest.raises(NonFiniteLossError, match="fine-tuning the conv layers"):
        conv_fine_tuning.fine_tune_end_to_end(model, records, examples, CONV_CONFIG, verbose=0)
    assert heads.roi_features_of(model).backbone.trainable is False


def test_bad_training_batches_are_explained(data):
    examples, records = data
    detector = detector_of(heads_model())
    with pytest.raises(ValueError, match="compile the detector"):
        detector.train_step((np.zeros((2, 7), np.float32), np.zeros(2)))
    detector.compile("adam")
    wrong_width = tf.data.Dataset.from_tensors((np.zeros((2, 7), np.float32), np.zeros(2, np.int64))).repeat()
    with pytest.raises(ValueError, match=r"window features float \[B, \d+\] or"):
        detector.fit(wrong_width, steps_per_epoch=1, verbose=0, shuffle=False)
    wrong_keys = tf.data.Dataset.from_tensors(({"images": np.zeros((1, 8, 8, 3), np.float32)}, [0])).repeat()
    with pytest.raises(ValueError, match=r"got the keys \['images'\]"):
        detector.fit(wrong_keys, steps_per_epoch=1, verbose=0, shuffle=False)


def test_the_docstring_example_runs():
    import doctest

    from keras_spp.detection import detector_training

    result = doctest.testmod(detector_training, raise_on_error=True)
    assert result.attempted > 5


def test_training_on_another_backend_is_refused_with_a_message(monkeypatch):
    # The call runs on JAX and PyTorch too; training is TensorFlow's (tf.data,
    # GradientTape), and compile says so before anything else.
    detector = detector_of(heads_model())
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match=r"SppNetDetector.compile \(training the detector\) runs on the TensorFlow"):
        detector.compile("adam")
