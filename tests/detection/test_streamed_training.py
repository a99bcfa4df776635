"""Training the heads from on-disk shards: the stream's minibatches, the bounded box
regression sample, SVM mining resumed after a kill, the disk budget, and a
non-finite loss stopping the run."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_spp.data.detection_examples import DetectionExample
from keras_spp.detection import box_regression, sampling, svm, training, window_cache, window_stream
from keras_spp.detection.training_checks import NonFiniteLossError, RaiseOnNonFiniteLoss, softmax_chance_loss


def coordinates(image, boxes):
    """Each window's own coordinates as its features, so rows can be traced."""
    return tf.concat([boxes, tf.fill([tf.shape(boxes)[0], 1], tf.reduce_mean(image))], axis=1)


def examples_with_proposals(tmp_path, count=6, seed=0):
    rng = np.random.default_rng(seed)
    examples, proposals = [], {}
    for i in range(count):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (100, 120, 3), dtype=np.uint8)).save(path)
        gt = np.array([[10, 10, 50, 40], [55, 60, 95, 110]], np.float32)
        examples.append(DetectionExample(f"im{i}", str(path), 100, 120, gt, np.array([0, 1]), np.zeros(2, bool)))
        near = np.repeat(gt, 15, axis=0) + rng.normal(0, 5, (30, 4))
        y, x = rng.uniform(0, 99, (40, 2)), rng.uniform(0, 119, (40, 2))
        far = np.stack([y.min(1), x.min(1), y.max(1) + 1, x.max(1) + 1], 1)
        proposals[f"im{i}"] = np.concatenate([near, far]).astype(np.float32)
    return examples, proposals


def test_a_shard_name_never_comes_from_the_image_id(tmp_path):
    cache = window_cache.WindowFeatureCache(str(tmp_path / "cache"))
    for image_id in ("../../../../tmp/x", "2008/000123", "/etc/passwd", "a\0b"):
        example = DetectionExample(image_id, str(tmp_path / "x.jpg"), 10, 10, np.zeros((0, 4)), [], [])
        path = cache.shard_path(example)
        assert (
            path.startswith(str(tmp_path / "cache") + "/") and path.count("/") == str(tmp_path / "cache").count("/") + 1
        )


def test_the_stream_draws_a_quarter_positives_from_every_image(tmp_path):
    examples, proposals = examples_with_proposals(tmp_path)
    records = training.compute_window_features(coordinates, examples, proposals, cache_dir=str(tmp_path / "c"))
    labels = [sampling.window_labels(r.max_iou, r.gt_index, e.labels) for r, e in zip(records, examples)]
    every = {}
    for r, y in zip(records, labels):
        for row, label in zip(r.features.astype(np.float32), y):
            every[tuple(np.round(row[:4], 0))] = label
    seen = []
    for x, y in window_stream.fine_tuning_stream(records, labels, batch_size=16, seed=1).take(30):
        x, y = x.numpy(), y.numpy()
        assert x.dtype == np.float32 and x.shape == (16, 5)
        assert np.sum(y > 0) == 4 and np.all(y[4:] == 0)
        # Each row is a real window with its own label.
        for row, label in zip(x, y):
            assert every[tuple(np.round(row[:4], 0))] == label
        seen.append(y)
    again = [y.numpy() for _, y in window_stream.fine_tuning_stream(records, labels, batch_size=16, seed=1).take(30)]
    np.testing.assert_array_equal(np.stack(seen), np.stack(again))


def test_the_stream_refuses_data_without_positives(tmp_path):
    examples, proposals = examples_with_proposals(tmp_path, count=1)
    records = training.compute_window_features(coordinates, examples, proposals)
    with pytest.raises(ValueError, match="positive and background"):
        window_stream.fine_tuning_stream(records, [np.zeros(len(records[0].windows), np.int64)])


def test_images_without_proposals_or_objects_still_train(tmp_path):
    examples, proposals = examples_with_proposals(tmp_path, count=3)
    del proposals["im0"]  # no proposals: its ground truth alone
    empty = examples[1]
    examples[1] = DetectionExample(empty.image_id, empty.image_path, 100, 120, np.zeros((0, 4)), [], [])
    records = training.compute_window_features(coordinates, examples, proposals)
    assert len(records[0].windows) == 2 and records[1].num_gt == 0 and len(records[1].windows) == 70
    assert np.all(records[1].max_iou == 0)


