"""MNIST scenes: real MNIST digits rendered into RGB images of varied size and shape.

The offline default classification dataset. Each image is one MNIST digit, drawn at
a random scale and position over a textured colour background, on a canvas of
random size and aspect ratio: classification at arbitrary sizes (what an SPP
network is for) on real handwriting, small enough to train on a 2-core CPU in
minutes.

A scene is:
  * a canvas of ``H x W``: H uniform in ``[min_side, max_side]``, W uniform in the
    part of that range within ``MAX_ASPECT`` (1.6) of H;
  * a background mixing smooth low-frequency colour noise with a gradient between
    two random colours, then a few random lines and blobs in random colours;
  * the digit's 28 x 28 box resized (bilinear) to a square of side 45%..90% of
    ``min(H, W)``, placed fully inside the canvas with its centre in the middle 40%
    of each axis (so that training crops keep it in view), alpha-blended with the
    digit's intensity as alpha, in a random colour whose luminance is 90..127 away
    from the mean luminance of the background under the digit, so that it always
    stands out.

``write_mnist_scenes`` writes them as PNG files in the layout of
``keras.utils.image_dataset_from_directory``; ``keras_spp.data.sources`` reads them
as the source ``"mnist-scenes"``.
"""

import pathlib

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from keras_spp.data import mnist
from keras_spp.data.build_once import (
    MARKER,  # noqa: F401  (re-exported: callers check it)
    build_once,
)
from keras_spp.validation import positive_int

VERSION = "v2"
# Longest over shortest canvas side, and the share of each axis where digit centres lie.
MAX_ASPECT = 1.6
CENTRE_SPREAD = 0.4
DEFAULT_SPLITS = {"train": 6000, "validation": 1000, "test": 1000}
MNIST_SIZES = {"train": 50000, "validation": 10000, "test": 10000}
CLASS_NAMES = tuple(str(d) for d in range(10))

# Rec. 601 luma weights: "contrast" means distance in perceived brightness.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Speed over size: level 1 writes several times faster than the default 6, and the
# smooth backgrounds still compress to about 20 kB an image.
_PNG_COMPRESS_LEVEL = 1


def render_scene(digit, rng, min_side=64, max_side=256):
    """Renders one MNIST digit into an RGB scene (see the module docstring).

    Args:
      digit: uint8 ``[28, 28]`` (any 2-D uint8 array works), 0 background, 255 ink.
      rng: a ``numpy.random.Generator``; the only source of randomness, so equal
        generator states give identical pixels.
      min_side, max_side: bounds of the canvas's height and width: the height is
        uniform in ``[min_side, max_side]``, the width uniform in the part of that
        range within ``MAX_ASPECT`` of the height; ``min_side >= 8``.

    Returns:
      uint8 ``[H, W, 3]``.
    """
    min_side, max_side = _validate_sides(min_side, max_side)
    digit = np.asarray(digit)
    if digit.ndim != 2 or digit.dtype != np.uint8 or 0 in digit.shape:
        raise ValueError(
            "`digit` must be a non-empty 2-D uint8 array (an MNIST image, [28, 28]); "
            f"got dtype {digit.dtype} and shape {digit.shape}."
        )
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"`rng` must be a numpy.random.Generator (np.random.default_rng(seed)); got {rng!r}.")

    height = int(rng.integers(min_side, max_side + 1))
    low = max(min_side, int(np.ceil(height / MAX_ASPECT)))
    high = min(max_side, int(height * MAX_ASPECT))
    width = int(rng.integers(low, max(low, high) + 1))
    canvas = _background(rng, height, width)

    side = max(1, int(round(rng.uniform(0.45, 0.9) * min(height, width))))
    # The digit's centre stays in the middle CENTRE_SPREAD of each axis, so that the
    # paper's random crops (7/8 of the min side) still show most of it.
    top = _place(rng, height, side)
    left = _place(rng, width, side)
    glyph = Image.fromarray(digit).resize((side, side), Image.BILINEAR)
    alpha = np.asarray(glyph, np.float32)[..., None] / 255.0
    box = canvas[top : top + side, left : left + side]
    under = box.astype(np.float32)
    colour = _contrasting_colour(rng, under, alpha)
    box[...] = np.clip(np.rint(under * (1.0 - alpha) + colour * alpha), 0, 255)
    return canvas


