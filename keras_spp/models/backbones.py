"""The convolutional backbones of the paper's Table 1 (conv1 .. conv5 / conv7).

Filters x size and stride as in the table; padding chosen so that a 224 x 224 input
gives the table's map sizes: 13 x 13 at conv5 for ZF-5 and Convnet*-5, 18 x 18 for
Overfeat-5/7. ``width`` scales every filter count (at least 1), for small CPU runs.
Inputs are RGB pixels in ``[0, 255]`` (what decoders give, and what a SavedModel
client sends); the first layer maps them to ``[-1, 1]``.
The product of strides (``feature_stride``) maps image pixels onto conv5 cells:
16 for ZF-5 and Convnet*-5, 12 for Overfeat.
"""

import keras

from keras_spp.layers import LocalResponseNormalization, MinimumInputSize

# name: ([layer spec], feature_stride, conv5 size at 224)
# Layer specs: ("conv", filters, kernel, stride, pad) with pad an int or "same";
# ("lrn",); ("pool", window, stride).
TABLE_1 = {
    "zf5": (
        [
            ("conv", 96, 7, 2, "same"),
            ("lrn",),
            ("pool", 3, 2),
            ("pad", 1),
            ("conv", 256, 5, 2, 0),
            ("lrn",),
            ("pool", 3, 2),
            ("conv", 384, 3, 1, "same"),
            ("conv", 384, 3, 1, "same"),
            ("conv", 256, 3, 1, "same"),
        ],
        16,
        13,
    ),
    "convnet5": (
        [
            ("pad", 2),
            ("conv", 96, 11, 4, 0),
            ("lrn",),
            ("conv", 256, 5, 1, "same"),
            ("lrn",),
            ("pool", 3, 2),
            ("conv", 384, 3, 1, "same"),
            ("pool", 3, 2),
            ("conv", 384, 3, 1, "same"),
            ("conv", 256, 3, 1, "same"),
        ],
        16,
        13,
    ),
    "overfeat5": (
        [
            ("conv", 96, 7, 2, 0),
            ("pool", 3, 3),
            ("lrn",),
            ("conv", 256, 5, 1, "same"),
            ("pool", 2, 2),
            ("conv", 512, 3, 1, "same"),
            ("conv", 512, 3, 1, "same"),
            ("conv", 512, 3, 1, "same"),
        ],
        12,
        18,
    ),
    "overfeat7": (
        [
            ("conv", 96, 7, 2, 0),
            ("pool", 3, 3),
            ("lrn",),
            ("conv", 256, 5, 1, "same"),
            ("pool", 2, 2),
            ("conv", 512, 3, 1, "same"),
            ("conv", 512, 3, 1, "same"),
            ("conv", 512, 3, 1, "same"),
            ("conv", 512, 3, 1, "same"),
            ("conv", 512, 3, 1, "same"),
        ],
        12,
        18,
    ),
}


def backbone(name, width=1.0, input_shape=(None, None, 3)):
    """Table 1's conv layers as a functional ``keras.Model`` (ReLU after each conv).

    Example:

    >>> import numpy as np
    >>> zf = backbone("zf5", width=0.25)
    >>> tuple(zf(np.zeros((1, 224, 224, 3), "float32")).shape)
    (1, 13, 13, 64)
    """
    if name not in TABLE_1:
        raise ValueError(f"Unknown backbone {name!r}; known: {', '.join(TABLE_1)}.")
    if not width > 0:
        raise ValueError(f"`width` must be positive; got {width!r}.")
    specs = TABLE_1[name][0]
    inputs = keras.Input(input_shape, name="image")
    # Smaller images would reach a pooling window larger than its map, which
    # TensorFlow's CPU kernels do not always refuse (see MinimumInputSize).
    x = MinimumInputSize(min_input_side(name), name="check_size")(inputs)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_pixels")(x)
    conv = 0
    for spec in specs:
        kind = spec[0]
        if kind == "conv":
            conv += 1
            _, filters, size, stride, pad = spec
            x = keras.layers.Conv2D(
                max(1, round(filters * width)),
                size,
                strides=stride,
                padding="same" if pad == "same" else "valid",
                activation="relu",
                kernel_initializer="he_normal",  # trains without the paper's careful lr warm-up
                name=f"conv{conv}",
            )(x)
        elif kind == "pad":
            x = keras.layers.ZeroPadding2D(spec[1], name=f"pad{conv + 1}")(x)
        elif kind == "lrn":
            x = LocalResponseNormalization(name=f"lrn{conv}")(x)
        else:
            x = keras.layers.MaxPooling2D(spec[1], spec[2], name=f"pool{conv}")(x)
    return keras.Model(inputs, x, name=name)


def min_input_side(name):
    """The fewest pixels per side an image needs for every map of ``name`` to be
    at least one cell and every valid window to fit in its map.

    >>> min_input_side("zf5")
    29
    """
    specs = TABLE_1[name][0]

    def fits(side):
        for spec in specs:
            if spec[0] == "pad":
                side += 2 * spec[1]
            elif spec[0] == "conv" and spec[4] == "same":
                side = -(-side // spec[3])
            elif spec[0] in ("conv", "pool"):
                window, stride = (spec[2], spec[3]) if spec[0] == "conv" else (spec[1], spec[2])
                if side < window:
                    return False
                side = (side - window) // stride + 1
        return side >= 1

    side = 1
    while not fits(side):
        side += 1
    return side


def feature_stride(name):
    """Product of the strides up to the last conv layer (pixels per feature cell)."""
    return TABLE_1[name][1]
