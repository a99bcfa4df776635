import pathlib

import numpy as np
import pytest

from keras_spp.data import mnist, mnist_detection, voc


@pytest.fixture(scope="module")
def digits():
    return mnist.load_mnist("test")


def scenes(digits, count, **kwargs):
    images, labels = digits
    for seed in range(count):
        rng = np.random.default_rng(seed)
        chosen = rng.integers(0, len(images), size=int(rng.integers(1, 6)))
        yield chosen, mnist_detection.render_detection_scene(images[chosen], labels[chosen], rng, **kwargs)


def iou_matrix(boxes):
    top = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    left = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    bottom = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    right = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area[:, None] + area[None, :] - inter)


def test_boxes_are_the_tight_extent_of_each_digits_ink(digits):
    for _, scene in scenes(digits, 12):
        height, width = scene.image.shape[:2]
        assert scene.ink.shape == (len(scene.boxes), height, width)
        for box, ink in zip(scene.boxes.astype(int), scene.ink):
            y1, x1, y2, x2 = box
            assert np.array_equal(box.astype(np.float32), box)  # whole pixels
            inside = np.zeros_like(ink)
            inside[y1:y2, x1:x2] = True
            assert not (ink & ~inside).any()  # no ink of the digit outside its box
            # Tight: ink on every edge row and column of the box.
            assert ink[y1, x1:x2].any() and ink[y2 - 1, x1:x2].any()
            assert ink[y1:y2, x1].any() and ink[y1:y2, x2 - 1].any()
        # The image is the clutter everywhere except where a digit was inked.
        changed = (scene.image != scene.background).any(-1)
        assert not (changed & ~scene.ink.any(0)).any()
        for ink in scene.ink:
            assert changed[ink].mean() > 0.9  # and the ink shows


def test_digits_stand_out_from_what_is_behind_them(digits):
    luma = np.array([0.299, 0.587, 0.114])
    cores = []
    for _, scene in scenes(digits, 12):
        step = np.abs((scene.image.astype(float) - scene.background) @ luma)
        # The strongest ink of each digit (its core strokes): a clear step, even
        # where the clutter under a digit is far from its mean (rarely < 50 levels).
        cores += [np.percentile(step[ink], 90) for ink in scene.ink]
    assert min(cores) > 40 and np.median(cores) > 80


def test_digit_fragments_in_the_clutter_are_faint_pieces(digits):
    luma = np.array([0.299, 0.587, 0.114])
    steps = []
    for seed in range(20):
        canvas = np.full([300, 300, 3], np.random.default_rng(seed).uniform(0, 255), np.float32)
        before = canvas.copy()
        mnist_detection._fragments(np.random.default_rng(seed), canvas, digits[0][:50])
        steps.append(np.abs((canvas - before) @ luma))
    steps = np.stack(steps)
    assert steps.max() > 5  # something was drawn
    # One piece is at most 30% of a 127 step; two overlapping ones add up, still
    # fainter than the 90..127 x 75% (>= 67) luminance step of every pasted digit.
    assert np.percentile(steps[steps > 0], 99) <= 0.3 * 127 + 0.5
    assert steps.max() < 0.75 * 90


