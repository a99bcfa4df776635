"""PASCAL VOC folders: read them into ``DetectionExample`` records and write them.

The layout (VOC2007/VOC2012's, and the one ``write_voc`` produces)::

    root/
      JPEGImages/<id>.jpg        any format Pillow decodes, any extension
      Annotations/<id>.xml       one <annotation> per image
      ImageSets/Main/<split>.txt one image id per line
  An id may name a subfolder (``2008/000123``: ``Annotations/2008/000123.xml``); ids
  that are absolute, have a ``..`` component or lead out of their folder through a
  symbolic link are refused (``keras_spp.data.paths``), as is an XML ``<filename>``
  that does.
      labels.txt                 optional: the class names, one per line, in label order

Conventions:
  * Boxes come out in ``keras_spp.data.detection_examples``' convention, ``[y1, x1,
    y2, x2]`` in continuous pixels. The XML holds VOC's 1-based inclusive corners,
    so ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax``; ``write_voc`` does
    the inverse, so integer boxes survive a round trip exactly.
  * Labels are indices into the class names: the ``class_names`` argument, else
    ``labels.txt`` in the root, else the 20 VOC classes (``VOC_CLASSES``). Object
    names are matched exactly (case and all).
  * Boxes refer to the stored pixel grid, and image sizes are the stored image's,
    read from the file's header (no decoding). EXIF orientation is never applied
    (not by ``load_image``, not to the size), as in the VOC devkit and TensorFlow's
    ``decode_jpeg``/``decode_image``.

What becomes of imperfect annotations:
  * an image with no ``<object>``: an example with 0 boxes;
  * a ``<size>`` that differs from the image's: a logged warning naming both files;
    the boxes are clipped to the real image (below). Where ``<size>`` is the size of
    the image turned by its EXIF orientation (5-8), the boxes were drawn on pixels
    that are never shown: ``ValueError`` naming the files;
  * an image whose header cannot be read: ``ValueError`` naming it, unless the XML
    has a ``<size>``: then a logged warning, and the example keeps that size
    (``load_image`` refuses the file later, and the detection code skips it);
  * a box partly outside the image: clipped to it;
  * a box with no area (also after clipping): dropped, with a logged warning that
    names the XML file;
  * an object whose name is not a class name: ``ValueError`` naming the file, the
    name and the accepted names;
  * malformed XML (or a missing or non-numeric coordinate): ``ValueError`` naming
    the file;
  * a missing split file, annotation or image: ``FileNotFoundError``.

Example:

>>> import tempfile, numpy as np
>>> root = tempfile.mkdtemp()
>>> image = np.zeros([40, 60, 3], np.uint8)
>>> _ = write_voc(root, "trainval", [("a", image, [[5, 10, 20, 30]], [1], [False])], ("cat", "dog"))
>>> examples, names = read_voc(root, "trainval")
>>> names, examples[0].height, examples[0].width, examples[0].boxes.tolist(), examples[0].labels.tolist()
(('cat', 'dog'), 40, 60, [[5.0, 10.0, 20.0, 30.0]], [1])
"""

import io
import logging
import os
import pathlib
import tempfile
import xml.etree.ElementTree as ElementTree

import numpy as np
from PIL import Image, UnidentifiedImageError

from keras_spp.data.build_once import (
    MARKER,  # noqa: F401  (re-exported: callers check it)
    build_once,
)
from keras_spp.data.detection_examples import DetectionExample
from keras_spp.data.paths import check_relative, inside

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
LABELS_FILE = "labels.txt"

# Pillow's format names to the extension written for encoded images.
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}
# Tried first, in this order, when <id>.jpg is absent: the usual formats before any
# stray file that shares the id's stem.
_PREFERRED = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# EXIF orientations that show the stored image turned by 90 or 270 degrees (5-8).
_ORIENTATION_TAG = 0x0112
_QUARTER_TURNS = (5, 6, 7, 8)
# The second field of a line in VOC's per-class split files: in the class, not, difficult.
_CLASS_FLAGS = ("1", "-1", "0")
# Speed over size, as in mnist_scenes.
_PNG_COMPRESS_LEVEL = 1

logger = logging.getLogger(__name__)


