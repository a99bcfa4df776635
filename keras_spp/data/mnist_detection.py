"""MNIST detection: real MNIST digits pasted into cluttered scenes, in the VOC layout.

The offline default detection dataset: several handwritten digits per image, at
random scales and positions, on canvases of random size, written as a PASCAL VOC
folder (``keras_spp.data.voc``) so that the reader of real VOC reads it too. Class
names are ``"0"`` .. ``"9"``.

A scene (``render_detection_scene``):
  * a canvas of ``H x W``, each side uniform in ``[min_side, max_side]`` (default
    200..600), drawn independently;
  * clutter behind the digits: ``mnist_scenes``' smooth colour background with its
    random lines and blobs, multi-scale textured noise, random curved strokes, and
    fragments of other MNIST digits (a window of at most 35% of a digit's ink box,
    at 15..30% opacity, so each at most ~38 luminance levels off what is under it:
    pieces, never whole digits, and fainter than any digit);
  * 1..5 digits. A digit is cropped to its ink (the pixels of the 28 x 28 frame
    that are not 0), resized so that the longer side of that crop is ``s``
    (log-uniform in ``[max(20, m / 15), min(120, m / 2.5)]`` with ``m =
    min(H, W)``, so that a scene resized to 688 px keeps every digit between
    about 46 and 275 px: several cells at conv stride 16), and alpha-blended at a
    random place fully inside the canvas, in a random colour 90..127 luminance
    levels away from the background under it (``mnist_scenes``' rule), at a
    random opacity of 75..100%. A digit whose box would overlap an earlier one by
    IoU > 0.1 is moved (up to 50 tries) or else left out, so there may be fewer
    than drawn, but never none (the first always fits).
  * The annotation of a digit is the tight box of its pasted ink: resized alpha
    below 0.1 is cut to 0, and the box is the extent of the alpha that is left,
    ``[y1, x1, y2, x2]`` in continuous pixels (``keras_spp.data.detection_examples``);
    no pixel outside it holds any of the digit's ink.

``write_mnist_detection`` writes the splits ``"trainval"`` (from MNIST's train
digits), ``"test"`` (from MNIST's test digits) and, when asked for, ``"val"``
(from MNIST's validation digits, seed number 3: scenes that are neither training
nor test images, nor any ``mnist_windows`` scene) as JPEG files (quality 95: the
textured clutter would make PNG files several times bigger);
``ensure_mnist_detection`` builds that once in the keras_spp data folder.

Example:

>>> import numpy as np
>>> digits = np.zeros([3, 28, 28], np.uint8); digits[:, 4:24, 10:18] = 255
>>> scene = render_detection_scene(digits, [7, 1, 2], np.random.default_rng(0))
>>> scene.image.dtype, scene.boxes.shape[1], len(scene.boxes) == len(scene.labels) == len(scene.ink)
(dtype('uint8'), 4, True)
"""

import dataclasses
import io
import pathlib

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from keras_spp.data import mnist, mnist_scenes, voc
from keras_spp.validation import positive_int

