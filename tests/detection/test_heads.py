import keras
import numpy as np
import pytest

from keras_spp.detection import heads
from keras_spp.detection.features import MultiScaleRoiFeatures
from keras_spp.detection.rcnn import WarpedWindowFeatures
from keras_spp.models import backbone


@pytest.fixture(scope="module")
def detector():
    keras.utils.set_random_seed(0)
    roi = MultiScaleRoiFeatures(backbone("zf5", width=0.125), (96,), (2, 1), window_size=48, name="roi_features")
    return heads.spp_detector(roi, num_classes=3, fc_units=24)


def inputs(n=7):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, 64, 80, 3)).astype(np.float32)
    y = rng.uniform(0, 50, (n, 2))
    x = rng.uniform(0, 60, (n, 2))
    boxes = np.stack([y.min(1), x.min(1), y.max(1) + 4, x.max(1) + 4], 1).astype(np.float32)
    return {"image": image, "boxes": boxes}


def test_outputs(detector):
    out = detector(inputs())
    assert out["class_probabilities"].shape == (7, 4)
    np.testing.assert_allclose(np.sum(out["class_probabilities"], 1), 1, rtol=1e-5)
    assert out["svm_scores"].shape == (7, 3) and out["box_deltas"].shape == (7, 12)
    empty = detector({"image": inputs()["image"], "boxes": np.zeros((0, 4), np.float32)})
    assert empty["class_probabilities"].shape == (0, 4)


def test_head_model_shares_weights(detector):
    head = heads.head_model(detector)
    pooled = heads.roi_features_of(detector)(inputs()["image"], inputs()["boxes"])
    np.testing.assert_allclose(
        head(pooled, training=False).numpy(), detector(inputs())["class_probabilities"].numpy(), rtol=1e-5, atol=1e-6
    )
    assert head.get_layer("fc6") is detector.get_layer("fc6")


def test_set_linear_writes_and_checks_shapes(detector):
    fc7 = heads.fc7_model(detector)
    kernel = np.random.default_rng(1).normal(size=(24, 3)).astype(np.float32)
    heads.set_linear(detector, "svm", kernel, np.array([1, 2, 3], np.float32))
    x = inputs()
    pooled = heads.roi_features_of(detector)(x["image"], x["boxes"])
    expected = fc7(pooled).numpy() @ kernel + [1, 2, 3]
    np.testing.assert_allclose(detector(x)["svm_scores"].numpy(), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="expected kernel/bias shapes"):
        heads.set_linear(detector, "svm", kernel[:, :2], np.zeros(2))


def test_truncated_svd_full_rank_keeps_the_layers(detector):
    x = inputs()
    reference = detector(x)
    same = heads.truncated_fc(detector, {"fc6": 1000, "fc7": 1000})
    assert same.get_layer("pooled_head").get_layer("fc6") is detector.get_layer("fc6")
    np.testing.assert_allclose(same(x)["class_probabilities"], reference["class_probabilities"], rtol=1e-5)
    with pytest.raises(ValueError, match="'fc6' or 'fc7'"):
        heads.truncated_fc(detector, {"fc8": 3})


@pytest.fixture(scope="module")
def low_rank_detector():
    """A detector whose fc6 has rank 5 and fc7 rank 7 exactly (its own, not the shared one)."""
    keras.utils.set_random_seed(1)
    roi = MultiScaleRoiFeatures(backbone("zf5", width=0.125), (96,), (2, 1), window_size=48, name="roi_features")
    model = heads.spp_detector(roi, num_classes=3, fc_units=24)
    rng = np.random.default_rng(2)
    for name, rank in (("fc6", 5), ("fc7", 7)):
        kernel, bias = model.get_layer(name).get_weights()
        low = rng.normal(size=(kernel.shape[0], rank)) @ rng.normal(size=(rank, kernel.shape[1]))
        low /= np.sqrt(kernel.shape[0] * rank)
        model.get_layer(name).set_weights([low.astype(np.float32), rng.normal(0, 0.1, bias.shape).astype(np.float32)])
    # SVMs start at zero: give them weights, so that their scores show fc7 linearly.
    heads.set_linear(model, "svm", rng.normal(size=(24, 3)).astype(np.float32), np.zeros(3, np.float32))
    return model


def test_truncated_svd_at_the_kernels_rank_is_exact(low_rank_detector):
    x = inputs()
    reference = low_rank_detector(x)
    truncated = heads.truncated_fc(low_rank_detector, {"fc6": 5, "fc7": 7})
    head = truncated.get_layer("pooled_head")
    assert head.get_layer("fc6_svd_u").units == 5 and head.get_layer("fc7_svd_u").units == 7
    got = truncated(x)
    scale = np.abs(reference["svm_scores"]).max()
    assert scale > 0
    np.testing.assert_allclose(got["svm_scores"], reference["svm_scores"], rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(got["class_probabilities"], reference["class_probabilities"], rtol=1e-4, atol=1e-6)


def test_truncated_svd_below_the_rank_is_the_best_rank_k_kernel(low_rank_detector):
    # Eckart-Young: the best rank-k approximation (unique here: distinct singular
    # values) misses by sqrt(sum of the squared singular values past k) in Frobenius
    # norm and by the (k+1)-th in spectral norm; nothing else of rank k does.
    head = heads.pooled_head(low_rank_detector, {"fc6": 3, "fc7": 4})
    for name, rank in (("fc6", 3), ("fc7", 4)):
        kernel, bias = (w.astype(np.float64) for w in low_rank_detector.get_layer(name).get_weights())
        (u,) = head.get_layer(f"{name}_svd_u").get_weights()
        v, v_bias = head.get_layer(f"{name}_svd_v").get_weights()
        composite = u.astype(np.float64) @ v
        singular = np.linalg.svd(kernel, compute_uv=False)
        assert u.shape == (kernel.shape[0], rank) and v.shape == (rank, kernel.shape[1])
        assert singular[rank - 1] > 1.01 * singular[rank]  # the truncation point is not a tie
        assert np.linalg.norm(kernel - composite) == pytest.approx(np.sqrt(np.sum(singular[rank:] ** 2)), rel=1e-4)
        assert np.linalg.norm(kernel - composite, 2) == pytest.approx(singular[rank], rel=1e-4)
        np.testing.assert_array_equal(v_bias, bias.astype(np.float32))
        assert head.get_layer(f"{name}_svd_v").activation is low_rank_detector.get_layer(name).activation


def test_rcnn_features_take_the_same_heads():
    conv = backbone("zf5", width=0.125)
    warped = WarpedWindowFeatures(conv, (2, 1), window_size=64, context=8, chunk_size=4)
    model = heads.spp_detector(warped, 2, fc_units=8)
    assert model(inputs(5))["box_deltas"].shape == (5, 8)
    with pytest.raises(ValueError, match="MultiScaleRoiFeatures"):
        heads.spp_detector(conv, 2)


def test_save_and_load(detector, tmp_path):
    detector.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras")
    x = inputs()
    for key, value in detector(x).items():
        np.testing.assert_allclose(loaded(x)[key], value, rtol=1e-5, atol=1e-6)
