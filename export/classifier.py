"""The "classifier" serving kind: encoded images in, class probabilities and top-k out.

Signatures (``k = min(top_k, classes)``, ``C`` classes):

* ``serving_default``: ``image_bytes`` string ``[None]``, JPEG or PNG of any size
  (``export.images``); each image is decoded, resized to the full-image view and
  classified on its own, so one batch may mix sizes. Outputs ``probabilities``
  float32 ``[None, C]``, ``classes`` int32 ``[None, k]`` (class ids, best first),
  ``labels`` string ``[None, k]`` (their names, from ``assets/labels.txt``) and
  ``scores`` float32 ``[None, k]`` (their probabilities).
* ``classify_images``: ``images`` float32 ``[None, None, None, 3]``, RGB pixels in
  ``[0, 255]``, every image of a batch the same size; resized to the full-image view
  like the bytes, and classified as one batch. Same outputs.

An empty batch gives outputs with a first dimension of 0. The network runs under XLA
(``jit_compile``) unless the export says otherwise; decoding and resizing stay
outside, since their output shapes depend on the data.
"""

import numpy as np
import tensorflow as tf

from export import images as image_ops

def classifier(model, meta):
    """The classifier kind for a loaded Keras ``model`` (see ``export.saved_model.KINDS``).

    ``meta``: ``labels`` (class names, in class-id order), ``labels_file`` (the same,
    one per line, which becomes ``assets/labels.txt``), ``min_side``, ``max_side``,
    ``max_pixels``, ``top_k``, ``jit``.
    """
    num_classes = _check_model(model, meta["labels"])
    k = min(meta["top_k"], num_classes)
    min_side, max_side = meta["min_side"], meta["max_side"]
    smallest = image_ops.smallest_side(lambda x: model(x, training=False), min_side)
    # The label map lives in the SavedModel's assets and is read through a table, so
    # that relabelling is an edit of assets/labels.txt, not a new graph.
    table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            meta["labels_file"], tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )
    # One trace for every size; XLA then compiles once per input shape it meets.
    network = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
        jit_compile=meta["jit"],
    )

    def view(image, name="image_bytes"):
        return image_ops.check_view(image_ops.full_view(image, min_side, max_side), smallest, max_side, name)

    def outputs(probabilities):
        probabilities = tf.ensure_shape(tf.cast(probabilities, tf.float32), [None, num_classes])
        scores, classes = tf.math.top_k(probabilities, k)
        return {
            "probabilities": probabilities,
            "classes": classes,
            "labels": table.lookup(tf.cast(classes, tf.int64)),
            "scores": scores,
        }

    def serving_default(image_bytes):
        image_bytes = image_ops.check_encoded(image_bytes)

        def one(encoded):
            x = view(image_ops.decode(encoded, meta["max_pixels"]))
            return network(x[tf.newaxis])[0]

        # A fully known per-image output shape lets map_fn return [0, C] for an empty batch.
        probabilities = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([num_classes], tf.float32))
        return outputs(probabilities)

    def classify_images(images):
        images = _check_float_images(images)

        def run():
            x = tf.map_fn(lambda image: view(image, "images"), images,
                          fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32))
            return tf.cast(network(x), tf.float32)

        # map_fn cannot stack zero images of an unknown size: an empty batch skips the network.
        probabilities = tf.cond(tf.shape(images)[0] > 0, run, lambda: tf.zeros([0, num_classes]))
        return outputs(probabilities)

    def reference(decoded):
        """Expected outputs of ``serving_default`` for uint8 images, from the Keras model."""
        rows = [model(image_ops.full_view(image, min_side, max_side)[tf.newaxis], training=False).numpy()[0]
                for image in decoded]
        return top_k_outputs(np.array(rows, np.float32).reshape(-1, num_classes), k, meta["labels"])

    signature = {
        "probabilities": ["DT_FLOAT", [-1, num_classes]],
        "classes": ["DT_INT32", [-1, k]],
        "labels": ["DT_STRING", [-1, k]],
        "scores": ["DT_FLOAT", [-1, k]],
    }
    return {
        "endpoints": {
            "serving_default": (serving_default, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
            "classify_images": (classify_images, [tf.TensorSpec([None, None, None, 3], tf.float32, name="images")]),
        },
        "track": [table],
        "signatures": {
            "serving_default": {"inputs": {"image_bytes": ["DT_STRING", [-1]]}, "outputs": signature},
            "classify_images": {"inputs": {"images": ["DT_FLOAT", [-1, -1, -1, 3]]}, "outputs": signature},
        },
        "reference": reference,
        # Ids and names are compared exactly, except where the Keras scores of two
        # neighbours are within the tolerance of each other (a tie may swap them).
        "compare": {
            "probabilities": {"atol": 1e-4},
            "scores": {"atol": 1e-4},
            "classes": {"ties_by": "scores"},
            "labels": {"ties_by": "scores"},
        },
        "smallest_side": smallest,
        "bytes_input": ("serving_default", "image_bytes"),
        "float_input": ("classify_images", "images"),
    }


def top_k_outputs(probabilities, k, labels):
    """The classifier's outputs computed in numpy from ``probabilities`` ``[N, C]``."""
    classes = np.argsort(-probabilities, axis=1, kind="stable")[:, :k].astype(np.int32)
    return {
        "probabilities": probabilities,
        "classes": classes,
        "labels": np.array([[labels[c] for c in row] for row in classes], dtype=object).reshape(-1, k),
        "scores": np.take_along_axis(probabilities, classes, axis=1),
    }


def _check_model(model, labels):
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"A classifier export takes a model with one image input and one probability output; "
            f"{model.name} has {len(inputs)} inputs and {len(outputs)} outputs."
        )
    in_shape, out_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
    if len(in_shape) != 4 or in_shape[-1] != 3:
        raise ValueError(f"The model's input must be images [batch, height, width, 3]; got {in_shape}.")
    if in_shape[1:3] != (None, None):
        raise ValueError(
            f"The model takes only {in_shape[1]}x{in_shape[2]} images, and the full-image view needs any "
            "size: export a model with an SPP head (spp_classifier, --head spp)."
        )
    if len(out_shape) != 2:
        raise ValueError(f"The model's output must be probabilities [batch, classes]; got {out_shape}.")
    if out_shape[1] != len(labels):
        raise ValueError(
            f"The model has {out_shape[1]} classes but the label map has {len(labels)} names; "
            "give one name per class, in class-id order."
        )
    return out_shape[1]


def _check_float_images(images):
    shape = tf.shape(images)
    checks = [
        tf.debugging.Assert(
            tf.logical_or(tf.equal(shape[0], 0), tf.logical_and(shape[1] > 0, shape[2] > 0)),
            ["images: height and width must be at least 1; got the shape", shape],
        ),
        tf.debugging.assert_all_finite(images, "images: NaN or infinite pixels (accepted: RGB in [0, 255])"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(images)