def read_voc(root, split, class_names=None):
    """Reads one split of a VOC-layout folder.

    Args:
      root: the folder holding ``JPEGImages``, ``Annotations`` and ``ImageSets/Main``.
      split: the name of a file ``ImageSets/Main/<split>.txt`` (``"trainval"``,
        ``"test"``, ...): UTF-8 (a byte order mark is skipped), one id per line, or
        VOC's per-class form ``<id> 1`` / ``<id> -1`` / ``<id> 0`` (every id is read,
        whatever its flag); blank lines are skipped. Any other line is refused
        (``ValueError`` naming the file and line), never cut at its first word.
      class_names: the class names in label order; default ``labels.txt`` in
        ``root`` when it exists, else ``VOC_CLASSES``.

    Returns:
      ``(examples, class_names)``: a list of ``DetectionExample`` in the split file's
      order (``image_path`` absolute) and the class names as a tuple.

    Raises:
      FileNotFoundError: no such split file (the message lists the splits there
        are), annotation or image.
      ValueError: malformed XML, an unknown object name, bad ``class_names``; an id
        that leads out of the folder (the message names the split file's line),
        checked for every id before any annotation is read.
    """
    root = pathlib.Path(root).expanduser().absolute()
    _check_split_name(split)
    if class_names is None:
        class_names = read_class_names(root)
    else:
        class_names = _validate_class_names(class_names)
    ids = _split_ids(root, split)
    label_of = {name: index for index, name in enumerate(class_names)}
    images = _ImageFolder(root / "JPEGImages")
    examples = [_read_example(xml_path, image_id, label_of, class_names, images) for image_id, xml_path in ids]
    return examples, class_names


def object_names(root, split):
    """The sorted distinct ``<object><name>``s of one split's annotations: the classes
    of a VOC-layout export that has no ``labels.txt``.

    Raises ``FileNotFoundError`` and ``ValueError`` as ``read_voc`` does for the split
    file and the XML.

    >>> import tempfile
    >>> import numpy as np
    >>> root = tempfile.mkdtemp()
    >>> items = [("a", np.zeros((8, 8, 3), np.uint8), [[1, 1, 5, 5]], [1], [False])]
    >>> _ = write_voc(root, "train", items, ("zebra", "okapi"))
    >>> object_names(root, "train")
    ('okapi',)
    """
    root = pathlib.Path(root).expanduser().absolute()
    _check_split_name(split)
    names = set()
    for image_id, xml_path in _split_ids(root, split):
        annotation = _annotation(xml_path, image_id)
        names.update(_text(element, "name") for element in annotation.findall("object"))
    return tuple(sorted(name for name in names if name))


def read_class_names(root):
    """The class names of a VOC folder: its ``labels.txt`` if any, else ``VOC_CLASSES``."""
    path = pathlib.Path(root).expanduser() / LABELS_FILE
    if not path.is_file():
        return VOC_CLASSES
    names = [line.strip() for line in _read_text(path, "one class name per line").splitlines() if line.strip()]
    try:
        return _validate_class_names(names)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def decode_image_tf(encoded):
    """``tf.io.decode_image(encoded, channels=3, expand_animations=False)`` for a graph,
    but JPEGs decoded with the exact integer DCT: TensorFlow's default (fast) DCT
    differs from Pillow's, and so from ``load_image``, by up to 6 levels (mean 1)
    on a quality-90 photo; ``INTEGER_ACCURATE`` gives Pillow's pixels exactly. Every
    TensorFlow decoder of image files in the project (the classification pipeline,
    the exported models' ``image_bytes``) is this one, so a file gives the same
    pixels in training, in Keras and in serving."""
    import tensorflow as tf

    encoded = tf.convert_to_tensor(encoded, tf.string)
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.ensure_shape(tf.io.decode_image(encoded, channels=3, expand_animations=False), [None, None, 3]),
    )


