"""MNIST windows: classification crops cut from mnist-detection scenes, background included.

The pretraining set for the offline detector. SPP-net's detector keeps the conv
layers it is given and fine-tunes only fc layers, so what those conv layers learned
to tell apart bounds it. ``mnist-scenes`` teaches digits on smooth backgrounds;
here the backbone sees what the detector will see: the clutter of
``mnist_detection`` (strokes, textures, digit fragments), digits at all of its
sizes, and windows of clutter alone, as an 11th class ``"background"``.

A scene is rendered exactly as ``mnist_detection`` renders one (the same seeds:
scene ``i`` of ``"train"`` is mnist-detection's ``trainval_{i:06d}``; ``"validation"``
draws MNIST's validation digits and ``"test"`` its test digits into scenes of their
own, never mnist-detection's test images). From each scene:
  * one window per digit (``window_around``): a rectangle around the digit's box
    of the area of a square ``CONTEXT`` (1.6..2.6) times the box's longer side,
    stretched to an aspect ratio up to ``MAX_ASPECT`` (1.4) either way, its centre moved by up to
    ``JITTER`` (12%) of its size, clipped to the scene: a digit with about as much
    context as an mnist-scenes digit has in its 112 px training crop;
  * ``backgrounds`` (default 1) windows of clutter, labelled ``"background"``: a
    box of a digit's size (the scene's ``digit_size_range``) at a uniform place,
    kept when it overlaps every digit's box by IoU < ``BACKGROUND_MAX_IOU`` (0.3)
    and covers at most ``BACKGROUND_MAX_COVER`` (half) of any one, then widened by
    ``window_around`` like a digit. Such a window may show part of a digit at its
    edge, as the detector's background windows do.

``write_mnist_windows`` writes them as JPEG files (quality 95, as mnist-detection's
images) in the layout of ``keras.utils.image_dataset_from_directory``;
``keras_spp.data.sources`` reads them as the source ``"mnist-windows"``.

Example:

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> top, left, bottom, right = window_around([40, 50, 80, 70], (200, 300), rng)
>>> bool(top <= 40 and left <= 50 and bottom >= 80 and right >= 70)
True
"""

import pathlib

import numpy as np
from PIL import Image
from tqdm import tqdm

from keras_spp.data import mnist, mnist_detection, mnist_scenes
from keras_spp.data.build_once import build_once
from keras_spp.validation import positive_int

VERSION = "v1"
BACKGROUND = "background"
CLASS_NAMES = (*mnist_detection.CLASS_NAMES, BACKGROUND)
# Scenes per split, each giving 1..5 digit windows and `backgrounds` clutter windows:
# about 12900 training windows, a quarter of them background.
DEFAULT_SPLITS = {"train": 3200, "validation": 350, "test": 350}
CONTEXT = (1.6, 2.6)
MAX_ASPECT = 1.4
JITTER = 0.12
BACKGROUND_MAX_IOU = 0.3
BACKGROUND_MAX_COVER = 0.5
# Background boxes are as tall as wide or up to 2.5 times narrower, upright 70% of the time.
_BACKGROUND_ASPECT = (0.4, 1.0)
_BACKGROUND_UPRIGHT = 0.7
_BACKGROUND_TRIES = 100
_JPEG_QUALITY = 95


def window_around(box, image_shape, rng, context=CONTEXT, max_aspect=MAX_ASPECT, jitter=JITTER):
    """A window with context around ``box``, inside an image of ``image_shape``.

    Args:
      box: ``[y1, x1, y2, x2]`` in continuous pixels, ``y2 > y1`` and ``x2 > x1``.
      image_shape: ``(height, width, ...)`` of the image.
      rng: a ``numpy.random.Generator``.
      context: bounds of the window's mean side (the square root of its area) as a
        multiple of the box's longer side (drawn uniformly).
      max_aspect: the window's height : width is log-uniform in ``[1/max_aspect, max_aspect]``.
      jitter: the window's centre moves from the box's by up to this fraction of the
        window's height and width.

    Returns:
      int ``(top, left, bottom, right)``, a window of at least 1 x 1 pixel within the
      image (``image[top:bottom, left:right]``), clipped and shifted to fit.
    """
    y1, x1, y2, x2 = (float(v) for v in box)
    if not (y2 > y1 and x2 > x1):
        raise ValueError(f"`box` must be [y1, x1, y2, x2] with y2 > y1 and x2 > x1; got {list(box)!r}.")
    height, width = int(image_shape[0]), int(image_shape[1])
    side = max(y2 - y1, x2 - x1) * rng.uniform(*context)
    aspect = np.exp(rng.uniform(-np.log(max_aspect), np.log(max_aspect)))
    h = int(np.clip(round(side * np.sqrt(aspect)), 1, height))
    w = int(np.clip(round(side / np.sqrt(aspect)), 1, width))
    cy = (y1 + y2) / 2 + rng.uniform(-jitter, jitter) * h
    cx = (x1 + x2) / 2 + rng.uniform(-jitter, jitter) * w
    top = int(np.clip(round(cy - h / 2), 0, height - h))
    left = int(np.clip(round(cx - w / 2), 0, width - w))
    return top, left, top + h, left + w