def test_sizes_counts_labels_and_overlaps(digits):
    labels = digits[1]
    shapes, counts = [], []
    for chosen, scene in scenes(digits, 60):
        height, width = scene.image.shape[:2]
        assert 200 <= height <= 600 and 200 <= width <= 600
        shapes.append((height, width))
        low, high = mnist_detection.digit_size_range(min(height, width))
        assert 200 / 15 <= low and high <= 600 / 2.5
        longest = np.maximum(scene.boxes[:, 2] - scene.boxes[:, 0], scene.boxes[:, 3] - scene.boxes[:, 1])
        assert (longest >= np.ceil(low) - 1).all() and (longest <= np.floor(high)).all()
        assert (longest >= 20 - 1).all() and (longest <= 120).all()
        assert (scene.boxes[:, :2] >= 0).all() and (scene.boxes[:, 2:] <= [height, width]).all()
        ious = iou_matrix(scene.boxes)
        np.fill_diagonal(ious, 0)
        assert ious.max(initial=0) <= mnist_detection.MAX_IOU
        # The labels are those of the digits drawn, in order, less any left out.
        assert 1 <= len(scene.labels) <= len(chosen) <= 5
        assert set(scene.labels.tolist()) <= set(labels[chosen].tolist())
        counts.append(len(scene.labels))
    heights, widths = zip(*shapes)
    assert max(heights) - min(heights) > 250 and max(widths) - min(widths) > 250
    assert np.corrcoef(heights, widths)[0, 1] < 0.5  # drawn independently
    assert set(counts) >= {1, 2, 3, 4}


def test_render_is_deterministic_and_validates(digits):
    images, labels = digits
    first = mnist_detection.render_detection_scene(images[:3], labels[:3], np.random.default_rng(5))
    again = mnist_detection.render_detection_scene(images[:3], labels[:3], np.random.default_rng(5))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.boxes, again.boxes)
    blank = mnist_detection.render_detection_scene(np.zeros([1, 28, 28], np.uint8), [4], np.random.default_rng(0))
    assert blank.boxes.shape == (0, 4) and blank.ink.shape[0] == 0
    with pytest.raises(ValueError, match="uint8"):
        mnist_detection.render_detection_scene(images[:2].astype(float), labels[:2], np.random.default_rng(0))
    with pytest.raises(ValueError, match="Generator"):
        mnist_detection.render_detection_scene(images[:2], labels[:2], 0)
    with pytest.raises(ValueError, match="min_side"):
        mnist_detection.render_detection_scene(
            images[:2], labels[:2], np.random.default_rng(0), min_side=300, max_side=200
        )


def test_written_folder_reads_back_and_builds_are_identical(tmp_path, private_cache):
    first = mnist_detection.write_mnist_detection(tmp_path / "a", num_trainval=6, num_test=3, seed=4)
    second = mnist_detection.write_mnist_detection(tmp_path / "b", num_trainval=6, num_test=3, seed=4)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert len([f for f in files if f.parts[0] == "JPEGImages"]) == 9
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name

    trainval, names = voc.read_voc(first, "trainval")
    test, _ = voc.read_voc(first, "test")
    assert names == tuple("0123456789")
    assert [e.image_id for e in trainval] == [f"trainval_{i:06d}" for i in range(6)]
    assert [e.image_id for e in test] == [f"test_{i:06d}" for i in range(3)]
    for example in trainval + test:
        image = voc.load_image(example.image_path)
        assert image.shape == (example.height, example.width, 3)
        assert 1 <= len(example.boxes) <= 5 and not example.difficult.any()
        assert (example.boxes[:, 2:] <= [example.height, example.width]).all()
    # The same seed again gives the same scene for image i whatever the counts.
    fewer = mnist_detection.write_mnist_detection(tmp_path / "c", num_trainval=2, num_test=0, seed=4)
    image = pathlib.Path("JPEGImages") / "trainval_000001.jpg"
    assert (fewer / image).read_bytes() == (first / image).read_bytes()
    assert voc.read_voc(fewer, "test")[0] == []
    other = mnist_detection.write_mnist_detection(tmp_path / "d", num_trainval=1, num_test=0, seed=5)
    image = pathlib.Path("JPEGImages") / "trainval_000000.jpg"
    assert (other / image).read_bytes() != (first / image).read_bytes()


