import functools
import io
import logging
import os
import pathlib
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_spp.data import detection_sources, mnist, mnist_detection, voc


@pytest.fixture(scope="module")
def tfds():
    import tensorflow_datasets

    return tensorflow_datasets


def fake_as_dataset(make_examples, calls):
    """A ``FileReaderBuilder._as_dataset`` for ``tfds.testing.mock_data`` that yields
    given examples through the builder's real features: encoded, serialized and decoded
    with the caller's decoders (so ``SkipDecoding`` returns the stored bytes).

    TFDS's own random mock cannot make VOC examples: it draws each field of the
    ``objects`` sequence with its own length and boxes with ``min > max``, both of
    which the features' encoder rejects.
    """

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        calls.append(str(split))
        features = self.info.features
        encoded = [features.encode_example(example) for example in make_examples(features)]
        specs = features.get_serialized_info()
        dataset = tf.data.Dataset.from_generator(
            lambda: iter(encoded),
            output_types=tf.nest.map_structure(lambda s: s.dtype, specs),
            output_shapes=tf.nest.map_structure(lambda s: s.shape, specs),
        )
        return dataset.map(functools.partial(features.decode_example, decoders=decoders))

    return as_dataset


def voc_example(image, filename, objects):
    """A TFDS voc example; objects as (label, (ymin, xmin, ymax, xmax) normalized, difficult)."""
    return {
        "image": image,
        "image/filename": filename,
        "labels": sorted({label for label, _, _ in objects}),
        "labels_no_difficult": sorted({label for label, _, hard in objects if not hard}),
        "objects": [
            {
                "bbox": np.asarray(bbox, np.float32),
                "label": label,
                "is_difficult": hard,
                "is_truncated": False,
                "pose": 0,
            }
            for label, bbox, hard in objects
        ],
    }


def test_tfds_voc_is_materialized_once_with_the_original_bytes_and_pixel_boxes(tfds, tmp_path):
    jpeg_path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (375, 500, 3), np.uint8)).save(jpeg_path, quality=85)
    jpeg_bytes = jpeg_path.read_bytes()

    def examples(features):
        # VOC's 000005: xmin=263 ymin=211 xmax=324 ymax=339 over 500 x 375; TFDS divides
        # the 1-based inclusive corners by the size, as its voc builder does.
        box = (211 / 375, 263 / 500, 339 / 375, 324 / 500)
        return [
            # A file object: TFDS stores its bytes as they are (a path would be read
            # through mock_data's fake file system).
            voc_example(io.BytesIO(jpeg_bytes), "000005.jpg", [(8, box, False), (14, (0.0, 0.0, 1.0, 1.0), True)]),
            voc_example(np.zeros([40, 30, 3], np.uint8), "000007.jpg", []),  # PNG-encoded by TFDS
        ]

    calls = []
    with tfds.testing.mock_data(as_dataset_fn=fake_as_dataset(examples, calls)):
        loaded, names = detection_sources.load_detection("voc/2007", "trainval", data_dir=tmp_path / "cache")
        again, _ = detection_sources.load_detection("voc/2007", "trainval", data_dir=tmp_path / "cache")
    assert calls == ["train+validation"]  # trainval is TFDS's train + validation, read once
    assert [(e.image_path, e.boxes.tolist()) for e in again] == [(e.image_path, e.boxes.tolist()) for e in loaded]
    assert names == voc.VOC_CLASSES
    first, second = loaded
    assert (first.image_id, first.height, first.width) == ("000005", 375, 500)
    # x1 = xmin - 1, x2 = xmax: the VOC integers come back exactly.
    np.testing.assert_array_equal(first.boxes, [[210, 262, 339, 324], [0, 0, 375, 500]])
    np.testing.assert_array_equal(first.labels, [8, 14])
    np.testing.assert_array_equal(first.difficult, [False, True])
    assert pathlib.Path(first.image_path).read_bytes() == jpeg_bytes  # unchanged
    assert first.image_path.endswith(".jpg") and second.image_path.endswith(".png")
    assert (second.image_id, second.height, second.width, len(second.boxes)) == ("000007", 40, 30, 0)
    assert voc.load_image(second.image_path).shape == (40, 30, 3)
    root = os.path.dirname(os.path.dirname(first.image_path))
    assert os.path.basename(root) == "voc_2007_5.0.0_trainval"
    assert os.path.isfile(os.path.join(root, voc.MARKER))