VERSION = "v1"
CLASS_NAMES = tuple(str(d) for d in range(10))
# Split name -> (MNIST split the digits come from, its number in seeds).
# 2 is mnist_windows' test split; the validation scenes take 3.
SPLITS = {"trainval": ("train", 0), "test": ("test", 1), "val": ("validation", 3)}
MIN_SIDE, MAX_SIDE = 200, 600
# Digit sizes (the longer side of the ink box) in pixels, and relative to the
# canvas's shorter side: the relative bounds win when they conflict.
DIGIT_SIZES = (20, 120)
RELATIVE_SIZES = (1 / 15, 1 / 2.5)
MAX_DIGITS = 5
MAX_IOU = 0.1
# Resized alpha below this is cut to 0, so that the faint bilinear fringe is not
# ink outside the annotated box.
INK_THRESHOLD = 0.1
# Opacity of digits and of the low-contrast digit fragments in the clutter.
DIGIT_OPACITY = (0.75, 1.0)
FRAGMENT_OPACITY = (0.15, 0.3)
_PLACEMENT_TRIES = 50
_JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class Scene:
    """One rendered scene.

    Attributes:
      image: uint8 ``[H, W, 3]``.
      boxes: float32 ``[N, 4]``, ``[y1, x1, y2, x2]``, the tight box of each digit's ink.
      labels: int32 ``[N]``, the digits.
      ink: bool ``[N, H, W]``, where each digit's ink was blended in (its alpha > 0).
      background: uint8 ``[H, W, 3]``, the clutter alone: ``image`` differs from it
        only where some ``ink`` is set.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    ink: np.ndarray
    background: np.ndarray


def render_detection_scene(digits, labels, rng, min_side=MIN_SIDE, max_side=MAX_SIDE, fragments=None):
    """Renders one cluttered scene with the given digits (see the module docstring).

    Args:
      digits: uint8 ``[K, 28, 28]``, the digits to paste, ``K >= 1`` (0 background,
        255 ink); fewer may be placed when they do not fit without overlap.
      labels: ``[K]`` their classes.
      rng: a ``numpy.random.Generator``, the only source of randomness.
      min_side, max_side: canvas side bounds (integers, ``16 <= min_side <= max_side``).
      fragments: uint8 ``[F, 28, 28]`` digits to cut clutter fragments from; default
        ``digits``.

    Returns:
      a ``Scene``.
    """
    digits = np.asarray(digits)
    labels = np.asarray(labels).reshape(-1)
    if digits.ndim != 3 or digits.dtype != np.uint8 or len(digits) == 0 or len(digits) != len(labels):
        raise ValueError(
            "`digits` must be uint8 [K, 28, 28] with K >= 1 and `labels` [K]; got "
            f"{digits.dtype} {digits.shape} and {labels.shape}."
        )
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"`rng` must be a numpy.random.Generator (np.random.default_rng(seed)); got {rng!r}.")
    min_side, max_side = _validate_sides(min_side, max_side)
    fragments = digits if fragments is None else np.asarray(fragments)

    height = int(rng.integers(min_side, max_side + 1))
    width = int(rng.integers(min_side, max_side + 1))
    background = _clutter(rng, height, width, fragments)
    canvas = background.astype(np.float32)

    low, high = digit_size_range(min(height, width))
    placed, kept_labels, masks = [], [], []
    for digit, label in zip(digits, labels):
        size = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        # Whole pixels within the bounds, so that the box obeys them too.
        alpha = _glyph(digit, int(np.clip(round(size), np.ceil(low), np.floor(high))))
        if alpha is None:
            continue  # a blank frame has no ink to annotate
        h, w = alpha.shape
        for _ in range(_PLACEMENT_TRIES):
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            box = np.array([top, left, top + h, left + w], np.float32)
            if not placed or _iou(box, np.stack(placed)).max() <= MAX_IOU:
                break
        else:
            continue
        region = canvas[top : top + h, left : left + w]
        alpha = alpha[..., None] * np.float32(rng.uniform(DIGIT_OPACITY[0], DIGIT_OPACITY[1]))
        colour = mnist_scenes._contrasting_colour(rng, region, alpha)
        region[...] = region * (1.0 - alpha) + colour * alpha
        mask = np.zeros([height, width], bool)
        mask[top : top + h, left : left + w] = alpha[..., 0] > 0
        placed.append(box)
        kept_labels.append(int(label))
        masks.append(mask)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return Scene(
        image=image,
        boxes=np.asarray(placed, np.float32).reshape(-1, 4),
        labels=np.asarray(kept_labels, np.int32),
        ink=np.asarray(masks, bool).reshape(-1, height, width),
        background=background,
    )


def digit_size_range(short_side):
    """``(low, high)`` bounds of a digit's longer ink side on a canvas whose shorter side is ``short_side``."""
    low = max(DIGIT_SIZES[0], short_side * RELATIVE_SIZES[0])
    high = min(DIGIT_SIZES[1], short_side * RELATIVE_SIZES[1])
    if low > high:
        low, high = short_side * RELATIVE_SIZES[0], short_side * RELATIVE_SIZES[1]
    return low, high