def load_image(path):
    """An image file as uint8 ``[H, W, 3]`` RGB: the one image decoder of keras_spp
    (VOC reading, proposals, training, detection, drawing all read files with it).

    Whatever Pillow decodes, by one rule that ``tf.io.decode_image(data, channels=3,
    expand_animations=False)`` (the classification pipeline's and the exported
    models' decoder) follows for the formats it reads, so that a file gives the
    same pixels in training and in serving:
      * 8-bit RGB: as stored;
      * grayscale (8-bit, and 1-bit): repeated to three channels;
      * palette: looked up to RGB (a transparent entry keeps its colour);
      * alpha (RGBA, LA, PA): dropped, not composited onto any background;
      * 16-bit samples (gray, gray + alpha, RGB, RGBA; PNG, TIFF, PGM): the top 8
        bits, ``value >> 8`` (TensorFlow's ``convert_image_dtype``); Pillow's
        ``convert`` would clip 16-bit gray at 255 instead. 32-bit integer images:
        the same when a value exceeds 255, else as stored;
      * other modes (CMYK, YCbCr, float): Pillow's ``convert("RGB")``;
      * an animation: its first frame;
      * EXIF orientation: never applied; the pixels are in stored order, the order
        VOC's boxes (and the VOC devkit) refer to. ``read_voc`` refuses annotations
        whose ``<size>`` is that of the turned image.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: the file exists but cannot be read or decoded (corrupt,
        truncated, empty, not an image); the message names it. Callers decide
        whether to skip it or fail.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No image file {path}.")
    return _decode_file(path, path)


def decode_image_bytes(data, name="the image"):
    """``load_image`` of an encoded image held in memory (``bytes``); errors name ``name``."""
    if not data:
        raise ValueError(f"Cannot read {name}: it is empty.")
    return _decode_file(io.BytesIO(bytes(data)), name)


def _decode_file(source, path):
    try:
        with Image.open(source) as image:
            # Known from the undecoded tiles only: Pillow opens some 16-bit files as 32-bit "I".
            sixteen_bit = image.mode.startswith("I;16") or any(
                _raw_mode(tile).startswith("I;16") for tile in image.tile
            )
            image.load()
            return _to_rgb(image, sixteen_bit)
    except Image.DecompressionBombError as error:
        raise _bomb_error(path, error) from error
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as error:
        raise ValueError(f"Cannot read image {path}: {_reason(path, error)}.") from error


def image_size(path):
    """``(height, width)`` of an image file from its header, without decoding it.

    Raises ``FileNotFoundError`` or ``ValueError`` as ``load_image`` does.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No image file {path}.")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError as error:
        raise _bomb_error(path, error) from error
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as error:
        raise ValueError(f"Cannot read image {path}: {_reason(path, error)}.") from error
    return height, width


def write_voc(root, split, items, class_names):
    """Writes images and their boxes as one split of a VOC-layout folder.

    Files of other splits already in ``root`` stay (write ``"trainval"`` and
    ``"test"`` into one folder by calling this twice); the split file is replaced.

    Args:
      root: the folder; created if missing.
      split: the split's name: ``ImageSets/Main/<split>.txt``.
      items: an iterable of ``(image_id, image, boxes, labels, difficult)``:
        * ``image_id``: a non-empty string without whitespace or path separators,
          unique within the split;
        * ``image``: uint8 ``[H, W]`` or ``[H, W, 1 | 3 | 4]``, written as
          ``<id>.png``; or an encoded file as ``(bytes, extension)`` (e.g.
          ``(data, ".jpg")``) or plain ``bytes`` (the extension then follows the
          format), written unchanged;
        * ``boxes``: ``[N, 4]`` ``[y1, x1, y2, x2]`` in continuous pixels (``N`` may
          be 0); written as VOC's 1-based inclusive corners, as integers where they
          are integers;
        * ``labels``: ``[N]`` indices into ``class_names``;
        * ``difficult``: ``[N]`` booleans, or ``None`` for all ``False``.
      class_names: the class names in label order, written to ``labels.txt``. A
        ``labels.txt`` already in ``root`` must hold the same names.

    Returns:
      ``root`` as a ``pathlib.Path``.

    Raises:
      ValueError: a bad id, image, box array, label or class names (the message
        names the image id); encoded bytes that are not an image.
    """
    class_names = _validate_class_names(class_names)
    root = pathlib.Path(root).expanduser()
    if not isinstance(split, str) or not split or _has_bad_characters(split):
        raise ValueError(f"`split` must be a non-empty file name without whitespace or separators; got {split!r}.")
    labels_path = root / LABELS_FILE
    if labels_path.is_file():
        existing = read_class_names(root)
        if existing != class_names:
            raise ValueError(
                f"{labels_path} already lists the classes {existing}; writing {class_names} "
                "into the same folder would change what the other splits' labels mean."
            )
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    _save_aside(labels_path, lambda file: file.write("".join(f"{name}\n" for name in class_names).encode()))

    ids = []
    seen = set()
    for item in items:
        try:
            image_id, image, boxes, labels, difficult = item
        except (TypeError, ValueError):
            raise ValueError(
                "Each item must be (image_id, image, boxes, labels, difficult); "
                f"got {type(item).__name__} {_short(item)}."
            ) from None
        if not is_flat_id(image_id):
            raise ValueError(
                "Image ids must be non-empty strings without whitespace, control characters or path "
                f"separators that do not start with '.'; got {image_id!r}."
            )
        if image_id in seen:
            raise ValueError(f"Image id {image_id!r} occurs twice in split {split!r}.")
        seen.add(image_id)
        filename, height, width, depth = _write_image(root / "JPEGImages", image_id, image)
        boxes, labels, difficult = _validate_objects(image_id, boxes, labels, difficult, len(class_names))
        annotation = _annotation_xml(filename, height, width, depth, boxes, labels, difficult, class_names)
        tree = ElementTree.ElementTree(annotation)
        _save_aside(
            root / "Annotations" / f"{image_id}.xml", lambda file, tree=tree: tree.write(file, encoding="utf-8")
        )
        ids.append(image_id)
    # Written last and whole: an interrupted write leaves the old list, never a shorter one.
    _save_aside(
        root / "ImageSets" / "Main" / f"{split}.txt", lambda file: file.write("".join(f"{i}\n" for i in ids).encode())
    )
    return root


