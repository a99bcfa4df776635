import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_spp.data import mnist, mnist_scenes, sources

LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture
def scenes_cache(tmp_path, monkeypatch):
    """A private KERAS_SPP_DATA that shares only the real MNIST file."""
    real = mnist.ensure_mnist()
    cache = tmp_path / "cache"
    cache.mkdir()
    os.symlink(real, cache / mnist.FILENAME)
    monkeypatch.setenv("KERAS_SPP_DATA", str(cache))
    return cache


@pytest.fixture(scope="module")
def digits():
    images, labels = mnist.load_mnist("test")
    return images[:40], labels[:40]


def render(digit, seed, **kwargs):
    return mnist_scenes.render_scene(digit, np.random.default_rng(seed), **kwargs)


def test_render_scene_sizes_cover_the_range_and_vary_in_shape(digits):
    shapes = [render(digits[0][i], i, min_side=32, max_side=96).shape for i in range(40)]
    heights, widths, channels = zip(*shapes)
    assert set(channels) == {3}
    assert 32 <= min(heights) and max(heights) <= 96 and 32 <= min(widths) and max(widths) <= 96
    assert max(heights) - min(heights) > 32 and max(widths) - min(widths) > 32
    aspects = [h / w for h, w, _ in shapes]
    assert min(aspects) < 0.8 and max(aspects) > 1.25  # landscape and portrait
    assert len(set(shapes)) > 30


def test_render_scene_is_deterministic(digits):
    digit = digits[0][3]
    first, again = render(digit, 7), render(digit, 7)
    assert first.dtype == np.uint8 and first.ndim == 3
    np.testing.assert_array_equal(first, again)
    other = render(digit, 8)
    assert other.shape != first.shape or not np.array_equal(other, first)


@pytest.mark.parametrize("index", range(8))
def test_rendered_digit_is_the_digit_and_stands_out(digits, index):
    digit = digits[0][index]
    scene = render(digit, index).astype(float)
    # Same seed, blank digit: the same draws give the same background, without ink.
    background = render(np.zeros_like(digit), index).astype(float)
    assert scene.shape == background.shape
    ink = np.abs(scene - background) @ LUMA
    rows, cols = np.nonzero(ink > 0.3 * ink.max())
    assert rows.size and (ink > 0).sum() < ink.size  # some pixels changed, not all

    height, width = scene.shape[:2]
    d_rows, d_cols = np.nonzero(digit > 0.3 * 255)
    # The ink's extent over the digit's: the scale of the box, 35%..90% of the short side.
    scale = (rows.max() - rows.min() + 1) / (d_rows.max() - d_rows.min() + 1)
    assert 0.3 * min(height, width) <= scale * 28 <= 0.95 * min(height, width)

    # The changed pixels have the shape of the digit.
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    glyph = digit[d_rows.min() : d_rows.max() + 1, d_cols.min() : d_cols.max() + 1].astype(float)
    crop = np.asarray(Image.fromarray(crop.astype(np.float32)).resize(glyph.shape[::-1], Image.BILINEAR))
    assert np.corrcoef(crop.ravel(), glyph.ravel())[0, 1] > 0.75  # 0.76..0.99 over 200 digits

    # Full-ink pixels differ from what is behind them by a clear luminance step.
    assert ink[ink > 0.8 * ink.max()].mean() > 60


def test_render_scene_validates_arguments(digits):
    rng = np.random.default_rng(0)
    digit = digits[0][0]
    with pytest.raises(ValueError, match="`min_side`"):
        mnist_scenes.render_scene(digit, rng, min_side=4)
    with pytest.raises(ValueError, match="`min_side` \\(90\\) must not exceed `max_side` \\(60\\)"):
        mnist_scenes.render_scene(digit, rng, min_side=90, max_side=60)
    with pytest.raises(ValueError, match="`digit`"):
        mnist_scenes.render_scene(digit.astype(np.float32), rng)
    with pytest.raises(ValueError, match="`rng`"):
        mnist_scenes.render_scene(digit, 0)


