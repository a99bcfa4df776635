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


def test_truncated_svd_full_rank_is_exact_and_low_rank_is_close(detector):
    x = inputs()
    reference = detector(x)
    same = heads.truncated_fc(detector, {"fc6": 1000, "fc7": 1000})(x)
    np.testing.assert_allclose(same["class_probabilities"], reference["class_probabilities"], rtol=1e-5)
    # Rank = min(m, n) - 1 drops only the smallest singular direction.
    low = heads.truncated_fc(detector, {"fc6": 23, "fc7": 23})
    assert low.get_layer("pooled_head").get_layer("fc6_svd_u").units == 23
    err = np.abs(low(x)["class_probabilities"] - reference["class_probabilities"]).max()
    assert err < 0.05
    with pytest.raises(ValueError, match="'fc6' or 'fc7'"):
        heads.truncated_fc(detector, {"fc8": 3})


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