def _place(rng, length, side):
    centre = rng.uniform(0.5 - CENTRE_SPREAD / 2, 0.5 + CENTRE_SPREAD / 2) * length
    return int(np.clip(round(centre - side / 2), 0, length - side))


def write_mnist_scenes(root=None, splits=None, seed=0, min_side=64, max_side=256):
    """Renders the first N digits of MNIST splits to PNG files; returns the folder.

    The layout is ``keras.utils.image_dataset_from_directory``'s, one folder per
    split: ``<root>/<split>/<digit>/<index:05d>.png``, ``index`` the digit's index in
    its MNIST split; every split folder has all ten digit folders. A ``COMPLETE``
    file is written last: when it exists nothing is done, and a folder without it
    (an interrupted run) is rebuilt. Files are rendered into a temporary sibling
    folder that is renamed into place, so concurrent callers cannot see or break a
    half-written folder.

    Args:
      root: the output folder; default
        ``data_dir()/mnist_scenes/v2-s{seed}-{min_side}-{max_side}-n{train}-{validation}-{test}``,
        a name that differs whenever any setting does.
      splits: ``{split: count}`` for splits among ``"train"`` (at most 50000),
        ``"validation"`` and ``"test"`` (at most 10000 each); a missing split or a
        count of 0 writes no folder for it. Default ``DEFAULT_SPLITS``: 6000, 1000
        and 1000.
      seed: image ``i`` of a split is rendered from ``np.random.default_rng([seed,
        split number, i])``, so it does not depend on the other counts.
      min_side, max_side: canvas side bounds, as in ``render_scene``.

    Returns:
      ``root`` as a ``pathlib.Path``.
    """
    counts = _validate_splits(DEFAULT_SPLITS if splits is None else splits)
    min_side, max_side = _validate_sides(min_side, max_side)
    seed = _validate_seed(seed)
    if root is None:
        root = default_root(seed, min_side, max_side, counts)
    root = pathlib.Path(root).expanduser()

    def build(staging):
        # Fetch and read MNIST first, so that its own messages do not cut into the bar.
        data = {split: mnist.load_mnist(split) for split in counts}
        with tqdm(total=sum(counts.values()), desc=f"mnist-scenes {root.name}", unit="img") as progress:
            for split_number, split in enumerate(mnist.SPLITS):
                if split in counts:
                    digits, labels = data[split]
                    count = counts[split]
                    _write_split(
                        staging / split,
                        digits[:count],
                        labels[:count],
                        seed,
                        split_number,
                        min_side,
                        max_side,
                        progress,
                    )

    return build_once(root, build, f"{VERSION} seed={seed} min_side={min_side} max_side={max_side} splits={counts}")


def default_root(seed=0, min_side=64, max_side=256, splits=None, base=None):
    """``write_mnist_scenes``'s default folder for these settings, under ``base``.

    ``base`` defaults to ``keras_spp.data.mnist.data_dir()``.
    """
    counts = _validate_splits(DEFAULT_SPLITS if splits is None else splits)
    min_side, max_side = _validate_sides(min_side, max_side)
    seed = _validate_seed(seed)
    sizes = "-".join(str(counts.get(split, 0)) for split in mnist.SPLITS)
    base = mnist.data_dir() if base is None else pathlib.Path(base).expanduser()
    return base / "mnist_scenes" / f"{VERSION}-s{seed}-{min_side}-{max_side}-n{sizes}"


def _write_split(folder, digits, labels, seed, split_number, min_side, max_side, progress):
    for name in CLASS_NAMES:
        (folder / name).mkdir(parents=True)
    for index, (digit, label) in enumerate(zip(digits, labels)):
        rng = np.random.default_rng([seed, split_number, index])
        image = render_scene(digit, rng, min_side, max_side)
        Image.fromarray(image).save(folder / str(label) / f"{index:05d}.png", compress_level=_PNG_COMPRESS_LEVEL)
        progress.update()