def test_tfds_random_examples_and_schema_handling(tfds, tmp_path, caplog):
    rng = np.random.default_rng(0)

    def examples(features):
        # Random data, as TFDS's mock makes it but valid: random sizes, labels and
        # sorted corners, filenames that are not usable ids (spaces) or repeat.
        out = []
        for index in range(5):
            count = int(rng.integers(0, 4))
            corners = np.sort(rng.random((count, 2, 2)), axis=1)  # min <= max per axis
            boxes = [(float(c[0, 0]), float(c[0, 1]), float(c[1, 0]), float(c[1, 1])) for c in corners]
            image = rng.integers(0, 256, (int(rng.integers(5, 50)), int(rng.integers(5, 50)), 3), np.uint8)
            filename = ["a b c.jpg", "same.jpg", "same.jpg", "", "ok.jpg"][index]
            objects = [(int(rng.integers(0, 20)), box, bool(rng.random() < 0.5)) for box in boxes]
            out.append(voc_example(image, filename, objects))
        return out

    calls = []
    with tfds.testing.mock_data(as_dataset_fn=fake_as_dataset(examples, calls)), caplog.at_level(logging.WARNING):
        loaded, _ = detection_sources.load_detection("tfds:voc/2012", "val", data_dir=tmp_path)
    assert calls == ["validation"]
    assert [e.image_id for e in loaded] == ["tfds_000000", "same", "tfds_000002", "tfds_000003", "ok"]
    for example in loaded:
        assert voc.load_image(example.image_path).shape == (example.height, example.width, 3)
        assert (example.boxes >= 0).all() and (example.boxes[:, 2] <= example.height).all()
        assert (example.boxes[:, 3] <= example.width).all() and (example.labels < 20).all()


def test_tfds_bytes_that_are_not_images_are_skipped(tfds, tmp_path, caplog):
    def skip_decoded(self, split, decoders=None, read_config=None, shuffle_files=False):
        # What SkipDecoding hands over, with one broken image among them.
        assert isinstance(decoders["image"], tfds.decode.SkipDecoding)
        png = io.BytesIO()
        Image.fromarray(np.zeros([4, 6, 3], np.uint8)).save(png, format="PNG")
        images = [b"broken", png.getvalue()]
        return tf.data.Dataset.from_tensor_slices(
            {
                "image": images,
                "image/filename": ["x.jpg", "y.jpg"],
                "objects": {
                    "bbox": tf.zeros([2, 0, 4]),
                    "label": tf.zeros([2, 0], tf.int64),
                    "is_difficult": tf.zeros([2, 0], tf.bool),
                },
            }
        )

    with tfds.testing.mock_data(as_dataset_fn=skip_decoded), caplog.at_level(logging.WARNING):
        loaded, _ = detection_sources.load_detection("voc/2007", "test", data_dir=tmp_path)
    assert [e.image_id for e in loaded] == ["y"]
    assert any("x" in r.getMessage() and "not an image" in r.getMessage() for r in caplog.records)


def test_tfds_datasets_without_detection_features_are_refused(tfds, tmp_path):
    with tfds.testing.mock_data(num_examples=1), pytest.raises(ValueError, match="'objects' Sequence"):
        detection_sources.load_detection("tfds:mnist", "train", data_dir=tmp_path)


def test_generic_tfds_boxes_are_continuous_and_crowds_are_difficult(tfds, tmp_path):
    # COCO's features: continuous corners (no VOC offset), is_crowd.
    builder = tfds.builder("coco/2017", data_dir=tmp_path)
    assert "is_crowd" in builder.info.features["objects"].feature

    def examples(features):
        png = io.BytesIO()
        Image.fromarray(np.zeros([100, 200, 3], np.uint8)).save(png, format="PNG")
        objects = [
            {"area": 1, "bbox": np.asarray(b, np.float32), "id": 1, "is_crowd": crowd, "label": 3}
            for b, crowd in (((0.1, 0.25, 0.5, 0.75), False), ((0.0, 0.0, 0.5, 0.5), True))
        ]
        return [
            {
                "image": np.zeros([100, 200, 3], np.uint8),
                "image/filename": "000000000001.jpg",
                "image/id": 1,
                "objects": objects,
            }
        ]

    with tfds.testing.mock_data(as_dataset_fn=fake_as_dataset(examples, [])):
        (example,), names = detection_sources.load_detection("tfds:coco/2017", "validation", data_dir=tmp_path)
    assert len(names) == 80
    np.testing.assert_array_equal(example.boxes, [[10, 50, 50, 150], [0, 0, 50, 100]])
    np.testing.assert_array_equal(example.difficult, [False, True])


