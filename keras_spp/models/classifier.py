"""Classification networks: an SPP head (or the no-SPP pool5 baseline) on a backbone."""

import keras

from keras_spp.layers import SpatialPyramidPooling
from keras_spp.models.backbones import backbone as table1_backbone
from keras_spp.ops.bins import paper_rule_is_valid


def spp_classifier(
    backbone,
    num_classes,
    levels=(6, 3, 2, 1),
    fc_units=4096,
    dropout=0.5,
    pooling="max",
    name=None,
):
    """The paper's classifier on any convolutional Keras backbone.

    ``backbone``: a Keras model mapping images ``[B, H, W, 3]`` to a feature map
    (``keras.applications.VGG16(include_top=False, ...)``, ``backbone("zf5")``, ...),
    built with ``None`` spatial dims if images of any size are to pass. Then the SPP
    layer, fc6 and fc7 (``fc_units``, ReLU, dropout) and a softmax over
    ``num_classes``, kept in float32 under mixed precision.

    Example:

    >>> import numpy as np
    >>> from keras_spp.models import backbone
    >>> net = spp_classifier(backbone("zf5", width=0.125), 10, fc_units=64)
    >>> [net(np.zeros((1, s, s, 3), "float32")).shape[1] for s in (180, 224, 301)]
    [10, 10, 10]
    """
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    x = backbone(inputs)
    x = SpatialPyramidPooling(levels, pooling, name="spp")(x)
    x = _fc_head(x, num_classes, fc_units, dropout)
    return keras.Model(inputs, x, name=name or f"{backbone.name}_spp")


def pool5_classifier(name, num_classes, width=1.0, fc_units=4096, dropout=0.5, image_size=224):
    """The paper's no-SPP baseline: the last map pooled to 6 x 6, fixed input size.

    The pool's window is ``ceil(a/6)`` and its stride ``floor(a/6)`` for a conv5 of
    ``a x a`` (3 and 2 for a = 13 at 224 px, as in ZF-5; 1 and 1 at a = 6); an
    ``image_size`` for which that does not give 6 x 6 is a ValueError.
    """
    features = table1_backbone(name, width, input_shape=(image_size, image_size, 3))
    a = features.output_shape[1]
    if not paper_rule_is_valid(a, 6):
        raise ValueError(
            f"`image_size` {image_size} gives a {a}x{a} conv5 map for {name}, which no "
            "single pool (window ceil(a/6), stride floor(a/6)) brings to 6x6; use 224 "
            "(13x13), or an SPP head, which takes any size."
        )
    window, stride = -(-a // 6), a // 6
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.MaxPooling2D(window, stride, name="pool5")(features(inputs))
    x = keras.layers.Flatten(name="flatten")(x)
    x = _fc_head(x, num_classes, fc_units, dropout)
    return keras.Model(inputs, x, name=f"{name}_pool5")


def _fc_head(x, num_classes, fc_units, dropout):
    x = keras.layers.Dense(fc_units, activation="relu", kernel_initializer="he_normal", name="fc6")(x)
    x = keras.layers.Dropout(dropout, name="drop6")(x)
    x = keras.layers.Dense(fc_units, activation="relu", kernel_initializer="he_normal", name="fc7")(x)
    x = keras.layers.Dropout(dropout, name="drop7")(x)
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="fc8")(x)


HEADS = ("spp", "pool")


def table1_classifier(
    name,
    num_classes=1000,
    head="spp",
    levels=(6, 3, 2, 1),
    width=1.0,
    fc_units=4096,
    dropout=0.5,
    image_size=224,
):
    """A Table 1 network with the SPP head (any input size) or the pool5 baseline."""
    if head not in HEADS:
        raise ValueError(f"`head` must be one of {HEADS}; got {head!r}.")
    if head == "pool":
        return pool5_classifier(name, num_classes, width, fc_units, dropout, image_size)
    features = table1_backbone(name, width)
    return spp_classifier(features, num_classes, levels, fc_units, dropout, name=f"{name}_spp")


def zf5(num_classes=1000, head="spp", **kwargs):
    """ZF-5 (Table 1): conv5 13x13 at 224 px. ``kwargs`` as ``table1_classifier``."""
    return table1_classifier("zf5", num_classes, head, **kwargs)


def convnet5(num_classes=1000, head="spp", **kwargs):
    """Convnet*-5 (Table 1): conv5 13x13 at 224 px."""
    return table1_classifier("convnet5", num_classes, head, **kwargs)


def overfeat5(num_classes=1000, head="spp", **kwargs):
    """Overfeat-5 (Table 1): conv5 18x18 at 224 px."""
    return table1_classifier("overfeat5", num_classes, head, **kwargs)


def overfeat7(num_classes=1000, head="spp", **kwargs):
    """Overfeat-7 (Table 1): conv7 18x18 at 224 px."""
    return table1_classifier("overfeat7", num_classes, head, **kwargs)