def _tiny_detector_and_records(tmp_path, count=4):
    import keras

    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.detection.heads import spp_detector
    from keras_spp.models import backbone

    keras.utils.set_random_seed(0)
    roi = MultiScaleRoiFeatures(backbone("zf5", width=0.125), scales=(80,), levels=(2, 1), window_size=48)
    detector = spp_detector(roi, 2, fc_units=16)
    examples, proposals = examples_with_proposals(tmp_path, count=count)
    return detector, examples, training.compute_window_features(roi, examples, proposals)


def test_streamed_box_regression_is_the_joint_fit_and_bounded(tmp_path):
    detector, examples, records = _tiny_detector_and_records(tmp_path)
    by_id = {e.image_id: e for e in examples}
    xs, cs, ts = [], [], []
    for r in records:
        e = by_id[r.image_id]
        rows, cls, tgt = box_regression.regression_targets(r.windows, e.boxes, r.max_iou, r.gt_index, e.labels)
        xs.append(r.features[rows].astype(np.float32))
        cs.append(cls)
        ts.append(tgt)
    x, c, t = np.concatenate(xs), np.concatenate(cs), np.concatenate(ts)
    kernel, bias = box_regression.fit_box_regressors(x, c, t, 2)
    counts = training.fit_box_regression(detector, records, examples, training.HeadTrainingConfig())
    np.testing.assert_array_equal(counts, np.bincount(c, minlength=2))
    got_kernel, got_bias = detector.get_layer("bbox").get_weights()
    np.testing.assert_allclose(got_kernel, kernel, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_bias, bias, rtol=1e-4, atol=1e-5)
    # Over the bound: each class fitted on a seeded sample of that many, counts unchanged.
    small = training.HeadTrainingConfig(box_regression_max_windows=10)
    chosen, counts = training._regression_sample(records, by_id, small, 2)
    assert [len(index) for index, _, _ in chosen] == [10, 10] and counts.tolist() == np.bincount(c).tolist()
    again, _ = training._regression_sample(records, by_id, small, 2)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(chosen, again))
    training.fit_box_regression(detector, records, examples, small)
    assert np.isfinite(detector.get_layer("bbox").get_weights()[0]).all()