def test_trainval_uses_mnist_train_and_test_uses_mnist_test(tmp_path, monkeypatch):
    real = mnist.load_mnist

    def only(split, cache_dir=None):
        # Train digits all 3s, test digits all 7s: the labels tell the source apart.
        images, labels = real(split, cache_dir)
        keep = labels == {"train": 3, "test": 7}[split]
        return images[keep], labels[keep]

    monkeypatch.setattr(mnist_detection.mnist, "load_mnist", only)
    root = mnist_detection.write_mnist_detection(tmp_path, num_trainval=3, num_test=2, seed=0)
    assert {int(l) for e in voc.read_voc(root, "trainval")[0] for l in e.labels} == {3}
    assert {int(l) for e in voc.read_voc(root, "test")[0] for l in e.labels} == {7}


def test_ensure_builds_once_atomically(private_cache, monkeypatch):
    real = mnist_detection.render_detection_scene
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mnist_detection, "render_detection_scene", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mnist_detection.ensure_mnist_detection(num_trainval=4, num_test=1, seed=2)
    assert sorted(p.name for p in private_cache.iterdir()) == [mnist.FILENAME]  # nothing half-built

    monkeypatch.setattr(mnist_detection, "render_detection_scene", real)
    root = mnist_detection.ensure_mnist_detection(num_trainval=4, num_test=1, seed=2)
    assert root == private_cache / "mnist_detection_v1_4_1_2"
    assert (root / voc.MARKER).is_file()
    stamp = (root / "ImageSets" / "Main" / "trainval.txt").stat().st_mtime_ns
    monkeypatch.setattr(mnist_detection, "render_detection_scene", interrupted)  # must not be called again
    assert mnist_detection.ensure_mnist_detection(num_trainval=4, num_test=1, seed=2) == root
    assert (root / "ImageSets" / "Main" / "trainval.txt").stat().st_mtime_ns == stamp
    assert len(voc.read_voc(root, "trainval")[0]) == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_trainval": -1}, "num_trainval"),
        ({"num_test": 1.5}, "num_test"),
        ({"seed": -2}, "seed"),
    ],
)
def test_bad_settings(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mnist_detection.ensure_mnist_detection(data_dir=tmp_path, **kwargs)


def test_validation_split_is_new_scenes_and_leaves_the_others_as_they_were(tmp_path, monkeypatch):
    real = mnist.load_mnist

    def only(split, cache_dir=None):
        images, labels = real(split, cache_dir)
        keep = labels == {"train": 3, "test": 7, "validation": 5}[split]
        return images[keep], labels[keep]

    plain = mnist_detection.write_mnist_detection(tmp_path / "plain", num_trainval=2, num_test=2, seed=0)
    assert not (plain / "ImageSets" / "Main" / "val.txt").exists()
    monkeypatch.setattr(mnist_detection.mnist, "load_mnist", only)
    with_val = mnist_detection.write_mnist_detection(tmp_path / "val", num_trainval=2, num_test=2, seed=0, num_val=3)
    val, _ = voc.read_voc(with_val, "val")
    assert [e.image_id for e in val] == [f"val_{i:06d}" for i in range(3)]
    assert {int(l) for e in val for l in e.labels} == {5}  # MNIST's validation digits
    # Seed number 3: not the layout of any trainval or test scene either.
    sizes = {(e.height, e.width) for split in ("trainval", "test") for e in voc.read_voc(with_val, split)[0]}
    assert not sizes & {(e.height, e.width) for e in val}
    monkeypatch.setattr(mnist_detection.mnist, "load_mnist", real)
    again = mnist_detection.write_mnist_detection(tmp_path / "again", num_trainval=2, num_test=2, seed=0, num_val=1)
    for name in ("trainval_000001.jpg", "test_000000.jpg"):
        assert (again / "JPEGImages" / name).read_bytes() == (plain / "JPEGImages" / name).read_bytes()


def test_load_detection_val_needs_a_count(private_cache):
    from keras_spp.data.detection_sources import load_detection

    with pytest.raises(ValueError, match="num_val > 0"):
        load_detection("mnist-detection", "val", num_trainval=1, num_test=1)
    val, _ = load_detection("mnist-detection", "val", num_trainval=1, num_test=1, num_val=2)
    assert [e.image_id for e in val] == ["val_000000", "val_000001"]
