"""Classification sources: one entry point from a dataset name to images and labels.

``load_classification(name, split)`` returns an unbatched ``tf.data.Dataset`` of
``(image, label)`` in a fixed order (folders: the files in a seeded random order,
classes mixed; TFDS: its own order) and a ``SourceInfo``, whatever the data's
origin:

  * ``"mnist-scenes"``: real MNIST digits rendered into scenes of varied size
    (``keras_spp.data.mnist_scenes``), built on first use; works offline.
  * ``"mnist-windows"``: digit and background windows cut from mnist-detection
    scenes (``keras_spp.data.mnist_windows``; 11 classes, the last
    ``"background"``), the offline detector's pretraining set; built on first use.
  * ``"folder:<path>"``: image files in the layout of
    ``keras.utils.image_dataset_from_directory``.
  * a name in ``TFDS_DATASETS``, or ``"tfds:<name>"`` for any TensorFlow Datasets
    name (with ``/config`` or ``:version`` as TFDS accepts them).

Conventions, for every source:
  * ``image``: uint8 ``[H, W, 3]``, H and W unknown statically (``element_spec`` is
    ``TensorSpec([None, None, 3], tf.uint8)`` even for fixed-size data such as
    CIFAR, so that every source has the same spec); grayscale and RGBA become RGB.
  * ``label``: int64 scalar, an index into ``SourceInfo.class_names``.
  * ``split``: ``"train"``, ``"validation"`` or ``"test"``.
"""

import dataclasses
import logging
import math
import os
import pathlib
import threading

import numpy as np
import tensorflow as tf

from keras_spp.data import mnist_scenes, mnist_windows
from keras_spp.data.voc import decode_image_tf
from keras_spp.validation import is_number

SPLITS = ("train", "validation", "test")

TFDS_DATASETS = (
    "imagenet2012",
    "imagenette",
    "caltech101",
    "oxford_flowers102",
    "food101",
    "stanford_dogs",
    "cifar10",
    "cifar100",
)

# What tf.io.decode_image reads (it sniffs the content; the extension only selects
# which files are listed), as in keras.utils.image_dataset_from_directory.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

_OPTIONS = {
    "mnist-scenes": ("min_side", "max_side", "sizes"),
    "mnist-windows": ("sizes", "backgrounds"),
    "folder": (),
    "tfds": ("manual_dir",),
}

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """What a source holds.

    Attributes:
      name: the source's name, as given to ``load_classification``.
      split: the split, as given.
      class_names: label ``i`` is ``class_names[i]``.
      num_examples: images in the split, or ``None`` where unknown. For folders it
        counts the files listed, corrupt ones included (those are skipped when read).
    """

    name: str
    split: str
    class_names: tuple
    num_examples: int | None