# Not VOC-specific (mnist-scenes uses it too); kept under this name for its callers.
build_voc_once = build_once


def describe_encoded(data):
    """``(height, width, depth, extension)`` of encoded image bytes, from the header.

    ``extension`` is the usual one of the format (``".jpg"``, ``".png"``, ...).

    Raises:
      ValueError: Pillow does not recognise the bytes as an image, or refuses it as a
        possible decompression bomb (over twice ``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            depth = len(image.getbands())
            kind = image.format
    except Image.DecompressionBombError as error:
        # Not an OSError: it would end a TFDS materialization instead of skipping the image.
        raise ValueError(
            f"Pillow refuses the image as a possible decompression bomb ({error}); raise "
            "PIL.Image.MAX_IMAGE_PIXELS (or set it to None) if it is genuine"
        ) from None
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as error:
        raise ValueError(f"the bytes are not an image Pillow recognises ({error})") from None
    return height, width, depth, _EXTENSIONS.get(kind, f".{kind.lower()}")


class _ImageFolder:
    """Finds ``JPEGImages/<id>.*``, listing a folder once and only if needed."""

    def __init__(self, folder):
        self.folder = folder
        self._stems = {}

    def find(self, image_id, filename, xml_path):
        # An id such as 2008/000123 names a subfolder; its <filename> is a bare name there.
        subfolder, _, stem = image_id.rpartition("/")
        folder = self.folder / subfolder if subfolder else self.folder
        if filename and os.path.basename(filename) == filename and filename not in (".", ".."):
            named = inside(self.folder, f"{subfolder}/{filename}" if subfolder else filename, f"{xml_path} <filename>")
            if os.path.isfile(named):
                return pathlib.Path(named)
        where = f"image for id {image_id!r}"
        default = pathlib.Path(inside(self.folder, f"{image_id}.jpg", where))
        if default.is_file():
            return default
        if folder not in self._stems:
            stems = self._stems[folder] = {}
            if folder.is_dir():
                for entry in sorted(os.listdir(folder)):
                    entry_stem, _ = os.path.splitext(entry)
                    stems.setdefault(entry_stem, []).append(entry)
        candidates = self._stems[folder].get(stem, [])
        if not candidates:
            raise FileNotFoundError(
                f"No image for id {image_id!r} in {self.folder} (looked for "
                f"{filename or stem + '.jpg'} and {image_id}.*)."
            )
        rank = {extension: i for i, extension in enumerate(_PREFERRED)}
        best = min(candidates, key=lambda n: (rank.get(os.path.splitext(n)[1].lower(), len(rank)), n))
        return pathlib.Path(inside(self.folder, f"{subfolder}/{best}" if subfolder else best, where))


def _split_ids(root, split):
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        if not root.is_dir():
            raise FileNotFoundError(f"VOC folder {root} does not exist.")
        found = sorted(p.stem for p in split_file.parent.glob("*.txt")) if split_file.parent.is_dir() else []
        raise FileNotFoundError(
            f"No split file {split_file} for split {split!r} in VOC folder {root}; "
            f"splits there: {', '.join(found) or 'none'}."
        )
    ids, first_line = [], {}
    for number, line in enumerate(_read_text(split_file, "one image id per line").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{split_file}:{number}"
        # VOC's per-class files (<class>_<split>.txt) flag each id: 1, -1 or 0.
        if len(fields) > 2 or (len(fields) == 2 and fields[1] not in _CLASS_FLAGS):
            raise ValueError(
                f"{where}: {line.strip()!r} is not an image id: a split file holds one id per line (ids "
                "have no whitespace), or VOC's per-class form '<id> 1', '<id> -1' or '<id> 0'."
            )
        image_id = check_relative(fields[0], where)
        if image_id in first_line:
            # Twice listed, an image would be trained on and scored twice.
            raise ValueError(f"{where}: image id {image_id!r} is listed again (first on line {first_line[image_id]}).")
        first_line[image_id] = number
        ids.append((image_id, pathlib.Path(inside(root / "Annotations", f"{image_id}.xml", where))))
    return ids


def _read_text(path, holds):
    """A UTF-8 text file, without the byte order mark some editors write first."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error}); it should hold {holds}.") from None


