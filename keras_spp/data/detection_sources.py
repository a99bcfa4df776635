"""Detection sources: one entry point from a dataset name to annotated images.

``load_detection(name, split)`` returns ``(examples, class_names)``: a list of
``keras_spp.data.detection_examples.DetectionExample`` (boxes ``[y1, x1, y2, x2]``
in continuous pixels, image files on disk) and the class names, whatever the
data's origin. Every source is a PASCAL VOC folder underneath, read by
``keras_spp.data.voc.read_voc``:

  * ``"mnist-detection"``: MNIST digits in cluttered scenes
    (``keras_spp.data.mnist_detection``), built on first use; works offline.
    Splits ``"trainval"`` and ``"test"``.
  * ``"voc:<path>"``: any VOC-layout folder; a split is any
    ``ImageSets/Main/<split>.txt`` there.
  * ``"voc/2007"``, ``"voc/2012"`` or ``"tfds:<name>"``: a TensorFlow Datasets
    detection dataset (``image`` plus ``objects`` with ``bbox`` and ``label``, as
    ``voc`` and ``coco`` have), materialized once per split into a VOC folder
    under ``data_dir`` (see ``materialize_tfds``). Splits ``"trainval"`` (TFDS's
    ``train+validation``), ``"train"``, ``"val"`` or ``"validation"``, ``"test"``,
    or any other TFDS split string, passed through.

Example:

>>> import tempfile, numpy as np
>>> from keras_spp.data import voc
>>> root = tempfile.mkdtemp()
>>> _ = voc.write_voc(root, "test", [("a", np.zeros([8, 8], np.uint8), [], [], [])], ["x"])
>>> examples, names = load_detection(f"voc:{root}", "test")
>>> len(examples), examples[0].boxes.shape, names
(1, (0, 4), ('x',))
"""

import logging
import pathlib
import urllib.parse

import numpy as np
from tqdm import tqdm

from keras_spp.data import mnist, mnist_detection, voc

TFDS_DATASETS = ("voc/2007", "voc/2012")
# Our split names to TFDS's (TFDS's voc has train, validation and test).
TFDS_SPLITS = {
    "trainval": "train+validation",
    "train": "train",
    "val": "validation",
    "validation": "validation",
    "test": "test",
}

_OPTIONS = {
    "mnist-detection": ("num_trainval", "num_test", "num_val", "seed"),
    "voc": ("class_names",),
    "tfds": ("tfds_data_dir",),
}

logger = logging.getLogger(__name__)