def write_mnist_detection(root, num_trainval=400, num_test=100, seed=0, num_val=0):
    """Renders the splits ``"trainval"``, ``"test"`` and ``"val"`` into a VOC folder; returns it.

    Image ``i`` of a split is rendered from ``np.random.default_rng([seed, split
    number, i])`` (trainval 0, test 1), with 1..5 digits drawn at random from
    MNIST's train (trainval), test (test) or validation (val) digits, and ids
    ``trainval_000000``, ``test_000000``, ``val_000000``, ...: image ``i`` does not depend on the counts, and equal
    arguments give byte-identical files. Files are written straight into ``root``
    (nothing there is removed first); ``ensure_mnist_detection`` builds atomically.

    Args:
      root: the output folder, created if missing.
      num_trainval, num_test, num_val: image counts (0 writes an empty split;
        ``num_val = 0`` writes no ``val`` split at all).
      seed: a non-negative integer.
    """
    counts = {
        "trainval": _validate_count("num_trainval", num_trainval),
        "test": _validate_count("num_test", num_test),
        "val": _validate_count("num_val", num_val),
    }
    seed = mnist_scenes._validate_seed(seed)
    root = pathlib.Path(root).expanduser()
    # Read MNIST first, so that its own messages do not cut into the bar.
    data = {split: mnist.load_mnist(source) for split, (source, _) in SPLITS.items() if counts[split]}
    with tqdm(total=sum(counts.values()), desc=f"mnist-detection {root.name}", unit="img") as progress:
        for split, (_, number) in SPLITS.items():
            if split == "val" and not counts[split]:
                continue
            items = _split_items(data.get(split), counts[split], seed, split, number, progress)
            voc.write_voc(root, split, items, CLASS_NAMES)
    return root


def ensure_mnist_detection(num_trainval=400, num_test=100, seed=0, data_dir=None, num_val=0):
    """The folder of MNIST detection with these settings, built on first use.

    The folder is ``<data_dir>/mnist_detection_v1_{num_trainval}_{num_test}_{seed}``
    (``..._{seed}_val{num_val}`` with a validation split: its trainval and test
    images are the same files),
    ``data_dir`` defaulting to ``keras_spp.data.mnist.data_dir()``. It is built once
    (``write_mnist_detection`` into a temporary folder renamed into place, see
    ``voc.build_voc_once``), so an interrupted build is never used.
    """
    counts = (
        _validate_count("num_trainval", num_trainval),
        _validate_count("num_test", num_test),
        _validate_count("num_val", num_val),
    )
    seed = mnist_scenes._validate_seed(seed)
    base = mnist.data_dir() if data_dir is None else pathlib.Path(data_dir).expanduser()
    suffix = f"_val{counts[2]}" if counts[2] else ""
    root = base / f"mnist_detection_{VERSION}_{counts[0]}_{counts[1]}_{seed}{suffix}"
    return voc.build_voc_once(
        root,
        lambda folder: write_mnist_detection(folder, counts[0], counts[1], seed, counts[2]),
        f"mnist-detection {VERSION} num_trainval={counts[0]} num_test={counts[1]} num_val={counts[2]} seed={seed}",
    )


def draw_scene(digits, labels, seed, split_number, index):
    """Scene ``index`` of a split: ``(Scene, rng)``, the rng left where rendering left it.

    The split's draws, in their order: how many digits and which of ``digits`` /
    ``labels`` (an MNIST split), which digits to cut clutter fragments from, then the
    rendering, all from ``np.random.default_rng([seed, split_number, index])``.
    Other datasets cut from these scenes (``mnist_windows``) call this, so that
    equal arguments give them the very scenes written here.
    """
    rng = np.random.default_rng([seed, split_number, index])
    chosen = rng.integers(0, len(digits), size=int(rng.integers(1, MAX_DIGITS + 1)))
    pieces = rng.integers(0, len(digits), size=8)
    return render_detection_scene(digits[chosen], labels[chosen], rng, fragments=digits[pieces]), rng


def _split_items(data, count, seed, split, number, progress):
    for index in range(count):
        scene, _ = draw_scene(*data, seed, number, index)
        encoded = io.BytesIO()
        Image.fromarray(scene.image).save(encoded, format="JPEG", quality=_JPEG_QUALITY)
        yield f"{split}_{index:06d}", (encoded.getvalue(), ".jpg"), scene.boxes, scene.labels, None
        progress.update()


