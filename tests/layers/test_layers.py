import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_spp.layers import LocalResponseNormalization, RoiPyramidPooling, SpatialPyramidPooling
from tests.ops import pooling_reference as ref

SIZES = [(64, 64), (45, 80), (97, 33)]


def spp_model(levels=(4, 2, 1), classes=5, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = SpatialPyramidPooling(levels)(x)
    outputs = keras.layers.Dense(classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "layer",
    [
        SpatialPyramidPooling((6, 3, 2, 1), "avg", "paper", name="spp"),
        RoiPyramidPooling((4, 1), 0.125, "roi_pool", name="roi"),
        RoiPyramidPooling((6, 3, 2, 1), max_boxes_per_chunk=500, name="roi_chunked"),
        LocalResponseNormalization(size=3, alpha=2e-4, beta=0.5, bias=1.0),
    ],
)
def test_get_config_round_trips(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)).get_config() == config


def test_layer_validates_arguments():
    with pytest.raises(ValueError, match="`levels`"):
        SpatialPyramidPooling(levels=(6, 0))
    with pytest.raises(ValueError, match="`pooling`"):
        SpatialPyramidPooling(pooling="median")
    with pytest.raises(ValueError, match="`bin_rule`"):
        SpatialPyramidPooling(bin_rule="ceil")
    with pytest.raises(ValueError, match="`coordinate_rule`"):
        RoiPyramidPooling(coordinate_rule="bilinear")
    with pytest.raises(ValueError, match="`spatial_scale`"):
        RoiPyramidPooling(spatial_scale=-1.0)
    with pytest.raises(ValueError, match="`max_boxes_per_chunk`"):
        RoiPyramidPooling(max_boxes_per_chunk=0)
    with pytest.raises(ValueError, match="`size`"):
        LocalResponseNormalization(size=4)


def test_compute_output_shape_with_unknown_spatial_dims():
    assert SpatialPyramidPooling().compute_output_shape((None, None, None, 256)) == (None, 12800)
    assert RoiPyramidPooling().compute_output_shape((1, None, None, 256), (None, 4), (None,)) == (None, 12800)
    with pytest.raises(ValueError, match="rank 4"):
        SpatialPyramidPooling().compute_output_shape((None, 5, 256))


def test_one_model_many_sizes_matches_reference():
    model = spp_model()
    features = keras.Model(model.input, model.layers[2].output)
    for h, w in SIZES:
        x = np.random.default_rng(h).uniform(size=(2, h, w, 3)).astype(np.float32)
        pooled = model.layers[3](features(x)).numpy()
        np.testing.assert_allclose(pooled, ref.spatial_pyramid_pool(features(x).numpy(), (4, 2, 1)), rtol=1e-6)
        assert model(x).shape == (2, 5)


def multi_size_dataset(batches=6, batch_size=4, classes=5):
    rng = np.random.default_rng(0)

    def generate():
        for i in range(batches):
            h, w = SIZES[i % len(SIZES)]
            x = rng.uniform(size=(batch_size, h, w, 3)).astype(np.float32)
            y = rng.integers(0, classes, size=batch_size)
            yield x, y

    return tf.data.Dataset.from_generator(
        generate,
        output_signature=(tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None], tf.int64)),
    )


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_fit_with_xla_on_batches_of_different_sizes(policy):
    keras.mixed_precision.set_global_policy(policy)
    model = spp_model()
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy", jit_compile=True)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(multi_size_dataset(), epochs=2, verbose=0)
    assert model.jit_compile
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, model.trainable_weights))
    if policy == "mixed_float16":
        assert model.layers[3].compute_dtype == "float16"
    for h, w in SIZES:
        assert np.isfinite(model.predict(np.ones((1, h, w, 3), np.float32), verbose=0)).all()


def test_keras_file_round_trip(tmp_path):
    model = spp_model()
    path = str(tmp_path / "spp.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for h, w in SIZES[:2]:
        x = np.random.default_rng(w).uniform(size=(2, h, w, 3)).astype(np.float32)
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)


def test_export_with_none_spatial_dims_gives_same_numbers(tmp_path):
    model = spp_model()
    path = str(tmp_path / "exported")
    model.export(path, format="tf_saved_model", verbose=False)
    restored = tf.saved_model.load(path)
    serve = restored.signatures["serving_default"]
    assert serve.structured_input_signature[1][next(iter(serve.structured_input_signature[1]))].shape.as_list() == [
        None,
        None,
        None,
        3,
    ]
    for h, w in SIZES[:2]:
        x = np.random.default_rng(h + w).uniform(size=(3, h, w, 3)).astype(np.float32)
        np.testing.assert_allclose(restored.serve(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
        (out,) = serve(tf.constant(x)).values()
        np.testing.assert_allclose(out.numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


def roi_model():
    features = keras.Input((None, None, 8), name="features")
    boxes = keras.Input((4,), name="boxes")
    indices = keras.Input((), dtype="int32", name="box_indices")
    pooled = RoiPyramidPooling((3, 1), spatial_scale=0.25)(features, boxes, indices)
    scores = keras.layers.Dense(2)(pooled)
    return keras.Model([features, boxes, indices], scores)


def test_roi_layer_in_a_functional_model_saves_and_compiles(tmp_path):
    model = roi_model()
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2, 9, 12, 8)).astype(np.float32)
    boxes = rng.uniform(0, 48, size=(7, 4)).astype(np.float32)
    indices = rng.integers(0, 2, size=7).astype(np.int32)
    out = model([feats, boxes, indices]).numpy()
    assert out.shape == (7, 2)
    path = str(tmp_path / "roi.keras")
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path)([feats, boxes, indices]).numpy(), out, rtol=1e-6)
    xla = tf.function(lambda *a: model(list(a)), jit_compile=True)
    np.testing.assert_allclose(xla(feats, boxes, indices).numpy(), out, rtol=1e-5)
    np.testing.assert_allclose(
        xla(feats[:1, :5], boxes[:3], indices[:3] * 0).numpy(),
        model([feats[:1, :5], boxes[:3], indices[:3] * 0]).numpy(),
        rtol=1e-5,
    )


def lrn_reference(x, size, alpha, beta, bias):
    c = x.shape[-1]
    out = np.empty_like(x, dtype=np.float64)
    for k in range(c):
        lo, hi = max(0, k - size // 2), min(c, k + size // 2 + 1)
        out[..., k] = x[..., k] / (bias + alpha / size * (x[..., lo:hi] ** 2).sum(-1)) ** beta
    return out


def test_lrn_matches_the_caffe_formula_and_compiles():
    x = np.random.default_rng(0).normal(size=(2, 4, 5, 7)).astype(np.float32) * 10
    layer = LocalResponseNormalization(size=5, alpha=1e-2, beta=0.75, bias=2.0)
    expected = lrn_reference(x.astype(np.float64), 5, 1e-2, 0.75, 2.0)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(tf.function(layer, jit_compile=True)(x).numpy(), expected, rtol=1e-5)
    mixed = LocalResponseNormalization(size=5, alpha=1e-2, dtype="mixed_float16")
    out = mixed(x * 1000)  # squares of 1e4 overflow float16; the layer sums in float32
    assert out.dtype == tf.float16 and np.isfinite(out.numpy()).all()