def load_detection(name, split, data_dir=None, **options):
    """A detection source as ``(examples, class_names)``.

    Args:
      name: ``"mnist-detection"``, ``"voc:<path>"``, ``"voc/2007"``, ``"voc/2012"``
        or ``"tfds:<name>"`` (see the module docstring).
      split: ``"trainval"``, ``"val"`` or ``"test"`` for ``"mnist-detection"``; a split file's
        name for ``"voc:<path>"``; for TFDS sources see ``TFDS_SPLITS``.
      data_dir: where built and materialized folders are kept; default
        ``keras_spp.data.mnist.data_dir()``. Unused by ``"voc:<path>"``.
      **options: ``"mnist-detection"``: ``num_trainval`` (400), ``num_test`` (100),
        ``num_val`` (0: no ``"val"`` split), ``seed`` (0). ``"voc:<path>"``: ``class_names`` (default: the folder's
        ``labels.txt``, else the 20 VOC classes). TFDS: ``tfds_data_dir``, TFDS's
        own data folder (default TFDS's).

    Returns:
      ``(examples, class_names)``: a list of ``DetectionExample`` and a tuple of names.

    Raises:
      ValueError: an unknown name (the message lists the accepted forms), split or
        option; a TFDS dataset without detection features.
      FileNotFoundError: a VOC folder without the split (the message lists its splits).
    """
    if not isinstance(name, str):
        raise ValueError(f"`name` must be a string, one of {_accepted()}; got {name!r}.")
    if name == "mnist-detection":
        kind = "mnist-detection"
    elif name.startswith("voc:"):
        kind = "voc"
    elif name in TFDS_DATASETS or name.startswith("tfds:"):
        kind = "tfds"
    else:
        raise ValueError(f"Unknown detection source {name!r}; accepted: {_accepted()}.")
    unknown = sorted(set(options) - set(_OPTIONS[kind]))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {', '.join(unknown)} for source {name!r}; accepted: {', '.join(_OPTIONS[kind])}."
        )
    if not isinstance(split, str) or not split:
        raise ValueError(f"`split` must be a non-empty string such as 'trainval' or 'test'; got {split!r}.")

    if kind == "mnist-detection":
        if split not in mnist_detection.SPLITS:
            raise ValueError(
                f"Source 'mnist-detection' has the splits {', '.join(map(repr, mnist_detection.SPLITS))}; "
                f"got {split!r}."
            )
        if split == "val" and not options.get("num_val"):
            raise ValueError(
                "Source 'mnist-detection' has a 'val' split only with num_val > 0 "
                "(e.g. load_detection('mnist-detection', 'val', num_val=200))."
            )
        root = mnist_detection.ensure_mnist_detection(data_dir=data_dir, **options)
        return voc.read_voc(root, split, mnist_detection.CLASS_NAMES)
    if kind == "voc":
        path = name[len("voc:") :]
        if not path:
            raise ValueError("`name` 'voc:<path>' needs a path, e.g. 'voc:~/data/VOCdevkit/VOC2007'.")
        return voc.read_voc(pathlib.Path(path).expanduser(), split, options.get("class_names"))
    tfds_name = name.removeprefix("tfds:")
    if not tfds_name:
        raise ValueError("`name` 'tfds:<name>' needs a TFDS dataset name, e.g. 'tfds:voc/2007'.")
    root, voc_split = materialize_tfds(tfds_name, split, data_dir, options.get("tfds_data_dir"))
    return voc.read_voc(root, voc_split)


def materialize_tfds(tfds_name, split, data_dir=None, tfds_data_dir=None):
    """Writes one split of a TFDS detection dataset as a VOC folder, once.

    The folder is ``<data_dir>/tfds_voc/<name>_<version>_<split>`` (``/`` and other
    unsafe characters percent-encoded) and holds the split file
    ``ImageSets/Main/<split>.txt``; it is built atomically (``voc.build_voc_once``)
    and later calls only return it. Building calls TFDS's
    ``download_and_prepare`` (a download, for a dataset not yet prepared).

    What is written:
      * each image's encoded bytes unchanged (read with ``tfds.decode.SkipDecoding``),
        with the extension of its format; its size is read from the header. Bytes
        that are not an image are skipped with a logged warning;
      * the objects' normalized ``bbox`` ``[ymin, xmin, ymax, xmax]`` in pixels.
        TFDS's ``voc`` stored VOC's 1-based inclusive corners divided by the image
        size, so there ``x1 = xmin * W - 1`` and ``x2 = xmax * W`` (the original
        integers come back exactly: within 1e-3 of an integer snaps to it); other
        datasets (e.g. ``coco``) have continuous corners, ``x1 = xmin * W``;
      * ``difficult`` from ``objects/is_difficult``, else ``objects/is_crowd``
        (crowd regions, which COCO's evaluation also ignores), else ``False``;
      * the class names of ``objects/label`` in ``labels.txt``;
      * ids from ``image/filename`` (its stem), or ``tfds_<index>`` where that is
        missing, not a usable file name, or already taken.

    Args:
      tfds_name: a TFDS name such as ``"voc/2007"`` (``/config`` and ``:version``
        as TFDS accepts them).
      split: as ``load_detection``'s (``"trainval"`` is ``train+validation``).
      data_dir: the base folder; default ``keras_spp.data.mnist.data_dir()``.
      tfds_data_dir: TFDS's own data folder; default TFDS's.

    Returns:
      ``(root, voc_split)``: the folder and the name of its split file.
    """
    import tensorflow_datasets as tfds  # heavy; only TFDS sources need it

    builder = tfds.builder(tfds_name, data_dir=tfds_data_dir)
    class_names, difficult_key = _detection_schema(tfds_name, builder.info.features)
    voc_split = urllib.parse.quote(split, safe="")
    tfds_split = TFDS_SPLITS.get(split, split)
    base = mnist.data_dir() if data_dir is None else pathlib.Path(data_dir).expanduser()
    folder = urllib.parse.quote(f"{builder.name}_{builder.info.config_name or 'default'}", safe="")
    root = base / "tfds_voc" / f"{folder}_{builder.version}_{voc_split}"

    def build(staging):
        builder.download_and_prepare()
        dataset = builder.as_dataset(
            split=tfds_split, decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False
        )
        total = None
        if tfds_split in builder.info.splits:
            total = int(builder.info.splits[tfds_split].num_examples)
        items = _tfds_items(tfds.as_numpy(dataset), builder.name == "voc", difficult_key, tfds_name, total)
        voc.write_voc(staging, voc_split, items, class_names)

    description = f"tfds {tfds_name} {builder.version} split={tfds_split}"
    return voc.build_voc_once(root, build, description), voc_split


