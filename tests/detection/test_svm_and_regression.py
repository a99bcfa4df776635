import numpy as np

from keras_spp.detection import box_regression, svm
from keras_spp.detection.boxes import decode_boxes


def test_negative_candidates():
    windows = np.array([[0, 0, 10, 10], [0, 0, 10, 12], [50, 50, 60, 60], [50, 50, 60, 61], [0, 0, 10, 40]], np.float32)
    gt = np.array([[0, 0, 10, 10]], np.float32)
    allowed = svm.negative_candidates(windows, gt, np.array([1]), num_classes=2)
    # class 1: the two windows on its object (IoU 1 and 0.83) are not negatives; the
    # window at IoU 0.25 is; [50..61] repeats [50..60] (IoU 0.91 > 0.7) and is dropped.
    np.testing.assert_array_equal(allowed[:, 1], [False, False, True, False, True])
    # class 0 has no object here: everything but the duplicates may be a negative.
    np.testing.assert_array_equal(allowed[:, 0], [True, False, True, False, True])


def test_svms_separate_and_mine_hard_negatives():
    rng = np.random.default_rng(0)
    dim, k = 16, 3
    centres = rng.normal(size=(k, dim)) * 3
    pos_y = np.repeat(np.arange(k), 30)
    pos_x = centres[pos_y] + rng.normal(size=(len(pos_y), dim))
    negatives = []
    for _ in range(20):
        feats = rng.normal(size=(60, dim))
        # a few hard negatives near each class centre, hidden among easy ones
        feats[:3] = centres + rng.normal(size=(3, dim)) * 1.5
        negatives.append((feats.astype(np.float32), np.ones((60, k), bool)))
    config = svm.SvmConfig(C=0.1, initial_negatives=5)
    kernel, bias, stats = svm.train_svms((pos_x, pos_y), negatives, k, config)
    assert kernel.shape == (dim, k) and bias.shape == (k,)
    assert all(s["hard_negatives"] > 0 for s in stats)
    scores = pos_x @ kernel + bias
    assert np.mean(np.argmax(scores, 1) == pos_y) > 0.95
    neg = np.concatenate([f for f, _ in negatives])
    assert np.mean(neg[3:] @ kernel + bias < 0) > 0.95


def test_hard_negatives_are_capped_to_the_hardest():
    rng = np.random.default_rng(3)
    dim = 8
    pos_x = rng.normal(size=(40, dim)) + 2.0
    # Negatives that overlap the positives: an untrained-looking head finds most hard.
    negatives = [(rng.normal(size=(200, dim)).astype(np.float32) + 1.5, np.ones((200, 1), bool)) for _ in range(5)]
    args = ((pos_x, np.zeros(40, int)), negatives, 1)
    _, _, (free,) = svm.train_svms(*args, svm.SvmConfig(C=0.1, initial_negatives=5))
    assert free["hard_negatives"] == free["hard_negatives_found"] > 50
    kernel, bias, (capped,) = svm.train_svms(*args, svm.SvmConfig(C=0.1, initial_negatives=5, max_hard_negatives=50))
    assert capped["hard_negatives"] == 50 and capped["hard_negatives_found"] == free["hard_negatives_found"]
    neg = np.concatenate([f for f, _ in negatives])
    assert np.mean(pos_x @ kernel[:, 0]) > np.mean(neg @ kernel[:, 0]) + 1e-3


def test_svm_without_positives_is_reported():
    negatives = [(np.ones((4, 3), np.float32), np.ones((4, 2), bool))]
    kernel, bias, stats = svm.train_svms((np.ones((2, 3)), np.array([0, 0])), negatives, 2, svm.SvmConfig())
    assert stats[1]["skipped"] and np.all(kernel[:, 1] == 0)


def test_ridge_recovers_a_linear_map():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 8)) + 5
    true_w = rng.normal(size=(8, 4)) * 0.1
    y = x @ true_w + 0.3
    classes = np.zeros(400, int)
    kernel, bias = box_regression.fit_box_regressors(x, classes, y, num_classes=2, l2=1e-6)
    np.testing.assert_allclose(x @ kernel[:, :4] + bias[:4], y, atol=1e-4)
    assert np.all(kernel[:, 4:] == 0) and np.all(bias[4:] == 0)


def test_regression_moves_windows_onto_their_objects():
    # features that encode each window's offset: the regressor must learn to undo it
    rng = np.random.default_rng(2)
    gt = np.array([[20, 30, 80, 100]], np.float32)
    jitter = rng.uniform(-6, 6, (300, 4)).astype(np.float32)
    windows = gt + jitter
    max_iou = np.full(300, 0.9, np.float32)
    rows, classes, targets = box_regression.regression_targets(windows, gt, max_iou, np.zeros(300, int), [1])
    features = np.concatenate([targets, rng.normal(size=(300, 4)) * 0.01], 1)
    kernel, bias = box_regression.fit_box_regressors(features, classes, targets, 2, l2=1e-3)
    deltas = features @ kernel + bias
    moved = decode_boxes(windows, deltas[:, 4:8])
    assert np.abs(moved - gt).max() < 0.5 < np.abs(windows - gt).mean()


def test_no_regression_samples_leaves_zero_weights():
    kernel, bias = box_regression.fit_box_regressors(np.zeros((0, 5)), np.zeros(0, int), np.zeros((0, 4)), 3)
    assert kernel.shape == (5, 12) and not kernel.any() and not bias.any()


def test_ridge_fit_reads_the_features_without_a_float64_copy():
    # At the paper's width the sample is 5000 x 12800: a float64 copy of it (512 MB)
    # was the fit's largest array. The fit now works a block of columns at a time.
    import tracemalloc

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4096)).astype(np.float32)
    y = rng.normal(size=(200, 4))
    expected = box_regression.fit_one_class(x.astype(np.float64), y, 10.0, 0.5, chunk_columns=4096)
    tracemalloc.start()
    try:
        got = box_regression.fit_one_class(x, y, 10.0, 0.5, chunk_columns=512)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * x.size * 8
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-9, atol=1e-12)
