import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_spp.data import pipelines, transforms
from keras_spp.data.multisize import SizeSchedule
from keras_spp.data.views import evaluate, ten_views, topk_accuracy


def varied_source(n=24, classes=3, seed=0):
    """Images of different sizes and aspect ratios; the label is the dominant colour."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        h, w = int(rng.integers(40, 130)), int(rng.integers(40, 130))
        label = i % classes
        image = rng.integers(0, 60, size=(h, w, 3)).astype(np.uint8)
        image[..., label] += 150
        images.append(image)
        labels.append(label)

    def generate():
        yield from zip(images, labels)

    return tf.data.Dataset.from_generator(
        generate, output_signature=(tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([], tf.int64))
    ).apply(tf.data.experimental.assert_cardinality(n))


def take_batches(data, count):
    return [(x.numpy(), y.numpy()) for x, y in data.take(count)]


def test_schedule_sizes():
    assert [SizeSchedule((224, 180)).size_for_epoch(e) for e in range(4)] == [224, 180, 224, 180]
    drawn = [SizeSchedule((180, 224), "random", seed=3).size_for_epoch(e) for e in range(40)]
    assert all(180 <= s <= 224 for s in drawn) and len(set(drawn)) > 10
    assert drawn == [SizeSchedule((180, 224), "random", seed=3).size_for_epoch(e) for e in range(40)]
    with pytest.raises(ValueError, match="`mode`"):
        SizeSchedule((224,), "cyclic")
    with pytest.raises(ValueError, match="`sizes`"):
        SizeSchedule((224, 180, 200), "random")


def test_training_batches_follow_the_schedule_and_are_deterministic():
    schedule = SizeSchedule((64, 48))
    make = lambda: pipelines.training_dataset(  # noqa: E731
        varied_source(), 4, crop=64, min_side=72, schedule=schedule, seed=7, epochs=3
    )
    batches = take_batches(make(), 18)
    assert [b[0].shape for b in batches] == [(4, 64, 64, 3)] * 6 + [(4, 48, 48, 3)] * 6 + [(4, 64, 64, 3)] * 6
    again = take_batches(make(), 18)
    for (x1, y1), (x2, y2) in zip(batches, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    # Epochs differ from one another (new shuffle and augmentation)...
    assert not np.array_equal(batches[0][0], batches[12][0])
    # ...and every epoch holds each example once (6 full batches of 24).
    for e in range(3):
        assert sorted(np.concatenate([y for _, y in batches[6 * e : 6 * e + 6]]).tolist()) == sorted([0, 1, 2] * 8)


def test_small_size_is_the_large_crop_resized():
    full = take_batches(
        pipelines.training_dataset(varied_source(), 4, 64, 72, SizeSchedule((64,)), seed=1, epochs=1), 1
    )
    small = take_batches(
        pipelines.training_dataset(varied_source(), 4, 64, 72, SizeSchedule((48,)), seed=1, epochs=1), 1
    )
    expected = tf.image.resize(full[0][0], [48, 48], antialias=True).numpy()
    np.testing.assert_allclose(small[0][0], expected, atol=1e-3)


def test_resuming_with_skip_gives_the_same_stream():
    make = lambda start, skip: pipelines.training_dataset(  # noqa: E731
        varied_source(), 4, 64, 72, SizeSchedule((64, 48)), seed=2, start_epoch=start, skip_batches=skip, epochs=3
    )
    whole = take_batches(make(0, 0), 18)
    resumed = take_batches(make(1, 2), 10)
    for (x1, y1), (x2, y2) in zip(whole[8:], resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_crop_larger_than_min_side_is_rejected():
    with pytest.raises(ValueError, match="`crop`"):
        pipelines.training_dataset(varied_source(), 4, crop=100, min_side=64)
    with pytest.raises(ValueError, match="no full batch"):
        pipelines.steps_per_epoch(3, 4)


def test_resize_min_side_upscales_small_images_and_keeps_aspect():
    out = transforms.resize_min_side(tf.zeros([10, 30, 3], tf.uint8), 64)
    assert out.shape == (64, 192, 3) and out.dtype == tf.float32
    assert transforms.resize_min_side(tf.zeros([10, 300, 3]), 64, max_side=500).shape == (17, 500, 3)


def test_ten_views_are_corners_centre_and_flips():
    image = tf.reshape(tf.range(6 * 8 * 3, dtype=tf.float32), [6, 8, 3])
    views = ten_views(image, 4).numpy()
    np.testing.assert_array_equal(views[0], image[:4, :4])
    np.testing.assert_array_equal(views[3], image[2:, 4:])
    np.testing.assert_array_equal(views[4], image[1:5, 2:6])
    np.testing.assert_array_equal(views[5], image[:4, :4][:, ::-1])


def test_topk_accuracy():
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    assert topk_accuracy(p, np.array([1, 2])) == {"top1": 0.5, "top5": 1.0, "top1_error_pct": 50.0, "examples": 2}
    assert topk_accuracy(np.zeros((0, 3)), np.zeros(0))["examples"] == 0


def colour_model(classes=3):
    """Classifies by mean colour: a real any-size network whose answers we know."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    out = keras.layers.Dense(
        classes, activation="softmax", kernel_initializer=keras.initializers.Constant(np.eye(3, classes) * 0.2)
    )(x)
    return keras.Model(inputs, out)


def test_evaluate_every_view_on_any_size_images():
    results = evaluate(
        colour_model(),
        varied_source(),
        views=("center", "full", "ten_view", "multi_scale"),
        crop=48,
        min_side=56,
        scales=(48, 64),
        batch_size=5,
        verbose=False,
    )
    for view in ("center", "full", "ten_view", "multi_scale"):
        assert results[view]["examples"] == 24
        assert results[view]["top1"] == 1.0
    with pytest.raises(ValueError, match="Unknown views"):
        evaluate(colour_model(), varied_source(), views=("twelve",))


class TraceCounter(keras.layers.Layer):
    """Identity; Python code in call() runs only while TensorFlow traces."""

    traces = 0

    def call(self, x):
        TraceCounter.traces += 1
        return x


def test_fit_traces_once_across_sizes_with_xla():
    from keras_spp.layers import SpatialPyramidPooling

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(TraceCounter()(inputs))
    x = SpatialPyramidPooling((2, 1))(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile("sgd", "sparse_categorical_crossentropy", jit_compile=True)
    data = pipelines.training_dataset(varied_source(), 4, 48, 56, SizeSchedule((48, 40)), seed=0, epochs=4)
    before = TraceCounter.traces
    history = model.fit(data, epochs=4, steps_per_epoch=6, verbose=0)
    assert len(history.history["loss"]) == 4
    # One trace of the train step for both sizes and all 24 batches; XLA compiles
    # each concrete size once from it.
    assert TraceCounter.traces - before == 1


def test_ten_views_without_flips_are_the_five_crops():
    image = tf.random.uniform([9, 7, 3])
    np.testing.assert_array_equal(ten_views(image, 5, flip=False).numpy(), ten_views(image, 5).numpy()[:5])