def file_times(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


def test_write_mnist_scenes_layout_marker_and_idempotence(scenes_cache):
    splits = {"train": 25, "validation": 8}
    root = mnist_scenes.write_mnist_scenes(splits=splits, min_side=32, max_side=64)
    assert root == scenes_cache / "mnist_scenes" / "v2-s0-32-64-n25-8-0"
    assert (root / "COMPLETE").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["COMPLETE", "train", "validation"]
    assert sorted(p.name for p in root.parent.iterdir()) == [root.name]  # no staging left
    for split, count in splits.items():
        assert sorted(p.name for p in (root / split).iterdir()) == [str(d) for d in range(10)]
        _, labels = mnist.load_mnist(split)
        files = sorted((root / split).glob("*/*.png"))
        assert len(files) == count
        for path in files:
            index = int(path.stem)
            assert path.name == f"{index:05d}.png" and index < count
            assert int(path.parent.name) == labels[index]
            with Image.open(path) as image:
                assert image.mode == "RGB"
                assert 32 <= image.width <= 64 and 32 <= image.height <= 64

    before = file_times(root)
    assert mnist_scenes.write_mnist_scenes(splits=splits, min_side=32, max_side=64) == root
    assert file_times(root) == before


def test_write_mnist_scenes_rebuilds_a_folder_without_marker(scenes_cache, tmp_path):
    root = tmp_path / "scenes"
    (root / "train" / "3").mkdir(parents=True)
    (root / "train" / "3" / "junk.png").write_bytes(b"half written")
    mnist_scenes.write_mnist_scenes(root, {"train": 5}, min_side=16, max_side=24)
    assert (root / "COMPLETE").is_file()
    assert not (root / "train" / "3" / "junk.png").exists()
    assert len(list(root.glob("train/*/*.png"))) == 5


def test_each_image_depends_on_its_index_and_the_settings_only(scenes_cache, tmp_path):
    small = mnist_scenes.write_mnist_scenes(tmp_path / "a", {"train": 4}, min_side=16, max_side=40)
    large = mnist_scenes.write_mnist_scenes(tmp_path / "b", {"train": 6, "test": 2}, min_side=16, max_side=40)
    for path in small.glob("train/*/*.png"):
        assert path.read_bytes() == (large / path.relative_to(small)).read_bytes()


def test_default_folder_names_every_setting(scenes_cache):
    names = {
        mnist_scenes.default_root(*args).name
        for args in [
            (0, 64, 256, {"train": 10}),
            (1, 64, 256, {"train": 10}),
            (0, 65, 256, {"train": 10}),
            (0, 64, 255, {"train": 10}),
            (0, 64, 256, {"train": 11}),
            (0, 64, 256, {"train": 10, "validation": 1}),
            (0, 64, 256, {"train": 10, "test": 1}),
        ]
    }
    assert len(names) == 7
    assert mnist_scenes.default_root().name == "v2-s0-64-256-n6000-1000-1000"


@pytest.mark.parametrize(
    "splits, match",
    [
        ({"training": 5}, "'train', 'validation', 'test'"),
        ({"test": 10001}, r"\[0, 10000\]"),
        ({"train": 0}, "at least one"),
        ({"train": 2.5}, "integer"),
    ],
)
def test_write_mnist_scenes_validates_splits(scenes_cache, splits, match):
    with pytest.raises(ValueError, match=match):
        mnist_scenes.write_mnist_scenes(splits=splits)


def test_load_classification_reads_the_scenes(scenes_cache):
    dataset, info = sources.load_classification(
        "mnist-scenes", "train", sizes={"train": 30, "test": 5}, min_side=24, max_side=80, shuffle_files=False
    )
    assert info == sources.SourceInfo("mnist-scenes", "train", tuple(str(d) for d in range(10)), 30)
    assert dataset.element_spec == (
        tf.TensorSpec([None, None, 3], tf.uint8),
        tf.TensorSpec([], tf.int64),
    )
    root = mnist_scenes.default_root(0, 24, 80, {"train": 30, "test": 5})
    files = sorted((root / "train").glob("*/*.png"), key=lambda p: (int(p.parent.name), p.name))
    examples = list(dataset.as_numpy_iterator())
    assert len(examples) == len(files) == 30
    for (image, label), path in zip(examples, files):
        assert label == int(path.parent.name)
        np.testing.assert_array_equal(image, np.asarray(Image.open(path)))
    assert len({image.shape for image, _ in examples}) > 10
    _, test_info = sources.load_classification(
        "mnist-scenes", "test", sizes={"train": 30, "test": 5}, min_side=24, max_side=80
    )
    assert test_info.num_examples == 5
    with pytest.raises(ValueError, match="no 'validation' folder"):
        sources.load_classification(
            "mnist-scenes", "validation", sizes={"train": 30, "test": 5}, min_side=24, max_side=80
        )


def test_mnist_scenes_data_dir_and_options(scenes_cache, tmp_path):
    _, info = sources.load_classification(
        "mnist-scenes", "test", data_dir=tmp_path / "elsewhere", sizes={"test": 3}, min_side=16, max_side=20
    )
    assert info.num_examples == 3
    assert (tmp_path / "elsewhere" / "mnist_scenes" / "v2-s0-16-20-n0-0-3" / "COMPLETE").is_file()
    with pytest.raises(ValueError, match="manual_dir.*accepted: min_side, max_side, sizes"):
        sources.load_classification("mnist-scenes", "test", manual_dir="/x")
