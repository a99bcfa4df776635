import re

import numpy as np
import pytest

from keras_spp.data import mnist, mnist_detection, mnist_windows, sources, voc

BACKGROUND = mnist_windows.CLASS_NAMES.index("background")


@pytest.fixture(scope="module")
def digits():
    return mnist.load_mnist("test")


def scene(digits, seed):
    images, labels = digits
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(images), size=int(rng.integers(1, 6)))
    return mnist_detection.render_detection_scene(images[chosen], labels[chosen], rng), rng


def box_iou(a, b):
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter), inter / area(b)


def test_window_around_holds_the_box_with_the_asked_context():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        height, width = rng.integers(30, 400, size=2)
        h, w = rng.uniform(2, height), rng.uniform(2, width)
        y1, x1 = rng.uniform(0, height - h), rng.uniform(0, width - w)
        box = [y1, x1, y1 + h, x1 + w]
        top, left, bottom, right = mnist_windows.window_around(box, (height, width, 3), rng)
        assert all(isinstance(v, int) for v in (top, left, bottom, right))
        assert 0 <= top < bottom <= height and 0 <= left < right <= width
        # Rounded to whole pixels, a window still holds its box to within a pixel.
        assert top <= y1 + 1 and left <= x1 + 1 and bottom >= y1 + h - 1 and right >= x1 + w - 1
        long_side = max(h, w)
        window_long = max(bottom - top, right - left)
        if bottom - top < height and right - left < width:  # not cut down by the image
            aspect = (bottom - top) / (right - left)
            assert 1 / 1.4 - 0.05 <= aspect <= 1.4 + 0.05 or min(bottom - top, right - left) < 20
            # Area (c * long_side)^2 with c in [1.6, 2.6], stretched up to 1.4 either way.
            assert 1.6 * long_side - 1 <= window_long <= 2.6 * np.sqrt(1.4) * long_side + 1
            assert 1.6 * long_side - 2 <= np.sqrt((bottom - top) * (right - left)) <= 2.6 * long_side + 2


def test_window_around_rejects_a_degenerate_box():
    with pytest.raises(ValueError, match=r"y2 > y1 and x2 > x1"):
        mnist_windows.window_around([10, 10, 10, 20], (50, 50), np.random.default_rng(0))


def test_scene_windows_digits_first_then_background_far_from_every_digit(digits, monkeypatch):
    # With the widening turned off, a background window is the drawn box itself:
    # check the rule against a direct computation.
    monkeypatch.setattr(
        mnist_windows,
        "window_around",
        lambda box, shape, rng: tuple(float(v) for v in box),
    )
    backgrounds_seen = 0
    for seed in range(60):
        s, rng = scene(digits, seed)
        windows = mnist_windows.scene_windows(s, rng, backgrounds=3)
        labels = [label for _, label in windows]
        assert labels[: len(s.labels)] == list(s.labels)
        for window, label in windows[len(s.labels) :]:
            assert label == BACKGROUND
            backgrounds_seen += 1
            low, high = mnist_detection.digit_size_range(min(s.image.shape[:2]))
            assert max(window[2] - window[0], window[3] - window[1]) <= high + 1e-3
            for box in s.boxes:
                iou, covered = box_iou(window, box)
                assert iou < 0.3 and covered <= 0.5
    assert backgrounds_seen >= 60 * 3 * 0.9  # crowded scenes may give fewer, rarely


def test_scene_windows_is_deterministic_and_validates(digits):
    s, _ = scene(digits, 3)
    first = mnist_windows.scene_windows(s, np.random.default_rng(9), backgrounds=2)
    assert first == mnist_windows.scene_windows(s, np.random.default_rng(9), backgrounds=2)
    assert [label for _, label in mnist_windows.scene_windows(s, np.random.default_rng(9), 0)] == list(s.labels)
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="`backgrounds` must be a non-negative integer"):
            mnist_windows.scene_windows(s, np.random.default_rng(0), bad)


def files_by_scene(split_folder):
    """``{scene: [(k, class name, path)]}`` from ``<class>/<scene>_<k>.jpg`` names."""
    found = {}
    for path in split_folder.glob("*/*.jpg"):
        scene_index, k = map(int, re.fullmatch(r"(\d{5})_(\d+)\.jpg", path.name).groups())
        found.setdefault(scene_index, []).append((k, path.parent.name, path))
    return {i: sorted(v) for i, v in found.items()}


