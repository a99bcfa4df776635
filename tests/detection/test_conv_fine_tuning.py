import keras
import numpy as np
import pytest
from PIL import Image

from keras_spp.data.detection_examples import DetectionExample
from keras_spp.detection import conv_fine_tuning as cft
from keras_spp.detection import heads, scales, training
from keras_spp.detection.features import MultiScaleRoiFeatures
from keras_spp.models import backbone


@pytest.fixture()
def detector():
    keras.utils.set_random_seed(0)
    conv = backbone("zf5", width=0.125)
    conv.trainable = False
    roi = MultiScaleRoiFeatures(conv, (64, 96), (2, 1), window_size=48, name="roi_features")
    return heads.spp_detector(roi, num_classes=2, fc_units=16)


@pytest.fixture()
def examples(tmp_path):
    rng = np.random.default_rng(0)
    out = []
    for i, (h, w) in enumerate([(70, 90), (100, 60)]):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        boxes = np.array([[5, 5, 40, 30], [30, 20, 65, 55]], np.float32)
        out.append(DetectionExample(f"im{i}", str(path), h, w, boxes, np.array([0, 1]), np.zeros(2, bool)))
    return out


def proposals_of(examples, n=40, seed=1):
    rng = np.random.default_rng(seed)
    result = {}
    for e in examples:
        y = rng.uniform(0, e.height - 1, (n, 2))
        x = rng.uniform(0, e.width - 1, (n, 2))
        result[e.image_id] = np.stack([y.min(1), x.min(1), y.max(1) + 1, x.max(1) + 1], 1).astype(np.float32)
    return result


def reference_sample_counts(labels, per_image, fraction):
    positives, negatives = int(np.sum(labels > 0)), int(np.sum(labels == 0))
    num_pos = min(positives, int(round(per_image * fraction)))
    return num_pos, min(negatives, per_image - num_pos)


@pytest.mark.parametrize("per_image,fraction", [(8, 0.25), (64, 0.25), (3, 1.0), (1, 0.5)])
def test_sample_windows_follows_the_fractions(per_image, fraction):
    rng = np.random.default_rng(0)
    windows = rng.uniform(0, 50, (30, 4)).astype(np.float32)
    max_iou = rng.uniform(0, 1, 30)
    gt_index = rng.integers(0, 2, 30)
    config = cft.ConvFineTuningConfig(windows_per_image=per_image, positive_fraction=fraction)
    expected_labels = np.where(max_iou >= 0.5, np.array([4, 7])[gt_index] + 1, np.where(max_iou >= 0.1, 0, -1))
    boxes, labels = cft.sample_windows(windows, expected_labels, config, rng)
    num_pos, num_neg = reference_sample_counts(expected_labels, per_image, fraction)
    assert (np.sum(labels > 0), np.sum(labels == 0)) == (num_pos, num_neg)
    # Each sampled box is a distinct window, with that window's label.
    rows = [int(np.flatnonzero((windows == b).all(1))[0]) for b in boxes]
    assert len(set(rows)) == len(rows)
    np.testing.assert_array_equal(labels, expected_labels[rows])


def test_sample_windows_of_an_image_with_no_usable_window_is_empty():
    rng = np.random.default_rng(0)
    boxes, labels = cft.sample_windows(np.zeros((5, 4), np.float32), np.full(5, -1), cft.ConvFineTuningConfig(), rng)
    assert boxes.shape == (0, 4) and labels.shape == (0,)


def test_dataset_resizes_each_image_to_one_of_the_scales_with_its_windows(detector, examples):
    roi = heads.roi_features_of(detector)
    records = training.compute_window_features(roi, examples, proposals_of(examples))
    config = cft.ConvFineTuningConfig(windows_per_image=16)
    seen_scales = set()
    for x, labels in cft.image_windows_dataset(roi, records, examples, config).take(12):
        image, boxes = x["image"].numpy(), x["boxes"].numpy()
        short = min(image.shape[1:3])
        assert short in (64, 96)
        seen_scales.add(short)
        # The windows scaled with the image: divided by its factor, each is one of its
        # windows, and one the detector pools at this scale.
        matches = [
            (e, boxes / (short / min(e.height, e.width)))
            for e, r in zip(examples, records)
            if np.isclose(boxes / (short / min(e.height, e.width)), r.windows[:, None], rtol=1e-4).all(-1).any(0).all()
        ]
        assert matches
        e, originals = matches[0]
        factors = scales.scale_factors(e.height, e.width, roi.scales, roi.max_side)
        assert (scales.assign_scales(originals, factors, roi.window_size) == roi.scales.index(short)).all()
        assert len(labels) == len(boxes) <= 16 and labels.numpy().min() >= 0
    assert seen_scales == {64, 96}


def test_dataset_without_usable_windows_is_an_error(detector, examples):
    roi = heads.roi_features_of(detector)
    far = {e.image_id: np.array([[0, 0, 1, 1]], np.float32) for e in examples}
    records = training.compute_window_features(roi, examples, far)
    for r in records:  # forget the ground truth rows, leaving only windows far from every object
        r.max_iou[:] = 0.0
    with pytest.raises(ValueError, match="no training image has a window"):
        cft.image_windows_dataset(roi, records, examples, cft.ConvFineTuningConfig())


def test_end_to_end_training_moves_the_conv_layers_and_freezes_them_again(detector, examples):
    roi = heads.roi_features_of(detector)
    records = training.compute_window_features(roi, examples, proposals_of(examples))
    conv_before = [w.copy() for w in roi.backbone.get_weights()]
    fc6_before = detector.get_layer("fc6").get_weights()[0].copy()
    history = cft.fine_tune_end_to_end(
        detector,
        records,
        examples,
        cft.ConvFineTuningConfig(steps=4, windows_per_image=8, learning_rate=1e-2),
        verbose=0,
    )
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"]).all()
    changed = [not np.array_equal(a, b) for a, b in zip(conv_before, roi.backbone.get_weights())]
    assert all(changed)
    assert not np.array_equal(fc6_before, detector.get_layer("fc6").get_weights()[0])
    assert roi.backbone.trainable is False
    # The detector itself (multi-scale, at test time) runs on the new weights.
    image = np.random.default_rng(0).uniform(0, 255, (1, 70, 90, 3)).astype(np.float32)
    out = detector({"image": image, "boxes": records[0].windows[:5]})
    assert out["class_probabilities"].shape == (5, 3)


def test_end_to_end_model_pools_like_the_detector_at_a_single_scale(detector):
    roi = heads.roi_features_of(detector)
    model = cft.end_to_end_model(detector)
    rng = np.random.default_rng(0)
    resized = rng.uniform(0, 255, (1, 64, 80, 3)).astype(np.float32)
    boxes = np.array([[0, 0, 30, 40], [10, 20, 60, 70]], np.float32)
    expected = heads.head_model(detector)(roi.pool_scaled(resized, boxes), training=False)
    np.testing.assert_allclose(model({"image": resized, "boxes": boxes}, training=False), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "field,value", [("steps", 0), ("windows_per_image", 0), ("positive_fraction", 0.0), ("positive_fraction", 1.5)]
)
def test_bad_config_is_explained(field, value):
    with pytest.raises(ValueError, match=field):
        cft.ConvFineTuningConfig(**{field: value})