def _background(rng, height, width):
    # Low-frequency colour noise mixed with a linear gradient, both built on a coarse
    # grid and upsampled smoothly at once: PIL's bicubic resize is far faster than
    # any full-size arithmetic in numpy, and smooth images make small, quick PNGs.
    rows, cols = (int(n) for n in rng.integers(2, 7, size=2))
    noise = rng.uniform(0.0, 255.0, size=(rows, cols, 3))
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = np.linspace(0.0, 1.0, rows)[:, None] * np.sin(angle) + np.linspace(0.0, 1.0, cols)[None, :] * np.cos(angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    start, end = rng.uniform(0.0, 255.0, size=(2, 3))
    gradient = start + ramp[..., None] * (end - start)
    mix = rng.uniform(0.3, 0.8)
    grid = np.rint(mix * noise + (1.0 - mix) * gradient).astype(np.uint8)
    canvas = Image.fromarray(grid).resize((width, height), Image.BICUBIC)

    draw = ImageDraw.Draw(canvas)
    short = min(height, width)
    for _ in range(int(rng.integers(1, 5))):
        (x0, x1), (y0, y1) = rng.integers(0, width, size=2), rng.integers(0, height, size=2)
        thickness = int(rng.integers(1, max(2, short // 24) + 1))
        draw.line([(int(x0), int(y0)), (int(x1), int(y1))], fill=_random_rgb(rng), width=thickness)
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.integers(0, width), rng.integers(0, height)
        rx, ry = rng.integers(2, max(3, short // 5) + 1, size=2)
        draw.ellipse([int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry)], fill=_random_rgb(rng))
    return np.array(canvas)


def _contrasting_colour(rng, under, alpha):
    weight = alpha[..., 0]
    luma = under @ _LUMA
    # The background luminance where the ink will be (the whole box for a blank).
    total = float(weight.sum())
    mean = float((luma * weight).sum() / total) if total > 0 else float(luma.mean())
    # Toward the far end of [0, 255] there is always more than 127 of room.
    distance = rng.uniform(90.0, 127.0)
    target = mean + distance if mean < 127.5 else mean - distance
    colour = rng.uniform(0.0, 255.0, size=3).astype(np.float32)
    luma_colour = float(colour @ _LUMA)
    # Mixing toward white or scaling toward black moves luminance linearly, so the
    # hue stays random and the luminance lands on the target without clipping.
    if target > luma_colour:
        colour = colour + (255.0 - colour) * np.float32((target - luma_colour) / (255.0 - luma_colour))
    else:
        colour = colour * np.float32(target / max(luma_colour, 1e-6))
    return colour


def _random_rgb(rng):
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def _validate_sides(min_side, max_side):
    for name, value in (("min_side", min_side), ("max_side", max_side)):
        positive_int(name, value, minimum=8, hint="pixels")
    if min_side > max_side:
        raise ValueError(f"`min_side` ({min_side}) must not exceed `max_side` ({max_side}).")
    return int(min_side), int(max_side)


def _validate_seed(seed):
    return positive_int("seed", seed, allow_zero=True)


def _validate_splits(splits):
    try:
        items = dict(splits)
    except (TypeError, ValueError):
        items = None
    if items is None or not set(items) <= set(MNIST_SIZES):
        raise ValueError(
            "`splits` must map split names among 'train', 'validation', 'test' to image "
            f"counts, e.g. {DEFAULT_SPLITS}; got {splits!r}."
        )
    for split, count in items.items():
        limit = MNIST_SIZES[split]
        positive_int(
            f"splits[{split!r}]",
            count,
            allow_zero=True,
            maximum=limit,
            hint=f"MNIST's {split} split has {limit} digits",
        )
    if not any(items.values()):
        raise ValueError(f"`splits` must ask for at least one image; got {splits!r}.")
    return {split: int(items[split]) for split in mnist.SPLITS if items.get(split)}
