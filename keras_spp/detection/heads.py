"""The SPP-net detector as one Keras model: windows' pyramid features, fc6, fc7 and
three heads (softmax over classes + background, linear SVM scores, box regression).

Inputs: ``image`` float ``[1, H, W, 3]`` (pixels 0..255 for the Table 1 backbones),
``boxes`` float ``[R, 4]`` proposals as ``[y1, x1, y2, x2]`` pixels of that image.
Outputs (a dict):

* ``class_probabilities`` ``[R, K + 1]``: softmax, column 0 background;
* ``svm_scores`` ``[R, K]``: the per-class linear SVMs on fc7;
* ``box_deltas`` ``[R, 4 K]``: R-CNN regression targets ``(dy, dx, dh, dw)`` of each
  class (``keras_spp.detection.boxes.decode_boxes``), from the pooled features.

Only fc6, fc7 and fc8 are trained by ``model.fit`` (``head_model``); SVMs and
regressors are fitted in closed form and written into their Dense layers.
"""

import keras
import numpy as np

from keras_spp.detection.features import MultiScaleRoiFeatures
from keras_spp.detection.rcnn import WarpedWindowFeatures

# SPP-net's features, and R-CNN's for the baseline: the same heads sit on either.
WINDOW_FEATURES = (MultiScaleRoiFeatures, WarpedWindowFeatures)

OUTPUTS = ("class_probabilities", "svm_scores", "box_deltas")


def spp_detector(roi_features, num_classes, fc_units=4096, dropout=0.5, fc_weights=None, name="spp_detector"):
    """Builds the detector around a ``MultiScaleRoiFeatures`` layer.

    ``fc_weights``: ``{"fc6": [kernel, bias], "fc7": [...]}`` from a pretrained
    classifier (the paper starts fine-tuning from them); fc8 is new, ``N(0, 0.01)``.
    """
    if not isinstance(roi_features, WINDOW_FEATURES):
        raise ValueError(
            f"`roi_features` must be a MultiScaleRoiFeatures (SPP-net) or WarpedWindowFeatures "
            f"(R-CNN) layer; got {roi_features!r}."
        )
    if int(num_classes) < 1:
        raise ValueError(f"`num_classes` must be >= 1 (background excluded); got {num_classes}.")
    image = keras.Input((None, None, 3), batch_size=1, name="image")
    boxes = keras.Input((4,), name="boxes")
    pooled = roi_features(image, boxes)
    layers = _head_layers(num_classes, fc_units, dropout)
    outputs = _apply_heads(layers, pooled)
    model = keras.Model({"image": image, "boxes": boxes}, outputs, name=name)
    if fc_weights:
        for layer_name, weights in fc_weights.items():
            model.get_layer(layer_name).set_weights(weights)
    return model


def _head_layers(num_classes, fc_units, dropout):
    dense = keras.layers.Dense
    return {
        "fc6": dense(fc_units, activation="relu", name="fc6"),
        "drop6": keras.layers.Dropout(dropout, name="drop6"),
        "fc7": dense(fc_units, activation="relu", name="fc7"),
        "drop7": keras.layers.Dropout(dropout, name="drop7"),
        "fc8": dense(
            num_classes + 1,
            activation="softmax",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=0),
            dtype="float32",
            name="fc8",
        ),
        "svm": dense(num_classes, kernel_initializer="zeros", dtype="float32", name="svm"),
        "bbox": dense(4 * num_classes, kernel_initializer="zeros", dtype="float32", name="bbox"),
    }


def _apply_heads(layers, pooled):
    fc7 = layers["fc7"](layers["drop6"](layers["fc6"](pooled)))
    return {
        "class_probabilities": layers["fc8"](layers["drop7"](fc7)),
        "svm_scores": layers["svm"](fc7),
        "box_deltas": layers["bbox"](pooled),
    }


def roi_features_of(detector):
    """The detector's window feature layer (SPP-net's or R-CNN's)."""
    for layer in detector.layers:
        if isinstance(layer, WINDOW_FEATURES):
            return layer
    raise ValueError(f"model {detector.name!r} has no window feature layer; build it with spp_detector.")