def _detection_schema(tfds_name, features):
    import tensorflow_datasets as tfds

    expected = (
        "load_detection reads TFDS datasets with an 'image' Image feature and an 'objects' "
        "Sequence holding 'bbox' (BBoxFeature) and 'label' (ClassLabel), as 'voc' and 'coco' have"
    )

    def member(parent, key):
        return parent[key] if isinstance(parent, tfds.features.FeaturesDict) and key in parent else None

    objects = member(features, "objects")
    inner = getattr(objects, "feature", None)
    if (
        not isinstance(member(features, "image"), tfds.features.Image)
        or not isinstance(objects, tfds.features.Sequence)
        or not isinstance(member(inner, "bbox"), tfds.features.BBoxFeature)
        or not isinstance(member(inner, "label"), tfds.features.ClassLabel)
    ):
        raise ValueError(f"TFDS dataset {tfds_name!r} has the features {features}; {expected}.")
    difficult_key = next((k for k in ("is_difficult", "is_crowd") if k in inner), None)
    return tuple(inner["label"].names), difficult_key


def _tfds_items(examples, voc_corners, difficult_key, tfds_name, total):
    seen = set()
    skipped = 0
    for index, example in enumerate(tqdm(examples, total=total, desc=f"materializing {tfds_name}", unit="img")):
        data = example["image"]
        image_id = _image_id(example.get("image/filename"), index, seen)
        try:
            height, width, _, extension = voc.describe_encoded(data)
        except ValueError as error:
            skipped += 1
            logger.warning("Skipping example %d (%s) of TFDS %s: %s.", index, image_id, tfds_name, error)
            continue
        seen.add(image_id)
        objects = example["objects"]
        boxes = np.asarray(objects["bbox"], np.float64).reshape(-1, 4) * [height, width, height, width]
        if voc_corners:
            boxes[:, :2] -= 1.0  # TFDS's voc: 1-based inclusive corners over the size
        nearest = np.rint(boxes)
        boxes = np.where(np.abs(boxes - nearest) < 1e-3, nearest, boxes)
        labels = np.asarray(objects["label"], np.int64).reshape(-1)
        difficult = None
        if difficult_key is not None:
            difficult = np.asarray(objects[difficult_key], bool).reshape(-1)
        yield image_id, (bytes(data), extension), boxes, labels, difficult
    if skipped:
        logger.warning("TFDS %s: %d example(s) skipped, their image bytes not being an image.", tfds_name, skipped)


def _image_id(filename, index, seen):
    if isinstance(filename, bytes):
        filename = filename.decode("utf-8", "replace")
    stem = pathlib.PurePosixPath(filename).stem if isinstance(filename, str) else ""
    # An id write_voc would refuse (a control character) would fail the whole materialization.
    if voc.is_flat_id(stem) and stem not in seen:
        return stem
    candidate = f"tfds_{index:06d}"
    while candidate in seen:
        candidate += "_"
    return candidate


def _accepted():
    return "'mnist-detection', 'voc:<path>', " + ", ".join(map(repr, TFDS_DATASETS)) + ", 'tfds:<name>'"