def _glyph(digit, size):
    """The digit's ink crop resized so its longer side is ``size``: float32 alpha in [0, 1]."""
    rows, cols = np.nonzero(digit)
    if rows.size == 0:
        return None
    crop = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = size / max(crop.shape)
    shape = (max(1, int(round(crop.shape[0] * scale))), max(1, int(round(crop.shape[1] * scale))))
    alpha = np.asarray(Image.fromarray(crop).resize(shape[::-1], Image.BILINEAR), np.float32) / 255.0
    alpha[alpha < INK_THRESHOLD] = 0.0
    rows, cols = np.nonzero(alpha)
    if rows.size == 0:
        return None
    # Trimmed to the ink that survived the cut, so the pasted extent is the box.
    return alpha[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _clutter(rng, height, width, fragments):
    canvas = mnist_scenes._background(rng, height, width).astype(np.float32)
    canvas += _texture(rng, height, width)
    image = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
    _strokes(rng, image)
    canvas = np.asarray(image, np.float32).copy()
    _fragments(rng, canvas, fragments)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def _texture(rng, height, width):
    # Noise at three scales (blotches, grain, fine speckle), each drawn on a coarse
    # grid and upsampled by PIL: fast, and textured rather than flat.
    total = np.zeros([height, width, 3], np.float32)
    for cell, amplitude in ((24, 30.0), (6, 14.0), (2, 8.0)):
        rows, cols = max(2, height // cell), max(2, width // cell)
        grid = rng.normal(0.0, 1.0, size=(rows, cols, 3)).astype(np.float32)
        grain = np.clip(grid * 42.0 + 128.0, 0, 255).astype(np.uint8)
        up = np.asarray(Image.fromarray(grain).resize((width, height), Image.BICUBIC), np.float32)
        total += (up - 128.0) / 42.0 * amplitude * np.float32(rng.uniform(0.3, 1.0))
    return total


def _strokes(rng, image):
    # Short curved pen strokes of a digit's stroke width: shapes the detector must
    # learn to tell from digits, at no more than middling contrast.
    draw = ImageDraw.Draw(image, "RGBA")
    height, width = image.height, image.width
    short = min(height, width)
    for _ in range(int(rng.integers(2, 8))):
        length = rng.uniform(0.05, 0.25) * short
        steps = int(rng.integers(3, 8))
        heading = rng.uniform(0, 2 * np.pi)
        turn = rng.normal(0, 0.5)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        points = [(x, y)]
        for _ in range(steps):
            heading += turn + rng.normal(0, 0.2)
            x += np.cos(heading) * length / steps
            y += np.sin(heading) * length / steps
            points.append((x, y))
        colour = (*(int(c) for c in rng.integers(0, 256, size=3)), int(rng.integers(60, 140)))
        draw.line(
            [(float(px), float(py)) for px, py in points],
            fill=colour,
            width=int(rng.integers(2, max(3, short // 40) + 1)),
            joint="curve",
        )


def _fragments(rng, canvas, fragments):
    # Pieces of real digits (a window of at most ~35% of the ink box) at low contrast.
    height, width = canvas.shape[:2]
    low, high = digit_size_range(min(height, width))
    for _ in range(int(rng.integers(1, 5))):
        digit = fragments[int(rng.integers(0, len(fragments)))]
        rows, cols = np.nonzero(digit)
        if rows.size == 0:
            continue
        crop = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        h, w = crop.shape
        fh, fw = max(1, int(round(h * rng.uniform(0.3, 0.5)))), max(1, int(round(w * rng.uniform(0.4, 0.7))))
        r0, c0 = int(rng.integers(0, h - fh + 1)), int(rng.integers(0, w - fw + 1))
        piece = crop[r0 : r0 + fh, c0 : c0 + fw]
        scale = float(np.exp(rng.uniform(np.log(low), np.log(high)))) / max(h, w)
        shape = (max(1, int(round(fh * scale))), max(1, int(round(fw * scale))))
        if shape[0] > height or shape[1] > width:
            continue
        alpha = np.asarray(Image.fromarray(piece).resize(shape[::-1], Image.BILINEAR), np.float32)[..., None] / 255.0
        top, left = int(rng.integers(0, height - shape[0] + 1)), int(rng.integers(0, width - shape[1] + 1))
        region = canvas[top : top + shape[0], left : left + shape[1]]
        # A digit's colour rule at a fraction of its opacity: at most ~38 luminance
        # levels from the background, where pasted digits are at least ~67 away.
        colour = mnist_scenes._contrasting_colour(rng, region, alpha)
        alpha = alpha * np.float32(rng.uniform(FRAGMENT_OPACITY[0], FRAGMENT_OPACITY[1]))
        region[...] = region * (1.0 - alpha) + colour * alpha


def _iou(box, boxes):
    top = np.maximum(box[0], boxes[:, 0])
    left = np.maximum(box[1], boxes[:, 1])
    bottom = np.minimum(box[2], boxes[:, 2])
    right = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    return inter / (_area(box) + _area(boxes) - inter)


def _area(b):
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def _validate_sides(min_side, max_side):
    for name, value in (("min_side", min_side), ("max_side", max_side)):
        positive_int(name, value, minimum=16, hint="pixels")
    if min_side > max_side:
        raise ValueError(f"`min_side` ({min_side}) must not exceed `max_side` ({max_side}).")
    return int(min_side), int(max_side)


def _validate_count(name, value):
    return positive_int(name, value, allow_zero=True, hint="images")
