"""Window features of training images: which windows are kept, and the cache."""

import pathlib

import numpy as np
import tensorflow as tf
from PIL import Image

from keras_spp.data.detection_examples import DetectionExample
from keras_spp.detection import sampling, training, window_cache


def coordinates(image, boxes):
    """A stand-in feature layer: each window's own coordinates, so rows can be traced."""
    return tf.concat([boxes, tf.fill([tf.shape(boxes)[0], 1], tf.reduce_mean(image))], axis=1)


def example_with_proposals(tmp_path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    path = tmp_path / "im.png"
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path)
    gt = np.array([[10, 10, 50, 40], [60, 80, 110, 150]], np.float32)
    example = DetectionExample("im", str(path), 120, 160, gt, np.array([0, 1]), np.zeros(2, bool))
    y = rng.uniform(0, 119, (n, 2))
    x = rng.uniform(0, 159, (n, 2))
    random = np.stack([y.min(1), x.min(1), y.max(1) + 1, x.max(1) + 1], 1)
    near = np.repeat(gt, 20, axis=0) + rng.normal(0, 4, (40, 4))  # windows around the objects
    return example, {"im": np.concatenate([random, near]).astype(np.float32)}


def test_max_windows_keeps_ground_truth_and_every_window_near_an_object(tmp_path):
    example, proposals = example_with_proposals(tmp_path)
    every = np.concatenate([example.boxes, proposals["im"]])
    iou, _ = sampling.best_overlaps(every, example.boxes)
    (full,) = training.compute_window_features(coordinates, [example], proposals)
    assert len(full.windows) == len(every)
    for keep_iou in (0.1, 0.5):
        must = int(np.sum(iou >= keep_iou))
        budget = must + 25
        (kept,) = training.compute_window_features(
            coordinates, [example], proposals, max_windows=budget, keep_iou=keep_iou, seed=3
        )
        assert len(kept.windows) == budget and kept.num_gt == 2
        np.testing.assert_array_equal(kept.windows[:2], example.boxes)
        # Every window at or above keep_iou is there, plus a sample of the rest.
        kept_rows = {tuple(w) for w in kept.windows}
        assert all(tuple(w) in kept_rows for w in every[iou >= keep_iou])
        assert np.sum(kept.max_iou < keep_iou) == 25
        # Features, overlaps and windows stay row-aligned.
        np.testing.assert_allclose(kept.features[:, :4], kept.windows, rtol=1e-3, atol=0.1)
        np.testing.assert_allclose(kept.max_iou, sampling.best_overlaps(kept.windows, example.boxes)[0], atol=1e-6)
        again = training.compute_window_features(
            coordinates, [example], proposals, max_windows=budget, keep_iou=keep_iou, seed=3
        )[0]
        np.testing.assert_array_equal(again.windows, kept.windows)
    # A budget below what must be kept keeps exactly that.
    (tight,) = training.compute_window_features(coordinates, [example], proposals, max_windows=1, keep_iou=0.5)
    assert len(tight.windows) == int(np.sum(iou >= 0.5))


def test_cached_features_are_reused_only_for_the_same_windows(tmp_path):
    example, proposals = example_with_proposals(tmp_path)
    cache = tmp_path / "cache"
    first = training.compute_window_features(coordinates, [example], proposals, cache_dir=str(cache))[0]
    # Mark the cached rows: a second run must read them instead of recomputing.
    path = first.path
    assert path.startswith(str(cache))
    marked = np.full_like(first.features, 7)
    np.savez(path, key=np.array(""), windows=first.windows, features=marked)
    again = training.compute_window_features(coordinates, [example], proposals, cache_dir=str(cache))[0]
    np.testing.assert_array_equal(again.features, marked)
    # Other windows (a subsample) are computed afresh, and replace the cache.
    fewer = training.compute_window_features(coordinates, [example], proposals, cache_dir=str(cache), max_windows=60)[0]
    assert len(fewer.windows) < len(first.windows)
    np.testing.assert_allclose(fewer.features[:, :4], fewer.windows, rtol=1e-3, atol=0.1)
    np.testing.assert_array_equal(np.load(path)["windows"], fewer.windows)


def test_empty_or_corrupt_cache_files_are_recomputed_with_a_warning(tmp_path, caplog):
    example, proposals = example_with_proposals(tmp_path)
    cache = tmp_path / "cache"
    (first,) = training.compute_window_features(coordinates, [example], proposals, cache_dir=str(cache))
    path = pathlib.Path(first.path)
    np.savez(tmp_path / "other.npz", boxes=np.zeros([2, 4]))  # the wrong arrays
    np.savez(tmp_path / "net.npz", key=np.array("another network"), windows=first.windows, features=first.features)
    contents = (
        b"",
        b"PK\x03\x04 cut short",
        (tmp_path / "other.npz").read_bytes(),
        (tmp_path / "net.npz").read_bytes(),
    )
    for content in contents:
        path.write_bytes(content)
        caplog.clear()
        with caplog.at_level("WARNING", logger=window_cache.log.name):
            (record,) = training.compute_window_features(coordinates, [example], proposals, cache_dir=str(cache))
        np.testing.assert_allclose(record.features[:, :4], record.windows, rtol=1e-3, atol=0.1)
        assert any(path.name in message and "recomput" in message for message in caplog.messages)
        # The recomputed features replace the bad file.
        with np.load(path) as cached:
            np.testing.assert_array_equal(cached["windows"], record.windows)
