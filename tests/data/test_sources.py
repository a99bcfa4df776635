import logging
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_spp.data import sources

SPEC = (tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([], tf.int64))


def save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def rgb(height, width, value):
    return np.full((height, width, 3), value, np.uint8)


def load(name, split, **kwargs):
    dataset, info = sources.load_classification(name, split, **kwargs)
    return [(image, int(label)) for image, label in dataset.as_numpy_iterator()], info


def flat_folder(root, per_class=10, classes=("cat", "dog")):
    """Classes of per_class PNGs; pixel value 10 * class + file index, to trace files."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            save(root / name / f"{i:03d}.png", rgb(5 + i, 6, 10 * c + i))
    return root


def test_folder_reads_every_format_as_rgb(tmp_path):
    gradient = np.arange(12 * 9 * 3, dtype=np.uint8).reshape(12, 9, 3)
    save(tmp_path / "b_gray" / "gray.png", np.full((7, 5), 200, np.uint8))
    save(tmp_path / "b_gray" / "nested" / "deeper" / "gray.bmp", np.full((4, 4), 50, np.uint8))
    rgba = np.dstack([gradient, np.full((12, 9), 128, np.uint8)])
    save(tmp_path / "a_rgba" / "rgba.png", rgba)
    save(tmp_path / "c_other" / "x.JPEG", rgb(16, 24, 90), quality=95)
    save(tmp_path / "c_other" / "y.jpg", rgb(8, 8, 30), quality=95)
    save(tmp_path / "c_other" / "z.gif", np.full((6, 3), 17, np.uint8))
    save(tmp_path / "c_other" / "w.Png", gradient)
    (tmp_path / "c_other" / "notes.txt").write_text("not an image")
    (tmp_path / "stray.png").write_bytes(b"outside any class folder")

    examples, info = load(f"folder:{tmp_path}", "train", validation_fraction=0.0, shuffle_files=False)
    assert info.class_names == ("a_rgba", "b_gray", "c_other")
    assert info.num_examples == 7
    assert [label for _, label in examples] == [0, 1, 1, 2, 2, 2, 2]
    images = [image for image, _ in examples]
    np.testing.assert_array_equal(images[0], gradient)  # RGBA -> RGB
    np.testing.assert_array_equal(images[1], np.full((7, 5, 3), 200))  # gray -> RGB
    np.testing.assert_array_equal(images[2], np.full((4, 4, 3), 50))
    # Sorted names in c_other: w.Png, x.JPEG, y.jpg, z.gif.
    np.testing.assert_array_equal(images[3], gradient)
    assert images[4].shape == (16, 24, 3) and abs(int(images[4].mean()) - 90) <= 2
    assert images[5].shape == (8, 8, 3)
    assert images[6].shape == (6, 3, 3)
    assert all(image.dtype == np.uint8 for image in images)


def test_corrupt_and_empty_files_are_skipped_and_named(tmp_path, caplog):
    save(tmp_path / "a" / "good1.png", rgb(4, 5, 1))
    save(tmp_path / "b" / "good2.jpg", rgb(6, 7, 2))
    corrupt = tmp_path / "a" / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    empty = tmp_path / "b" / "empty.png"
    empty.write_bytes(b"")
    truncated = tmp_path / "b" / "truncated.png"
    truncated.write_bytes(save(tmp_path / "full.png", rgb(30, 30, 3)).read_bytes()[:60])
    dataset, info = sources.load_classification(
        f"folder:{tmp_path}", "train", validation_fraction=0.0, shuffle_files=False
    )
    assert info.num_examples == 5
    with caplog.at_level(logging.WARNING, logger="keras_spp.data.sources"):
        first = [(image.shape, int(label)) for image, label in dataset]
        second = [(image.shape, int(label)) for image, label in dataset]
    assert first == second == [((4, 5, 3), 0), ((6, 7, 3), 1)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # once per file, not once per epoch
    assert any(str(corrupt) in w and "corrupt" in w for w in warnings)
    assert any(str(empty) in w and "empty" in w for w in warnings)
    assert any(str(truncated) in w for w in warnings)


def test_flat_folder_splits_each_class_by_seed(tmp_path):
    flat_folder(tmp_path, per_class=10)
    train, train_info = load(f"folder:{tmp_path}", "train", seed=3, validation_fraction=0.3)
    validation, validation_info = load(f"folder:{tmp_path}", "validation", seed=3, validation_fraction=0.3)
    assert (train_info.num_examples, validation_info.num_examples) == (14, 6)
    assert train_info.class_names == validation_info.class_names == ("cat", "dog")

    def ids(examples):
        return sorted(int(image[0, 0, 0]) for image, _ in examples)

    train_ids, validation_ids = ids(train), ids(validation)
    assert sorted(train_ids + validation_ids) == list(range(10)) + list(range(10, 20))
    assert sum(i < 10 for i in validation_ids) == 3  # 30% of each class
    assert all(label == int(image[0, 0, 0]) // 10 for image, label in train + validation)

    again, _ = load(f"folder:{tmp_path}", "validation", seed=3, validation_fraction=0.3)
    assert ids(again) == validation_ids
    other, _ = load(f"folder:{tmp_path}", "validation", seed=4, validation_fraction=0.3)
    assert ids(other) != validation_ids
    everything, _ = load(f"folder:{tmp_path}", "train", validation_fraction=0.0)
    assert len(everything) == 20

    with pytest.raises(ValueError, match="no 'test' split"):
        sources.load_classification(f"folder:{tmp_path}", "test")
    with pytest.raises(ValueError, match=r"`validation_fraction`.*\[0, 1\)"):
        sources.load_classification(f"folder:{tmp_path}", "train", validation_fraction=1.0)
    with pytest.raises(ValueError, match=f"no images for split 'validation' in {tmp_path}"):
        sources.load_classification(f"folder:{tmp_path}", "validation", validation_fraction=0.0)


def test_split_folders_select_the_split_and_share_class_names(tmp_path):
    flat_folder(tmp_path / "train", per_class=3, classes=("ant", "bee"))
    flat_folder(tmp_path / "test", per_class=2, classes=("bee", "cow"))
    train, info = load(f"folder:{tmp_path}", "train", shuffle_files=False)
    test, test_info = load(f"folder:{tmp_path}", "test", shuffle_files=False)
    assert info.class_names == test_info.class_names == ("ant", "bee", "cow")
    assert [label for _, label in train] == [0, 0, 0, 1, 1, 1]
    # "bee" was class 0 when written to test/, it is label 1 in both splits.
    assert [label for _, label in test] == [1, 1, 2, 2]
    with pytest.raises(ValueError, match="split folders train, test but no 'validation' folder"):
        sources.load_classification(f"folder:{tmp_path}", "validation")


def test_empty_or_missing_folders_name_the_path(tmp_path):
    with pytest.raises(ValueError, match=f"no images for split 'train' in {tmp_path}"):
        sources.load_classification(f"folder:{tmp_path}", "train")
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=f"no images for split 'train' in {tmp_path}"):
        sources.load_classification(f"folder:{tmp_path}", "train")
    with pytest.raises(ValueError, match=f"{tmp_path / 'absent'} is not a directory"):
        sources.load_classification(f"folder:{tmp_path / 'absent'}", "train")
    (tmp_path / "validation" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match=f"no images for split 'validation' in {tmp_path / 'validation'}"):
        sources.load_classification(f"folder:{tmp_path}", "validation")


@pytest.mark.parametrize(
    "name, split, options, match",
    [
        (
            "imagenet",
            "train",
            {},
            "Unknown source `name` 'imagenet'; known: 'mnist-scenes', 'mnist-windows', "
            "'folder:<path>', 'imagenet2012', .*'cifar100', 'tfds:<name>'",
        ),
        ("folder:", "train", {}, "needs a path"),
        (None, "train", {}, "`name` must be a string"),
        ("mnist-scenes", "val", {}, "`split` must be one of 'train', 'validation', 'test'"),
        ("folder:/tmp", "train", {"min_side": 3}, "Unknown option.*min_side.*accepted: none"),
        ("imagenette", "train", {"sizes": {}}, "Unknown option.*sizes.*accepted: manual_dir"),
    ],
)
def test_bad_names_splits_and_options(name, split, options, match):
    with pytest.raises(ValueError, match=match):
        sources.load_classification(name, split, **options)


def test_tfds_split_names():
    assert sources.tfds_split_name("validation", {"train": 1, "test": 1}) == "test"
    assert sources.tfds_split_name("validation", {"train": 1, "validation": 1, "test": 1}) == "validation"
    assert sources.tfds_split_name("validation", {}) == "validation"  # unknown splits
    assert sources.tfds_split_name("train[:10%]", {"train": 1}) == "train[:10%]"


@pytest.fixture(scope="module")
def tfds():
    import tensorflow_datasets

    return tensorflow_datasets


@pytest.mark.parametrize("name", ["imagenette", "tfds:caltech101", "cifar10", "tfds:mnist"])
def test_tfds_sources_through_mock_data(tfds, name):
    with tfds.testing.mock_data(num_examples=4):
        dataset, info = sources.load_classification(name, "train")
        examples = list(dataset.as_numpy_iterator())
    assert dataset.element_spec == SPEC
    assert len(examples) == 4
    assert info.name == name and info.split == "train"
    expected_classes = {"imagenette": 10, "tfds:caltech101": 102, "cifar10": 10, "tfds:mnist": 10}[name]
    assert len(info.class_names) == expected_classes
    for image, label in examples:
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert 0 <= label < expected_classes
    if name == "tfds:mnist":
        # One channel, repeated.
        image = examples[0][0]
        assert image.shape == (28, 28, 3)
        np.testing.assert_array_equal(image[..., 0], image[..., 2])
    if name == "imagenette":
        assert info.class_names[0] == "n01440764"


def test_tfds_validation_falls_back_to_test_and_manual_dir_is_passed(tfds, tmp_path):
    calls = []

    def prepare(builder, **kwargs):
        # What a real preparation does: the builder learns its splits.
        calls.append(kwargs)
        builder.info.set_splits(
            tfds.core.SplitDict(
                [
                    tfds.core.SplitInfo(name="train", shard_lengths=[6], num_bytes=0),
                    tfds.core.SplitInfo(name="test", shard_lengths=[3], num_bytes=0),
                ]
            )
        )

    with (
        tfds.testing.mock_data(num_examples=3),
        mock.patch.object(tfds.core.DatasetBuilder, "download_and_prepare", prepare),
        mock.patch.object(
            tfds.core.DatasetBuilder, "as_dataset", autospec=True, side_effect=tfds.core.DatasetBuilder.as_dataset
        ) as as_dataset,
    ):
        dataset, info = sources.load_classification("caltech101", "validation", manual_dir=tmp_path)
        assert len(list(dataset)) == 3
    assert info.split == "validation" and info.num_examples == 3
    assert as_dataset.call_args.kwargs["split"] == "test"
    (kwargs,) = calls
    assert str(kwargs["download_config"].manual_dir) == str(tmp_path)


def test_default_file_order_mixes_classes_and_is_fixed_by_seed(tmp_path):
    flat_folder(tmp_path, per_class=10, classes=("ant", "bee", "cow"))
    sorted_labels = [
        label for _, label in load(f"folder:{tmp_path}", "train", validation_fraction=0.0, shuffle_files=False)[0]
    ]
    first = [label for _, label in load(f"folder:{tmp_path}", "train", validation_fraction=0.0, seed=1)[0]]
    again = [label for _, label in load(f"folder:{tmp_path}", "train", validation_fraction=0.0, seed=1)[0]]
    other = [label for _, label in load(f"folder:{tmp_path}", "train", validation_fraction=0.0, seed=2)[0]]
    assert sorted_labels == [0] * 10 + [1] * 10 + [2] * 10
    assert first == again != other
    assert sorted(first) == sorted_labels
    assert set(first[:6]) == {0, 1, 2}  # the first few already hold every class