def test_voc_folder_source(tmp_path):
    items = [("a", np.zeros([10, 12, 3], np.uint8), [[1, 2, 5, 6]], [1], [True])]
    voc.write_voc(tmp_path, "val", items, ("p", "q"))
    examples, names = detection_sources.load_detection(f"voc:{tmp_path}", "val")
    assert names == ("p", "q") and examples[0].labels.tolist() == [1] and examples[0].difficult.tolist() == [True]
    renamed, names = detection_sources.load_detection(f"voc:{tmp_path}", "val", class_names=["q", "p"])
    assert names == ("q", "p") and renamed[0].labels.tolist() == [0]
    with pytest.raises(FileNotFoundError, match="splits there: val"):
        detection_sources.load_detection(f"voc:{tmp_path}", "trainval")


def test_mnist_detection_source(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.symlink(mnist.ensure_mnist(), cache / mnist.FILENAME)
    monkeypatch.setenv("KERAS_SPP_DATA", str(cache))
    examples, names = detection_sources.load_detection("mnist-detection", "test", num_trainval=2, num_test=2, seed=1)
    assert names == mnist_detection.CLASS_NAMES and len(examples) == 2
    assert examples[0].image_path.startswith(str(cache / "mnist_detection_v1_2_2_1"))
    elsewhere, _ = detection_sources.load_detection(
        "mnist-detection", "trainval", data_dir=tmp_path / "other", num_trainval=2, num_test=2, seed=1
    )
    assert len(elsewhere) == 2 and elsewhere[0].image_path.startswith(str(tmp_path / "other"))


@pytest.mark.parametrize(
    "name, split, options, match",
    [
        ("coco", "train", {}, "accepted: 'mnist-detection', 'voc:<path>', 'voc/2007', 'voc/2012', 'tfds:<name>'"),
        (None, "train", {}, "must be a string"),
        ("voc:", "train", {}, "needs a path"),
        ("tfds:", "train", {}, "needs a TFDS dataset name"),
        ("mnist-detection", "validation", {}, "'trainval', 'test'"),
        ("mnist-detection", "test", {"sizes": 3}, "Unknown option.*sizes.*num_trainval"),
        ("voc/2007", "test", {"seed": 1}, "accepted: tfds_data_dir"),
        ("voc:/x", "", {}, "non-empty string"),
    ],
)
def test_bad_names_splits_and_options(name, split, options, match):
    never_built = mock.patch.object(mnist_detection, "ensure_mnist_detection", side_effect=AssertionError("built"))
    with never_built, pytest.raises(ValueError, match=match):
        detection_sources.load_detection(name, split, **options)


def test_tfds_file_names_that_voc_would_refuse_get_numbered_ids():
    seen = set()
    for index, filename in enumerate([b"a\x01b.jpg", "tab\there.jpg", ".hidden.jpg", "..jpg", None]):
        assert detection_sources._image_id(filename, index, seen) == f"tfds_{index:06d}"
    assert detection_sources._image_id(b"images/000123.jpg", 9, seen) == "000123"


def test_voc_folder_source_refuses_split_paths_and_reads_empty_splits(tmp_path):
    voc.write_voc(tmp_path / "voc", "empty", [], ("p",))
    voc.write_voc(tmp_path / "voc", "val", [("a", np.zeros([6, 6], np.uint8), [], [], None)], ("p",))
    assert detection_sources.load_detection(f"voc:{tmp_path / 'voc'}", "empty") == ([], ("p",))
    (example,), _ = detection_sources.load_detection(f"voc:{tmp_path / 'voc'}", "val")
    assert example.boxes.shape == (0, 4)
    (tmp_path / "secret.txt").write_text("a\n")
    with pytest.raises(ValueError, match="`split` must name a file in ImageSets/Main"):
        detection_sources.load_detection(f"voc:{tmp_path / 'voc'}", "../../../secret")