def scene_windows(scene, rng, backgrounds=1):
    """The windows of one ``mnist_detection.Scene``: ``[(window, label)]``.

    ``window`` is ``(top, left, bottom, right)`` (see ``window_around``), ``label`` the
    digit, or 10 (``CLASS_NAMES.index("background")``) for clutter; the digits'
    windows come first, in the scene's order. Fewer than ``backgrounds`` clutter
    windows are returned when ``_BACKGROUND_TRIES`` random boxes do not give them
    (a scene crowded with digits).
    """
    backgrounds = _validate_backgrounds(backgrounds)
    shape = scene.image.shape
    windows = [(window_around(box, shape, rng), int(label)) for box, label in zip(scene.boxes, scene.labels)]
    low, high = mnist_detection.digit_size_range(min(shape[:2]))
    label = CLASS_NAMES.index(BACKGROUND)
    made = 0
    for _ in range(_BACKGROUND_TRIES):
        if made == backgrounds:
            break
        box = _random_box(rng, shape, low, high)
        if len(scene.boxes) and _overlaps_a_digit(box, scene.boxes):
            continue
        windows.append((window_around(box, shape, rng), label))
        made += 1
    return windows


def write_mnist_windows(root=None, splits=None, seed=0, backgrounds=1):
    """Renders the scenes of each split and writes their windows; returns the folder.

    The layout is ``keras.utils.image_dataset_from_directory``'s:
    ``<root>/<split>/<class>/<scene:05d>_<k>.jpg`` (``k``: the window's number in its
    scene), every split folder with all eleven class folders. Built once: a
    ``COMPLETE`` file is written last, files go to a temporary sibling folder that
    is renamed into place, and a folder without it is rebuilt
    (``keras_spp.data.build_once``).

    Args:
      root: the output folder; default ``default_root(...)`` under
        ``keras_spp.data.mnist.data_dir()``, a name that differs whenever a setting does.
      splits: ``{split: scene count}`` for splits among ``"train"``, ``"validation"``
        and ``"test"``; a missing split or a count of 0 writes no folder for it.
        Default ``DEFAULT_SPLITS``: 3200, 350, 350.
      seed: scene ``i`` of a split is rendered from ``np.random.default_rng([seed,
        split number, i])`` (train 0, validation 1, test 2), as mnist-detection's.
      backgrounds: clutter windows per scene.

    Returns:
      ``root`` as a ``pathlib.Path``.
    """
    counts = _validate_splits(DEFAULT_SPLITS if splits is None else splits)
    seed = mnist_scenes._validate_seed(seed)
    backgrounds = _validate_backgrounds(backgrounds)
    if root is None:
        root = default_root(seed, counts, backgrounds)
    root = pathlib.Path(root).expanduser()

    def build(staging):
        # Read MNIST first, so that its own messages do not cut into the bar.
        data = {split: mnist.load_mnist(split) for split in counts}
        with tqdm(total=sum(counts.values()), desc=f"mnist-windows {root.name}", unit="scene") as progress:
            for number, split in enumerate(mnist.SPLITS):
                if counts.get(split):
                    _write_split(staging / split, data[split], counts[split], seed, number, backgrounds, progress)

    return build_once(root, build, f"{VERSION} seed={seed} splits={counts} backgrounds={backgrounds}")


def default_root(seed=0, splits=None, backgrounds=1, base=None):
    """``write_mnist_windows``'s default folder for these settings, under ``base``.

    ``base`` defaults to ``keras_spp.data.mnist.data_dir()``.
    """
    counts = _validate_splits(DEFAULT_SPLITS if splits is None else splits)
    seed = mnist_scenes._validate_seed(seed)
    backgrounds = _validate_backgrounds(backgrounds)
    sizes = "-".join(str(counts.get(split, 0)) for split in mnist.SPLITS)
    base = mnist.data_dir() if base is None else pathlib.Path(base).expanduser()
    return base / "mnist_windows" / f"{VERSION}-s{seed}-b{backgrounds}-n{sizes}"


def _write_split(folder, data, count, seed, number, backgrounds, progress):
    digits, labels = data
    for name in CLASS_NAMES:
        (folder / name).mkdir(parents=True)
    for index in range(count):
        scene, rng = mnist_detection.draw_scene(digits, labels, seed, number, index)
        for k, ((top, left, bottom, right), label) in enumerate(scene_windows(scene, rng, backgrounds)):
            Image.fromarray(scene.image[top:bottom, left:right]).save(
                folder / CLASS_NAMES[label] / f"{index:05d}_{k}.jpg", quality=_JPEG_QUALITY
            )
        progress.update()


def _random_box(rng, shape, low, high):
    height, width = shape[:2]
    long_side = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    short_side = long_side * rng.uniform(*_BACKGROUND_ASPECT)
    h, w = (long_side, short_side) if rng.random() < _BACKGROUND_UPRIGHT else (short_side, long_side)
    h, w = min(h, height), min(w, width)
    y1 = float(np.clip(rng.uniform(0, height) - h / 2, 0, height - h))
    x1 = float(np.clip(rng.uniform(0, width) - w / 2, 0, width - w))
    return np.array([y1, x1, y1 + h, x1 + w], np.float32)


def _overlaps_a_digit(box, boxes):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    inter = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None) * np.clip(
        np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None
    )
    digit_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = inter / ((box[2] - box[0]) * (box[3] - box[1]) + digit_areas - inter)
    return iou.max() >= BACKGROUND_MAX_IOU or (inter / digit_areas).max() > BACKGROUND_MAX_COVER


def _validate_splits(splits):
    try:
        items = dict(splits)
    except (TypeError, ValueError):
        items = None
    if items is None or not set(items) <= set(mnist.SPLITS):
        raise ValueError(
            "`splits` must map split names among 'train', 'validation', 'test' to scene "
            f"counts, e.g. {DEFAULT_SPLITS}; got {splits!r}."
        )
    for split, count in items.items():
        positive_int(f"splits[{split!r}]", count, allow_zero=True, hint="scenes")
    if not any(items.values()):
        raise ValueError(f"`splits` must ask for at least one scene; got {splits!r}.")
    return {split: int(count) for split, count in items.items()}


def _validate_backgrounds(backgrounds):
    return positive_int("backgrounds", backgrounds, allow_zero=True, hint="clutter windows per scene")