def load_classification(name, split, data_dir=None, seed=0, validation_fraction=0.1, shuffle_files=True, **options):
    """An image classification source as ``(dataset, info)``.

    Args:
      name: ``"mnist-scenes"``, ``"mnist-windows"``, ``"folder:<path>"``, one of
        ``TFDS_DATASETS`` or ``"tfds:<name>"`` (see the module docstring).
      split: ``"train"``, ``"validation"`` or ``"test"``. TFDS sources also take any
        TFDS split string (e.g. ``"train[:10%]"``), passed through unchanged.
      data_dir: ``"mnist-scenes"``, ``"mnist-windows"``: the folder the images are
        written under (default ``keras_spp.data.mnist.data_dir()``, where the MNIST
        file always is). TFDS: TFDS's ``data_dir``. Unused for folders.
      seed: ``"mnist-scenes"``, ``"mnist-windows"``: the rendering seed. Folders
        without split subfolders: the seed of the train/validation split. Unused for TFDS.
      validation_fraction: folders without split subfolders: the share of each
        class's files that goes to ``"validation"``, in ``[0, 1)``.
      shuffle_files: folders, ``"mnist-scenes"`` and ``"mnist-windows"``: list the
        files in a random order fixed by ``seed``, classes mixed (the default), so that shuffle buffers
        smaller than the split still see every class and ``take(n)`` is a fair
        sample; ``False`` keeps the sorted order (class by class).
      **options: ``"mnist-scenes"``: ``min_side``, ``max_side`` (canvas side bounds)
        and ``sizes`` (``{split: count}``), see ``mnist_scenes.write_mnist_scenes``.
        ``"mnist-windows"``: ``sizes`` (``{split: scene count}``) and ``backgrounds``
        (clutter windows per scene), see ``mnist_windows.write_mnist_windows``.
        TFDS: ``manual_dir``, the folder of manually downloaded archives (ImageNet).

    Returns:
      ``(dataset, info)``: an unbatched ``tf.data.Dataset`` in a fixed order of ``(image
      uint8 [H, W, 3], label int64 [])`` and a ``SourceInfo``.

    Sources:
      * Folders (``"folder:<path>"``): ``<path>/<class>/**/<image>``, class names
        sorted alphabetically, as ``image_dataset_from_directory`` does; files with
        extensions in ``IMAGE_EXTENSIONS`` (any case), in any subfolder of a class
        folder. If ``<path>`` has any of the subfolders ``train``, ``validation`` and
        ``test``, the split is read from that subfolder (the class names are then
        the union over the split folders, so labels agree between splits).
        Otherwise ``"train"`` and ``"validation"`` split each class's files at
        random (by ``seed``: ``validation_fraction * n`` of its ``n`` files, rounded
        half up, go to validation) and ``"test"`` is an error. Files that cannot be read or
        decoded (corrupt, truncated, empty) are skipped and logged once per dataset
        with a warning that names them, without interrupting the epoch.
      * TFDS: ``tfds.builder(name, data_dir).download_and_prepare()`` (a no-op once
        prepared) then ``as_dataset(as_supervised=True)``: the same as ``tfds.load``.
        ``"validation"`` falls back to ``"test"`` for datasets that have no
        validation split (Caltech101, CIFAR, Food-101 and others), so that split is
        then also the test split. Class names come from the label feature.

    Raises:
      ValueError: an unknown name (the message lists the known ones), split or
        option; a folder that does not exist, has no images, or has none in the
        split.
    """
    kind = _source_kind(name, split, options)
    if kind == "mnist-scenes":
        return _mnist_scenes_source(name, split, data_dir, seed, shuffle_files, **options)
    if kind == "mnist-windows":
        return _mnist_windows_source(name, split, data_dir, seed, shuffle_files, **options)
    if kind == "folder":
        path = name[len("folder:") :]
        if not path:
            raise ValueError("`name` 'folder:<path>' needs a path, e.g. 'folder:~/data/flowers'.")
        return _folder_source(
            name, pathlib.Path(path).expanduser(), split, seed, validation_fraction, shuffle_files=shuffle_files
        )
    tfds_name = name[len("tfds:") :] if name.startswith("tfds:") else name
    return _tfds_source(name, tfds_name, split, data_dir, options.get("manual_dir"))


def _source_kind(name, split, options):
    """``"mnist-scenes"``, ``"mnist-windows"``, ``"folder"`` or ``"tfds"``, after
    checking that the source takes ``split`` and ``options``."""
    if not isinstance(name, str):
        raise ValueError(f"`name` must be a string, one of {_known_names()}; got {name!r}.")
    if name in ("mnist-scenes", "mnist-windows"):
        kind = name
    elif name.startswith("folder:"):
        kind = "folder"
    elif name.startswith("tfds:") or name.split("/")[0].split(":")[0] in TFDS_DATASETS:
        kind = "tfds"
    else:
        raise ValueError(f"Unknown source `name` {name!r}; known: {_known_names()}.")
    unknown = sorted(set(options) - set(_OPTIONS[kind]))
    if unknown:
        accepted = ", ".join(_OPTIONS[kind]) or "none"
        raise ValueError(f"Unknown option(s) {', '.join(unknown)} for source {name!r}; accepted: {accepted}.")
    if split not in SPLITS and kind != "tfds":
        raise ValueError(f"`split` must be one of {', '.join(map(repr, SPLITS))}; got {split!r}.")
    return kind