def _check_split_name(split):
    # The split names a file: a separator or '..' would read one outside ImageSets/Main.
    if not isinstance(split, str) or not split or split in (".", "..") or any(c in "/\\\0" for c in split):
        raise ValueError(
            f"`split` must name a file in ImageSets/Main (without '.txt' or path separators), "
            f"such as 'trainval' or 'test'; got {split!r}."
        )


def _annotation(xml_path, image_id):
    """The ``<annotation>`` element of an image id, or the error naming the file."""
    if not xml_path.is_file():
        raise FileNotFoundError(f"No annotation {xml_path} for image id {image_id!r} (listed in the split file).")
    try:
        annotation = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as error:
        raise ValueError(f"Malformed annotation XML {xml_path}: {error}.") from None
    if annotation.tag != "annotation":
        raise ValueError(
            f"Malformed annotation XML {xml_path}: the root element is <{annotation.tag}>, not <annotation>."
        )
    return annotation


def _read_example(xml_path, image_id, label_of, class_names, images):
    annotation = _annotation(xml_path, image_id)

    image_path = images.find(image_id, _text(annotation, "filename"), xml_path)
    height, width = _pixel_size(annotation, xml_path, image_path)

    boxes, labels, difficult = [], [], []
    for number, element in enumerate(annotation.findall("object")):
        name = _text(element, "name")
        if name not in label_of:
            raise ValueError(
                f"{xml_path}: object {number} has class {name!r}, which is not among the "
                f"class names {class_names} (pass `class_names` or write {LABELS_FILE} to change them)."
            )
        box = element.find("bndbox")
        if box is None:
            raise ValueError(f"Malformed annotation XML {xml_path}: object {number} ({name!r}) has no <bndbox>.")
        xmin, ymin, xmax, ymax = (_number(box, key, xml_path, number) for key in ("xmin", "ymin", "xmax", "ymax"))
        # 1-based inclusive corners to continuous pixels, then onto the image.
        y1, x1 = min(max(ymin - 1.0, 0.0), height), min(max(xmin - 1.0, 0.0), width)
        y2, x2 = min(max(ymax, 0.0), height), min(max(xmax, 0.0), width)
        if y2 <= y1 or x2 <= x1:
            logger.warning(
                "Dropping object %d (%r) of %s: its box xmin=%g ymin=%g xmax=%g ymax=%g has no "
                "area inside the %dx%d image.",
                number,
                name,
                xml_path,
                xmin,
                ymin,
                xmax,
                ymax,
                width,
                height,
            )
            continue
        flag = _text(element, "difficult")
        try:
            is_difficult = bool(int(float(flag))) if flag else False
        except (ValueError, OverflowError):
            raise ValueError(
                f"Malformed annotation XML {xml_path}: object {number} has <difficult>{flag}</difficult>; "
                "accepted: 0 or 1."
            ) from None
        boxes.append((y1, x1, y2, x2))
        labels.append(label_of[name])
        difficult.append(is_difficult)
    return DetectionExample(
        image_id=image_id,
        image_path=str(image_path),
        height=height,
        width=width,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int32),
        difficult=np.asarray(difficult, bool),
    )


