import numpy as np
import pytest

from keras_spp.detection import sampling


def test_labels_follow_the_paper_thresholds():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    windows = np.array(
        [
            [0, 0, 10, 10],  # IoU 1 with gt 0 -> class 3 + 1
            [0, 0, 10, 20],  # IoU 0.5 with gt 0 -> positive
            [0, 0, 10, 21],  # IoU 10/21 < 0.5 -> background
            [0, 0, 10, 100],  # IoU 0.1 -> background (inclusive)
            [0, 0, 10, 101],  # IoU < 0.1 -> unused
            [21, 21, 30, 30],  # IoU 0.81 with gt 1 -> class 7 + 1
        ],
        np.float32,
    )
    max_iou, index = sampling.best_overlaps(windows, gt)
    labels = sampling.window_labels(max_iou, index, np.array([3, 7]))
    np.testing.assert_array_equal(labels, [4, 4, 0, 0, -1, 8])


def test_image_without_objects_gives_only_unused_windows():
    max_iou, index = sampling.best_overlaps(np.array([[0, 0, 5, 5]], np.float32), np.zeros((0, 4)))
    assert max_iou.tolist() == [0.0] and index.tolist() == [-1]
    assert sampling.window_labels(max_iou, index, np.zeros(0)).tolist() == [-1]


def test_minibatches_hold_a_quarter_positives():
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.full(50, 3), np.zeros(2000, np.int64), np.full(100, -1)])
    features = rng.normal(size=(len(labels), 6)).astype(np.float16)
    features[:, 0] = np.arange(len(labels)) % 1000  # float16 holds these exactly
    features[:, 1] = np.arange(len(labels)) // 1000
    drawn = []
    for x, y in sampling.fine_tuning_dataset(features, labels, batch_size=128, seed=1).take(40):
        assert x.shape == (128, 6) and x.dtype.name == "float32"
        assert np.sum(y.numpy() > 0) == 32  # the paper: 25% of each minibatch
        assert -1 not in y.numpy()
        rows = (x.numpy()[:, 1] * 1000 + x.numpy()[:, 0]).astype(int)
        np.testing.assert_array_equal(labels[rows], y.numpy())  # each row with its own label
        drawn.append(rows)
    drawn = np.concatenate(drawn)
    # 1280 draws from 50 positives and 3840 from 2000 negatives: uniform draws reach every
    # positive and most negatives (1 - exp(-1.92) = 85% expected), never an unused row.
    assert set(drawn[labels[drawn] > 0]) == set(range(50))
    assert 0.8 < len(set(drawn[labels[drawn] == 0])) / 2000 < 0.9
    assert drawn.max() < 2050


def test_same_seed_same_batches():
    labels = np.array([1, 0, 0, 2, 0, 0, 0, 0])
    features = np.arange(16, dtype=np.float32).reshape(8, 2)
    a = [y.numpy().tolist() for _, y in sampling.fine_tuning_dataset(features, labels, 4, seed=5).take(5)]
    b = [y.numpy().tolist() for _, y in sampling.fine_tuning_dataset(features, labels, 4, seed=5).take(5)]
    assert a == b


def test_missing_positives_are_explained():
    with pytest.raises(ValueError, match="0 positives"):
        sampling.fine_tuning_dataset(np.zeros((3, 2)), np.array([0, 0, -1]))
    with pytest.raises(ValueError, match="negative_iou"):
        sampling.window_labels(np.zeros(1), np.zeros(1, int), np.zeros(1), 0.5, (0.4, 0.6))