def _known_names():
    return ", ".join(
        ["'mnist-scenes'", "'mnist-windows'", "'folder:<path>'", *map(repr, TFDS_DATASETS), "'tfds:<name>'"]
    )


def _mnist_scenes_source(name, split, data_dir, seed, shuffle_files, min_side=64, max_side=256, sizes=None):
    root = None
    if data_dir is not None:
        root = mnist_scenes.default_root(seed, min_side, max_side, sizes, base=data_dir)
    root = mnist_scenes.write_mnist_scenes(root, sizes, seed, min_side, max_side)
    # Explicit class names: a small split may lack a digit, which must not shift labels.
    return _folder_source(
        name, root, split, seed, 0.0, class_names=mnist_scenes.CLASS_NAMES, shuffle_files=shuffle_files
    )


def _mnist_windows_source(name, split, data_dir, seed, shuffle_files, sizes=None, backgrounds=1):
    root = None
    if data_dir is not None:
        root = mnist_windows.default_root(seed, sizes, backgrounds, base=data_dir)
    root = mnist_windows.write_mnist_windows(root, sizes, seed, backgrounds)
    return _folder_source(
        name, root, split, seed, 0.0, class_names=mnist_windows.CLASS_NAMES, shuffle_files=shuffle_files
    )


def _folder_source(name, root, split, seed, validation_fraction, class_names=None, shuffle_files=True):
    if not root.is_dir():
        raise ValueError(f"Folder source {name!r}: {root} is not a directory.")
    split_dirs = [s for s in SPLITS if (root / s).is_dir()]
    if split_dirs:
        if split not in split_dirs:
            raise ValueError(
                f"Folder source {name!r}: {root} has split folders {', '.join(split_dirs)} "
                f"but no {split!r} folder ({root / split})."
            )
        if class_names is None:
            class_names = sorted({c for s in split_dirs for c in _subfolders(root / s)})
        folder = root / split
        paths, labels = _list_images(folder, class_names)
    else:
        if not is_number(validation_fraction) or not 0 <= validation_fraction < 1:
            raise ValueError(f"`validation_fraction` must be a number in [0, 1); got {validation_fraction!r}.")
        if split == "test":
            raise ValueError(
                f"Folder source {name!r}: {root} has no train/validation/test subfolders, so "
                "only 'train' and 'validation' (a split of its files by `seed` and "
                "`validation_fraction`) exist; there is no 'test' split."
            )
        if class_names is None:
            class_names = _subfolders(root)
        folder = root
        paths, labels = _list_images(folder, class_names)
        paths, labels = _split_files(paths, labels, split, seed, validation_fraction)
    if not paths:
        raise ValueError(
            f"Folder source {name!r}: no images for split {split!r} in {folder} (expected "
            f"<class>/<image> with extensions {', '.join(IMAGE_EXTENSIONS)})."
        )
    if shuffle_files:
        order = np.random.default_rng([seed, len(paths)]).permutation(len(paths))
        paths = [paths[i] for i in order]
        labels = [labels[i] for i in order]
    info = SourceInfo(name, split, tuple(class_names), len(paths))
    return _decode_files(paths, labels), info


def _subfolders(folder):
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def _list_images(folder, class_names):
    paths, labels = [], []
    for label, class_name in enumerate(class_names):
        class_dir = folder / class_name
        if not class_dir.is_dir():
            continue
        # Sorted walk: the same files in the same order on every machine.
        for directory, subdirs, files in os.walk(class_dir, followlinks=True):
            subdirs.sort()
            for file in sorted(files):
                if os.path.splitext(file)[1].lower() in IMAGE_EXTENSIONS:
                    paths.append(os.path.join(directory, file))
                    labels.append(label)
    return paths, labels