def _pixel_size(annotation, xml_path, image_path):
    """``(height, width)`` of the stored pixels, which the boxes are clipped to.

    Read from the image's header (no decoding); a ``<size>`` that disagrees is
    warned about, or refused when it is the size of the EXIF-rotated image.
    """
    stated = (_size(annotation, "height", xml_path), _size(annotation, "width", xml_path))
    try:
        real = image_size(image_path)
    except ValueError as error:
        if not all(stated):
            raise
        # Loaders refuse the image later and their callers skip it; its annotation stays valid.
        logger.warning("%s: %s Its example keeps <size> %dx%d (HxW).", xml_path, error, *stated)
        return stated
    if all(stated) and stated != real:
        orientation = _exif_orientation(image_path)
        if stated == real[::-1] and orientation in _QUARTER_TURNS:
            raise ValueError(
                f"{xml_path}: <size> says {stated[0]}x{stated[1]} (HxW), the size of {image_path} as its EXIF "
                f"orientation {orientation} shows it turned, but its stored pixels are {real[0]}x{real[1]}. EXIF "
                "orientation is never applied (as in the VOC devkit and TensorFlow's decoders), so these boxes "
                "would lie on the wrong pixels: save the image turned (PIL.ImageOps.exif_transpose) or annotate "
                "its stored pixels."
            )
        logger.warning(
            "%s: <size> says %dx%d (HxW) but %s is %dx%d; its boxes are read on the image's pixels (clipped "
            "to them, and dropped where nothing is left).",
            xml_path,
            *stated,
            image_path,
            *real,
        )
    return real


def _exif_orientation(path):
    try:
        with Image.open(path) as image:
            return image.getexif().get(_ORIENTATION_TAG)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def _text(element, path):
    found = element.find(path)
    return found.text.strip() if found is not None and found.text else ""


def _size(annotation, key, xml_path):
    text = _text(annotation, f"size/{key}")
    if not text:
        return 0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    # inf and nan are floats too: int() of them would raise an error naming no file.
    if not np.isfinite(value) or value < 0 or value != int(value):
        raise ValueError(f"Malformed annotation XML {xml_path}: <size><{key}> is {text!r}, not a pixel count.")
    return int(value)


def _number(box, key, xml_path, number):
    text = _text(box, key)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise ValueError(f"Malformed annotation XML {xml_path}: object {number} has <{key}> {text!r}, not a number.")
    return value


def _to_rgb(image, sixteen_bit):
    if image.mode.startswith("I"):
        values = np.asarray(image, np.int64)
        if sixteen_bit or values.max(initial=0) > 255:
            values = values >> 8
        gray = np.clip(values, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, np.uint8).copy()


def _raw_mode(tile):
    args = tile[3] if len(tile) > 3 else None
    args = args[0] if isinstance(args, tuple) and args else args
    return args if isinstance(args, str) else ""


def _bomb_error(path, error):
    """Pillow's DecompressionBombError (not an OSError) as a ValueError naming the file."""
    return ValueError(
        f"Cannot read image {path}: Pillow refuses it as a possible decompression bomb ({error}); "
        "raise PIL.Image.MAX_IMAGE_PIXELS (or set it to None) if the image is genuine."
    )


def _reason(path, error):
    if not os.path.exists(path):  # bytes in memory
        return f"they are corrupt, truncated or not an image ({error})"
    if not os.access(path, os.R_OK):
        return "no permission to read it"
    if os.path.getsize(path) == 0:
        return "the file is empty"
    return f"it is corrupt, truncated or not an image ({error})"