def test_written_windows_are_the_detection_scenes_cut_up(tmp_path, private_cache):
    root = mnist_windows.write_mnist_windows(tmp_path / "w", {"train": 6, "validation": 2}, seed=4, backgrounds=1)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["train", "validation"]
    for split in ("train", "validation"):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(mnist_windows.CLASS_NAMES)
    detection = mnist_detection.write_mnist_detection(tmp_path / "d", num_trainval=6, num_test=0, seed=4)
    trainval, _ = voc.read_voc(detection, "trainval")
    by_scene = files_by_scene(root / "train")
    assert sorted(by_scene) == list(range(6))
    for index, example in enumerate(trainval):
        names = [name for _, name, _ in by_scene[index]]
        # Train scene i is mnist-detection's trainval image i: its digits, in order,
        # then one background window.
        assert names == [str(label) for label in example.labels] + ["background"]
        for (_, _, path), box in zip(by_scene[index], example.boxes):
            window = voc.load_image(path)
            assert window.shape[0] >= box[2] - box[0] - 1 and window.shape[1] >= box[3] - box[1] - 1
            assert window.shape[0] <= example.height and window.shape[1] <= example.width


def test_builds_are_identical_and_each_scene_depends_on_its_index_only(tmp_path, private_cache):
    first = mnist_windows.write_mnist_windows(tmp_path / "a", {"train": 4, "test": 2}, seed=1)
    again = mnist_windows.write_mnist_windows(tmp_path / "b", {"train": 4, "test": 2}, seed=1)
    files = sorted(p.relative_to(first) for p in first.rglob("*.jpg"))
    assert files and files == sorted(p.relative_to(again) for p in again.rglob("*.jpg"))
    for name in files:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    fewer = mnist_windows.write_mnist_windows(tmp_path / "c", {"train": 2}, seed=1)
    for path in fewer.rglob("*.jpg"):
        assert path.read_bytes() == (first / path.relative_to(fewer)).read_bytes()
    other = mnist_windows.write_mnist_windows(tmp_path / "d", {"train": 2}, seed=2)
    assert sorted(p.relative_to(other) for p in other.rglob("*.jpg")) != sorted(
        p.relative_to(fewer) for p in fewer.rglob("*.jpg")
    ) or any(p.read_bytes() != (fewer / p.relative_to(other)).read_bytes() for p in other.rglob("*.jpg"))


def test_default_folder_names_every_setting(private_cache):
    base = mnist_windows.default_root()
    assert base.parent == private_cache / "mnist_windows"
    assert base.name == "v1-s0-b1-n3200-350-350"
    assert mnist_windows.default_root(3, {"train": 10}, 2).name == "v1-s3-b2-n10-0-0"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"splits": {"val": 3}}, "`splits` must map split names among 'train', 'validation', 'test'"),
        ({"splits": [1, 2]}, "`splits` must map split names"),
        ({"splits": {"train": -1}}, r"`splits\['train'\]` must be a non-negative integer"),
        ({"splits": {"train": 2.0}}, r"`splits\['train'\]` must be a non-negative integer"),
        ({"splits": {"train": 0}}, "at least one scene"),
        ({"splits": {"train": 1}, "seed": -2}, "`seed` must be a non-negative integer"),
        ({"splits": {"train": 1}, "backgrounds": -1}, "`backgrounds` must be a non-negative integer"),
    ],
)
def test_bad_settings(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mnist_windows.write_mnist_windows(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_load_classification_reads_the_windows(private_cache, tmp_path):
    dataset, info = sources.load_classification(
        "mnist-windows", "train", data_dir=tmp_path / "data", sizes={"train": 5, "test": 1}, backgrounds=2
    )
    assert info.class_names == mnist_windows.CLASS_NAMES and info.name == "mnist-windows"
    examples = list(dataset.as_numpy_iterator())
    assert len(examples) == info.num_examples
    labels = [int(label) for _, label in examples]
    assert labels.count(BACKGROUND) == 10 and all(0 <= label <= BACKGROUND for label in labels)
    assert all(image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 for image, _ in examples)
    assert (tmp_path / "data" / "mnist_windows" / "v1-s0-b2-n5-0-1" / "COMPLETE").exists()
    with pytest.raises(ValueError, match="Unknown option.*min_side.*accepted: sizes, backgrounds"):
        sources.load_classification("mnist-windows", "train", min_side=3)