def test_box_regression_per_class_equals_the_joint_fit():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6)) + 2
    classes = rng.integers(0, 3, 300)
    t = rng.normal(size=(300, 4))
    kernel, bias = box_regression.fit_box_regressors(x, classes, t, 3, l2=10.0)
    mean_norm = float(np.linalg.norm(x, axis=1).mean())
    for k in range(3):
        kk, bk = box_regression.fit_box_regressors(
            x[classes == k], classes[classes == k] * 0, t[classes == k], 1, 10.0, mean_norm=mean_norm
        )
        np.testing.assert_allclose(kk, kernel[:, 4 * k : 4 * k + 4], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(bk, bias[4 * k : 4 * k + 4], rtol=1e-4, atol=1e-6)


def _svm_stream(seed=0, images=12, dim=8, k=2):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 3
    data = []
    for _ in range(images):
        pos_y = rng.integers(0, k, 3)
        pos_x = centres[pos_y] + rng.normal(size=(3, dim))
        neg = rng.normal(size=(40, dim))
        neg[:2] = centres + rng.normal(size=(k, dim)) * 1.5
        data.append((pos_x.astype(np.float32), pos_y, neg.astype(np.float32), np.ones((40, k), bool)))
    return data, dim, k


def test_svm_mining_resumes_after_a_kill_as_if_never_killed(tmp_path):
    data, dim, k = _svm_stream()
    config = svm.SvmConfig(C=0.1, initial_negatives=4, mining_rounds=2, max_hard_negatives=30)
    whole = svm.train_svms_streamed(lambda desc: iter(data), k, dim, config)

    passes = []

    def dying(desc):
        passes.append(desc)
        if len(passes) == 3:  # the second mining round: killed half way
            return iter(data[:5] + [None])
        return iter(data)

    with pytest.raises(TypeError):
        svm.train_svms_streamed(dying, k, dim, config, state_dir=str(tmp_path), key="net")
    resumed = svm.train_svms_streamed(lambda desc: iter(data), k, dim, config, state_dir=str(tmp_path), key="net")
    np.testing.assert_array_equal(resumed[0], whole[0])
    np.testing.assert_array_equal(resumed[1], whole[1])
    assert resumed[2] == whole[2]
    # Another network's state is not taken.
    other = svm.train_svms_streamed(lambda desc: iter(data), k, dim, config, state_dir=str(tmp_path), key="other")
    np.testing.assert_array_equal(other[0], whole[0])


def test_svm_caches_stay_bounded():
    data, dim, k = _svm_stream(images=30)
    config = svm.SvmConfig(C=0.1, initial_negatives=10, mining_rounds=1, max_hard_negatives=25)
    _, _, stats = svm.train_svms_streamed(lambda desc: iter(data), k, dim, config)
    for entry in stats:
        assert entry["initial_negatives"] == 25 and entry["hard_negatives"] <= 25
        assert entry["hard_negatives_found"] >= entry["hard_negatives"]


def test_random_negatives_are_one_sample_shared_by_the_classes():
    rng = np.random.default_rng(0)
    sample = svm._SharedSample(dim=3, num_classes=4)
    for image in range(200):
        # Row values say which image and row they came from; class k may use a row
        # unless (row + k) % 3 == 0, so each row's mask is known from its values.
        rows = np.stack([np.full(5, image), np.arange(5), np.zeros(5)], axis=1)
        allowed = (np.arange(5)[:, None] + np.arange(4)) % 3 != 0
        sample.add(rows, allowed, capacity=60, rng=rng)
    assert sample.size == 60 and sample.seen == 1000
    expected = (sample.rows[:, 1].astype(int)[:, None] + np.arange(4)) % 3 != 0
    np.testing.assert_array_equal(sample.allowed, expected)
    for k in range(4):
        np.testing.assert_array_equal(sample.of_class(k), sample.rows[expected[:, k]])
    # A uniform sample: the kept rows span the images, not the first 12 of them.
    assert sample.rows[:, 0].max() > 150 and sample.rows[:, 0].min() < 50


def test_random_negatives_saved_per_class_load_as_the_same_rows():
    per_class = [np.full((2, 3), 1.0), np.zeros((0, 3)), np.full((3, 3), 2.0)]
    sample = svm._SharedSample.of_classes(per_class, 3)
    for k, rows in enumerate(per_class):
        np.testing.assert_array_equal(sample.of_class(k), rows.astype(np.float16))


def test_disk_budget_refuses_with_the_numbers(tmp_path):
    with pytest.raises(ValueError, match=r"needs an estimated 5\.00 GB .*cache budget.*1\.00 GB"):
        window_cache.check_disk_budget(5 * 10**9, str(tmp_path), budget_bytes=10**9)
    with pytest.raises(ValueError, match="free disk"):
        window_cache.check_disk_budget(10**18, str(tmp_path))
    assert window_cache.check_disk_budget(1000, str(tmp_path)) > 1000
    assert window_cache.estimate_cache_bytes([10, 20], 100) == 30 * (200 + 16) + 1024


def test_a_non_finite_loss_stops_training_with_an_error():
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.array([[1.0, np.nan]] * 4, np.float32)
    with pytest.raises(NonFiniteLossError, match="loss became nan"):
        model.fit(x, np.zeros(4), epochs=1, verbose=0, callbacks=[RaiseOnNonFiniteLoss("test stage")])


def test_chance_loss_of_the_paper_minibatch():
    # 25% positives over 20 classes, 75% background.
    assert softmax_chance_loss(20, 0.25) == pytest.approx(-(0.75 * np.log(0.75)) - 0.25 * np.log(0.25 / 20))


@pytest.mark.parametrize("context", [None, 2.0])
def test_conv5_store_pools_exactly_the_cached_features(tmp_path, context):
    import keras

    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.models import backbone

    keras.utils.set_random_seed(3)
    roi = MultiScaleRoiFeatures(backbone("zf5", width=0.125), scales=(80, 150, 240), window_size=48, context=context)
    examples, proposals = examples_with_proposals(tmp_path, count=3)
    stored = training.compute_window_features(roi, examples, proposals, cache_dir=str(tmp_path / "f"))
    pooled = training.compute_window_features(roi, examples, proposals, cache_dir=str(tmp_path / "m"), store="conv5")
    for a, b in zip(stored, pooled):
        np.testing.assert_array_equal(b.windows, a.windows)
        # Max pooling commutes with float16's rounding: bit for bit the same.
        np.testing.assert_array_equal(b.features, a.features)
        rows = np.array([5, 0, 17])
        np.testing.assert_array_equal(b.features_of(rows), a.features[rows])
    # The shard holds maps only for the scales the windows chose, and is reused.
    with np.load(pooled[0].path) as shard:
        assert {n for n in shard.files if n.startswith("map_")} and "features" not in shard.files
    again = training.compute_window_features(roi, examples, proposals, cache_dir=str(tmp_path / "m"), store="conv5")
    assert [r.path for r in again] == [r.path for r in pooled]


def test_unknown_store_is_refused(tmp_path):
    with pytest.raises(ValueError, match="store"):
        training.compute_window_features(coordinates, [], {}, store="pixels")
    with pytest.raises(ValueError, match="MultiScaleRoiFeatures"):
        training.compute_window_features(coordinates, [], {}, store="conv5")


def test_a_run_killed_while_caching_recomputes_only_the_missing_shards(tmp_path, monkeypatch):
    examples, proposals = examples_with_proposals(tmp_path, count=5)
    computed = []

    def counting(image, boxes):
        computed.append(1)
        return coordinates(image, boxes)

    real_load = training.load_image

    def dying_load(path):
        if path.endswith("im3.png"):
            raise KeyboardInterrupt  # the kill, as the fourth image is read
        return real_load(path)

    monkeypatch.setattr(training, "load_image", dying_load)
    with pytest.raises(KeyboardInterrupt):
        training.compute_window_features(counting, examples, proposals, cache_dir=str(tmp_path / "c"))
    assert len(list((tmp_path / "c").glob("*.npz"))) == 3 and not list((tmp_path / "c").glob("*tmp*"))
    monkeypatch.setattr(training, "load_image", real_load)
    computed.clear()
    records = training.compute_window_features(counting, examples, proposals, cache_dir=str(tmp_path / "c"))
    assert len(records) == 5 and len(computed) <= 2  # (a tf.function traces once more, at most)


def test_fine_tuning_killed_mid_run_resumes_from_its_last_epoch(tmp_path):
    import keras

    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.detection.heads import spp_detector
    from keras_spp.models import backbone

    keras.utils.set_random_seed(0)
    roi = MultiScaleRoiFeatures(backbone("zf5", width=0.125), scales=(80,), window_size=48)
    detector = spp_detector(roi, 2, fc_units=16)
    examples, proposals = examples_with_proposals(tmp_path, count=3)
    records = training.compute_window_features(roi, examples, proposals)
    config = training.HeadTrainingConfig(steps=20, batch_size=8, negative_iou=(0.0, 0.5))

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 3:
                raise KeyboardInterrupt

    backup = str(tmp_path / "backup")
    with pytest.raises(KeyboardInterrupt):
        training.fine_tune(detector, records, examples, config, verbose=0, callbacks=[Kill()], backup_dir=backup)
    saved = detector.get_layer("fc8").get_weights()[0].copy()
    history = training.fine_tune(detector, records, examples, config, verbose=0, backup_dir=backup)
    # The epochs after the last finished one (0-3 of 10) were run, from its weights.
    assert len(history.history["loss"]) == 6
    assert not np.array_equal(detector.get_layer("fc8").get_weights()[0], saved)


def test_a_stage_ending_at_chance_says_so_and_names_the_flag(caplog, capsys):
    import keras

    from keras_spp.detection.training_checks import warn_if_at_chance

    history = keras.callbacks.History()
    history.history = {"objectness_loss": [0.70, 0.69, 0.69]}
    message = warn_if_at_chance(history, "objectness_loss", np.log(2.0), "RPN training", "--rpn-steps", margin=0.9)
    assert "chance level" in message and "--rpn-steps" in message and "0.690" in message
    assert "WARNING: RPN training" in capsys.readouterr().out
    history.history = {"objectness_loss": [0.69, 0.2]}
    assert warn_if_at_chance(history, "objectness_loss", np.log(2.0), "RPN training", "--rpn-steps") is None
