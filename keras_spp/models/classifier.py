"""Classification networks: an SPP head (or the no-SPP pool5 baseline) on a backbone."""

import keras

from keras_spp.layers import SpatialPyramidPooling
from keras_spp.models.backbones import TABLE_1
from keras_spp.models.backbones import backbone as table1_backbone


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
    """The paper's no-SPP baseline: the last map pooled to 6 x 6, fixed input size."""
    window, stride = TABLE_1[name][3]
    features = table1_backbone(name, width, input_shape=(image_size, image_size, 3))
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.MaxPooling2D(window, stride, name="pool5")(features(inputs))
    x = keras.layers.Flatten(name="flatten")(x)
    x = _fc_head(x, num_classes, fc_units, dropout)
    return keras.Model(inputs, x, name=f"{name}_pool5")


def _fc_head(x, num_classes, fc_units, dropout):
    x = keras.layers.Dense(fc_units, activation="relu", name="fc6")(x)
    x = keras.layers.Dropout(dropout, name="drop6")(x)
    x = keras.layers.Dense(fc_units, activation="relu", name="fc7")(x)
    x = keras.layers.Dropout(dropout, name="drop7")(x)
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="fc8")(x)