def _write_image(folder, image_id, image):
    if isinstance(image, (bytes, bytearray)):
        data, extension = bytes(image), None
    elif isinstance(image, tuple) and len(image) == 2 and isinstance(image[0], (bytes, bytearray)):
        data, extension = bytes(image[0]), image[1]
        if (
            not isinstance(extension, str)
            or not extension.startswith(".")
            or _has_bad_characters(extension[1:])
            or len(extension) < 2
        ):
            raise ValueError(f"Image {image_id!r}: the extension must look like '.jpg'; got {extension!r}.")
    else:
        array = np.asarray(image)
        channels = array.shape[2] if array.ndim == 3 else 0
        if array.dtype != np.uint8 or not (array.ndim == 2 or channels in (1, 3, 4)) or 0 in array.shape:
            raise ValueError(
                f"Image {image_id!r} must be uint8 [H, W] or [H, W, 1 | 3 | 4], or encoded bytes "
                f"(bytes or (bytes, '.jpg')); got dtype {array.dtype} and shape {array.shape}."
            )
        if channels == 1:
            array = array[..., 0]
        filename = f"{image_id}.png"
        picture = Image.fromarray(array)
        _save_aside(
            folder / filename, lambda file: picture.save(file, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
        )
        return filename, array.shape[0], array.shape[1], (array.shape[2] if array.ndim == 3 else 1)
    try:
        height, width, depth, detected = describe_encoded(data)
    except ValueError as error:
        raise ValueError(f"Image {image_id!r}: {error}.") from None
    extension = extension or detected
    filename = f"{image_id}{extension}"
    _save_aside(folder / filename, lambda file: file.write(data))
    return filename, height, width, depth


def _save_aside(path, write):
    """Calls ``write(binary file)`` on a temporary file beside ``path``, then renames it
    to ``path``: readers never see a partly written file."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        # mkstemp makes 0600; a data folder is as readable as any download (as in mnist.py).
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _validate_objects(image_id, boxes, labels, difficult, num_classes):
    boxes = np.asarray(boxes, np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    labels = np.asarray(labels).reshape(-1)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.all(np.isfinite(boxes)):
        raise ValueError(f"Image {image_id!r}: boxes must be finite [N, 4] [y1, x1, y2, x2]; got {_short(boxes)}.")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"Image {image_id!r}: labels must be integers in [0, {num_classes}); got {labels.tolist()}.")
    difficult = np.zeros(len(boxes), bool) if difficult is None else np.asarray(difficult, bool).reshape(-1)
    if not len(boxes) == len(labels) == len(difficult):
        raise ValueError(
            f"Image {image_id!r}: {len(boxes)} boxes, {len(labels)} labels and {len(difficult)} "
            "difficult flags; they must have one entry per object."
        )
    return boxes, labels.astype(np.int64), difficult


def _annotation_xml(filename, height, width, depth, boxes, labels, difficult, class_names):
    annotation = ElementTree.Element("annotation")
    _child(annotation, "folder", "JPEGImages")
    _child(annotation, "filename", filename)
    source = _child(annotation, "source")
    _child(source, "database", "keras_spp")
    size = _child(annotation, "size")
    _child(size, "width", str(width))
    _child(size, "height", str(height))
    _child(size, "depth", str(depth))
    _child(annotation, "segmented", "0")
    for (y1, x1, y2, x2), label, hard in zip(boxes, labels, difficult):
        element = _child(annotation, "object")
        _child(element, "name", class_names[label])
        _child(element, "pose", "Unspecified")
        _child(element, "truncated", "0")
        _child(element, "difficult", "1" if hard else "0")
        box = _child(element, "bndbox")
        # Continuous [x1, x2) is VOC's 1-based inclusive x1 + 1 .. x2.
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            _child(box, key, _format_coordinate(value))
    ElementTree.indent(annotation)
    return annotation


def _child(parent, tag, text=None):
    element = ElementTree.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _format_coordinate(value):
    if value == int(value):
        return str(int(value))
    # The shortest text that reads back as the same float32.
    return np.format_float_positional(np.float32(value), trim="-")


def _validate_class_names(class_names):
    if isinstance(class_names, str):
        raise ValueError(f"`class_names` must be a sequence of strings, not one string; got {class_names!r}.")
    try:
        names = tuple(class_names)
    except TypeError:
        raise ValueError(f"`class_names` must be a sequence of strings; got {class_names!r}.") from None
    for name in names:
        if not isinstance(name, str) or not name or name != name.strip() or "\n" in name or "\r" in name:
            raise ValueError(
                "Class names must be non-empty strings without surrounding whitespace or line "
                f"breaks; got {name!r} in {names}."
            )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"Class names must be unique; {duplicates} occur more than once in {names}.")
    return names


def is_flat_id(image_id):
    """Whether ``image_id`` is an id ``write_voc`` writes (and ``read_voc`` reads back):
    a non-empty string without whitespace, control characters or path separators,
    not starting with ``.``."""
    return (
        isinstance(image_id, str)
        and bool(image_id)
        and not image_id.startswith(".")
        and not _has_bad_characters(image_id)
        and all(ord(c) >= 32 and ord(c) != 127 for c in image_id)
    )


def _has_bad_characters(text):
    return any(c.isspace() or c in "/\\" for c in text) or text in (".", "..")


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