def _split_files(paths, labels, split, seed, fraction):
    # Per class, so that both splits keep the class proportions.
    paths, labels = np.asarray(paths, object), np.asarray(labels, np.int64)
    chosen = np.zeros(len(paths), bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng = np.random.default_rng([seed, int(label)])
        count = math.floor(fraction * len(members) + 0.5)
        validation = rng.permutation(members)[:count]
        chosen[validation] = True
    if split == "train":
        chosen = ~chosen
    return paths[chosen].tolist(), labels[chosen].tolist()


def _decode_files(paths, labels):
    reported = set()
    lock = threading.Lock()

    def report(path):
        path = path.numpy().decode()
        with lock:
            if path in reported:
                return False
            reported.add(path)
        if not os.path.exists(path):
            reason = "the file no longer exists"
        elif not os.access(path, os.R_OK):
            reason = "no permission to read it"
        elif os.path.getsize(path) == 0:
            reason = "the file is empty"
        else:
            reason = "it is corrupt, truncated or not an image"
        logger.warning("Skipping image %s: TensorFlow could not read or decode it (%s).", path, reason)
        return False

    def decode(path, label):
        # A decode error would end the epoch; inside a one-element dataset with
        # ignore_errors it leaves that dataset empty instead, and the fallback element
        # behind it flags the file. Graph-only, so it runs in tf.data's parallel map.
        decoded = (
            tf.data.Dataset.from_tensors(path)
            .map(lambda p: decode_image_tf(tf.io.read_file(p)))
            .ignore_errors()
            .map(lambda image: (image, True))
        )
        fallback = tf.data.Dataset.from_tensors((tf.zeros([0, 0, 3], tf.uint8), False))
        image, ok = decoded.concatenate(fallback).take(1).get_single_element()
        return path, image, label, ok

    def flag_failure(path):
        kept = tf.py_function(report, [path], tf.bool)
        kept.set_shape([])
        return kept

    def keep(path, image, label, ok):
        # Only the failures reach Python (one call per bad file per epoch).
        return tf.cond(ok, lambda: tf.constant(True), lambda: flag_failure(path))

    dataset = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), tf.constant(labels, tf.int64)))
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.filter(keep)
    return dataset.map(lambda path, image, label, ok: (image, label))


def _tfds_source(name, tfds_name, split, data_dir, manual_dir):
    import tensorflow_datasets as tfds  # heavy; only TFDS sources need it

    builder = tfds.builder(tfds_name, data_dir=data_dir)
    prepare = {}
    if manual_dir is not None:
        prepare["download_config"] = tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))
    builder.download_and_prepare(**prepare)
    tfds_split = tfds_split_name(split, builder.info.splits)
    dataset = builder.as_dataset(split=tfds_split, as_supervised=True, shuffle_files=False)

    supervised = builder.info.supervised_keys
    label_key = supervised[1] if isinstance(supervised, tuple) and isinstance(supervised[1], str) else "label"
    label_feature = builder.info.features[label_key]
    if not hasattr(label_feature, "names"):
        raise ValueError(f"TFDS dataset {tfds_name!r}: its label {label_key!r} is not a ClassLabel feature.")
    num_examples = None
    if tfds_split in builder.info.splits:
        num_examples = int(builder.info.splits[tfds_split].num_examples)
    info = SourceInfo(name, split, tuple(label_feature.names), num_examples)
    return dataset.map(_to_rgb, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True), info


def tfds_split_name(split, available):
    """The TFDS split read for ``split``, given the dataset's split names ``available``.

    ``"validation"`` becomes ``"test"`` when the dataset has a test split and no
    validation split. Where the splits are not known (``available`` empty, as under
    ``tfds.testing.mock_data``), and for any other split, ``split`` is unchanged.
    """
    available = set(available)
    if split == "validation" and available and "validation" not in available and "test" in available:
        return "test"
    return split


def _to_rgb(image, label):
    if image.dtype != tf.uint8:
        image = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)
    # Gray (and gray + alpha) to three channels, RGBA to RGB.
    image = tf.cond(
        tf.shape(image)[-1] < 3,
        lambda: tf.tile(image[..., :1], [1, 1, 3]),
        lambda: image[..., :3],
    )
    # Forget any static height and width (CIFAR's 32 x 32) so every source has the
    # same element_spec; placeholder_with_default is an identity with a looser shape.
    image = tf.compat.v1.placeholder_with_default(image, [None, None, 3])
    return image, tf.cast(label, tf.int64)