def head_model(detector):
    """pooled features -> class probabilities, sharing fc6..fc8 with ``detector``:
    ``model.fit`` on cached features trains the detector's own layers."""
    pooled = keras.Input((roi_features_of(detector).output_dim,), name="pooled")
    x = pooled
    for layer_name in ("fc6", "drop6", "fc7", "drop7", "fc8"):
        x = detector.get_layer(layer_name)(x)
    return keras.Model(pooled, x, name="fc_head")


def fc7_model(detector):
    """pooled features -> fc7 activations (inference mode): the SVMs' features."""
    pooled = keras.Input((roi_features_of(detector).output_dim,), name="pooled")
    x = detector.get_layer("fc7")(detector.get_layer("fc6")(pooled))
    return keras.Model(pooled, x, name="fc7_features")


def set_linear(detector, layer_name, kernel, bias):
    """Writes a closed-form linear model (SVMs, box regressors) into a Dense head."""
    layer = detector.get_layer(layer_name)
    expected = [tuple(w.shape) for w in layer.get_weights()]
    kernel = np.asarray(kernel, np.float32)
    bias = np.asarray(bias, np.float32)
    if [kernel.shape, bias.shape] != expected:
        raise ValueError(f"{layer_name}: expected kernel/bias shapes {expected}; got {kernel.shape}, {bias.shape}.")
    layer.set_weights([kernel, bias])


def pooled_head(detector, ranks=None):
    """pooled features -> the three outputs, sharing the detector's layers (inference).

    ``ranks``: ``{"fc6": k6, "fc7": k7}`` replaces those fc layers by Fast R-CNN's
    truncated SVD: ``W ~ U_k S_k V_k^T`` as two Dense layers (``k`` units without
    bias, then the original units with the bias), so an ``m x n`` fc costs
    ``k (m + n)`` multiply-adds per window instead of ``m n``. A rank at or above
    ``min(m, n)`` keeps that layer as it is.
    """
    ranks = dict(ranks or {})
    for layer_name, rank in ranks.items():
        if layer_name not in ("fc6", "fc7"):
            raise ValueError(f"`ranks` keys must be 'fc6' or 'fc7'; got {layer_name!r}.")
        if int(rank) < 1:
            raise ValueError(f"rank of {layer_name} must be >= 1; got {rank}.")
    pooled = keras.Input((roi_features_of(detector).output_dim,), name="pooled")
    fc6 = _dense_or_svd(detector.get_layer("fc6"), ranks.get("fc6"))(pooled)
    fc7 = _dense_or_svd(detector.get_layer("fc7"), ranks.get("fc7"))(fc6)
    outputs = {
        "class_probabilities": detector.get_layer("fc8")(fc7),
        "svm_scores": detector.get_layer("svm")(fc7),
        "box_deltas": detector.get_layer("bbox")(pooled),
    }
    return keras.Model(pooled, outputs, name="pooled_head")


def truncated_fc(detector, ranks):
    """A copy of ``detector`` with ``pooled_head(detector, ranks)`` as its head."""
    head = pooled_head(detector, ranks)
    image = keras.Input((None, None, 3), batch_size=1, name="image")
    boxes = keras.Input((4,), name="boxes")
    outputs = head(roi_features_of(detector)(image, boxes))
    return keras.Model({"image": image, "boxes": boxes}, outputs, name=f"{detector.name}_svd")


def _dense_or_svd(layer, rank):
    kernel, bias = layer.get_weights()
    if rank is None or int(rank) >= min(kernel.shape):
        return layer
    rank = int(rank)
    u, s, vt = np.linalg.svd(kernel.astype(np.float64), full_matrices=False)
    first = keras.layers.Dense(rank, use_bias=False, name=f"{layer.name}_svd_u")
    second = keras.layers.Dense(kernel.shape[1], activation=layer.activation, name=f"{layer.name}_svd_v")
    first.build((None, kernel.shape[0]))
    second.build((None, rank))
    first.set_weights([(u[:, :rank] * s[:rank]).astype(np.float32)])
    second.set_weights([vt[:rank].astype(np.float32), bias])
    return lambda x: second(first(x))
