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

import json
import os

import numpy as np
import tensorflow as tf

from export import images as image_ops
from export.encoding import b64, jsonable, png_bytes
from export.kinds import ServingKind, bytes_warmup, label_names, label_table
from keras_spp.validation import positive_int


class ClassifierKind(ServingKind):
    """The classifier kind for a loaded Keras ``model`` (``export.kinds``).

    ``meta``: ``labels`` (class names, in class-id order), ``labels_file`` (the same,
    one per line, which becomes ``assets/labels.txt``), ``min_side``, ``max_side``,
    ``max_pixels``, ``top_k``, ``jit``.
    """

    name = "classifier"
    float_input = ("classify_images", "images")
    # Ids and names are compared exactly, except where the Keras scores of two
    # neighbours are within the tolerance of each other (a tie may swap them).
    compare = {
        "probabilities": {"atol": 1e-4},
        "scores": {"atol": 1e-4},
        "classes": {"ties_by": "scores"},
        "labels": {"ties_by": "scores"},
    }

    @classmethod
    def options(cls, model_path, labels, options):
        """``options``: ``top_k`` (default 5), ``min_side`` (default: ``results.json``'s
        ``config.min_side``), ``max_side`` (default 2048); detection settings are refused."""
        settings = options.get("settings")
        if settings and any(v is not None for v in settings.values()):
            from export.detector import SETTING_FLAGS

            raise ValueError(
                f"Detection settings ({', '.join(SETTING_FLAGS[k] for k in settings)}) are options of --kind detector."
            )
        top_k = 5 if options.get("top_k") is None else options["top_k"]
        max_side = image_ops.MAX_SIDE if options.get("max_side") is None else options["max_side"]
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"No model file at {model_path} (a .keras file saved by Keras 3).")
        positive_int("--top-k", top_k)
        results = results_next_to(model_path)
        names = label_names(labels, results, model_path)
        min_side = _min_side(options.get("min_side"), results, model_path)
        if max_side < min_side:
            raise ValueError(f"--max-side ({max_side}) must be at least the min side ({min_side}).")
        return model_path, names, {"min_side": min_side, "top_k": top_k, "max_side": max_side}

    def __init__(self, model, meta):
        self.model, self.meta = model, meta
        self.num_classes = _check_model(model, meta["labels"])
        self.k = min(meta["top_k"], self.num_classes)
        self.smallest_side = image_ops.smallest_side(lambda x: model(x, training=False), meta["min_side"])
        self.table = label_table(meta["labels_file"])
        self.track = [self.table]
        # One trace for every size; XLA then compiles once per input shape it meets.
        self.network = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
            jit_compile=meta["jit"],
        )
        self.endpoints = {
            "serving_default": (self.serving_default, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
            "classify_images": (
                self.classify_images,
                [tf.TensorSpec([None, None, None, 3], tf.float32, name="images")],
            ),
        }
        outputs = {
            "probabilities": ["DT_FLOAT", [-1, self.num_classes]],
            "classes": ["DT_INT32", [-1, self.k]],
            "labels": ["DT_STRING", [-1, self.k]],
            "scores": ["DT_FLOAT", [-1, self.k]],
        }
        self.signatures = {
            "serving_default": {"inputs": {"image_bytes": ["DT_STRING", [-1]]}, "outputs": outputs},
            "classify_images": {"inputs": {"images": ["DT_FLOAT", [-1, -1, -1, 3]]}, "outputs": outputs},
        }

    def _view(self, image, name="image_bytes"):
        max_side = self.meta["max_side"]
        view = image_ops.full_view(image, self.meta["min_side"], max_side)
        return image_ops.check_view(view, self.smallest_side, max_side, name)

    def _outputs(self, probabilities):
        probabilities = tf.ensure_shape(tf.cast(probabilities, tf.float32), [None, self.num_classes])
        scores, classes = tf.math.top_k(probabilities, self.k)
        return {
            "probabilities": probabilities,
            "classes": classes,
            "labels": self.table.lookup(tf.cast(classes, tf.int64)),
            "scores": scores,
        }

    def serving_default(self, image_bytes):
        """``image_bytes`` string ``[N]`` -> the outputs (module docstring)."""
        image_bytes = image_ops.check_encoded(image_bytes)

        def one(encoded):
            x = self._view(image_ops.decode(encoded, self.meta["max_pixels"]))
            return self.network(x[tf.newaxis])[0]

        # A fully known per-image output shape lets map_fn return [0, C] for an empty batch.
        probabilities = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([self.num_classes], tf.float32))
        return self._outputs(probabilities)

    def classify_images(self, images):
        """``images`` float32 ``[N, H, W, 3]`` -> the outputs (module docstring)."""
        images = _check_float_images(images)

        def run():
            x = tf.map_fn(
                lambda image: self._view(image, "images"),
                images,
                fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32),
            )
            return tf.cast(self.network(x), tf.float32)

        # map_fn cannot stack zero images of an unknown size: an empty batch skips the network.
        probabilities = tf.cond(tf.shape(images)[0] > 0, run, lambda: tf.zeros([0, self.num_classes]))
        return self._outputs(probabilities)

    def reference(self, decoded):
        """Expected outputs of ``serving_default`` for uint8 images, from the Keras model."""
        min_side, max_side = self.meta["min_side"], self.meta["max_side"]
        rows = [
            self.model(image_ops.full_view(image, min_side, max_side)[tf.newaxis], training=False).numpy()[0]
            for image in decoded
        ]
        return top_k_outputs(np.array(rows, np.float32).reshape(-1, self.num_classes), self.k, self.meta["labels"])

    def cases(self, files, decoded):
        """The bytes of several sizes in one batch, float pixels, an empty batch, and
        bad input; warmup: one request per reference image."""
        names = [name for name, _ in files]
        first = names[0]
        bytes_signature, bytes_input = self.bytes_input
        float_signature, float_input = self.float_input
        cases = [
            {
                "name": "images of several sizes, JPEG and PNG, in one batch",
                "signature": bytes_signature,
                "inputs": {bytes_input: {"files": names}},
                "outputs": jsonable(self.reference([decoded[n] for n in names])),
            },
            {
                "name": "float pixels, a batch of two",
                "signature": float_signature,
                "inputs": {float_input: {"decoded_files": [first, first]}},
                "outputs": jsonable(self.reference([decoded[first], decoded[first]])),
            },
            {
                "name": "empty batch",
                "signature": bytes_signature,
                "inputs": {bytes_input: {"b64": []}},
                "outputs": jsonable(self.reference([])),
            },
            {
                "name": "bytes that are no image",
                "signature": bytes_signature,
                "inputs": {bytes_input: {"b64": [b64(files[0][1]), b64(b"<html>not an image</html>")]}},
                "error": {"type": "InvalidArgumentError", "contains": "not JPEG or PNG data"},
            },
            {
                "name": "truncated JPEG",
                "signature": bytes_signature,
                "inputs": {bytes_input: {"b64": [b64(files[0][1][: len(files[0][1]) // 3])]}},
                "error": {"type": "InvalidArgumentError", "contains": ""},
            },
        ]
        if self.smallest_side > 1:  # 1 x 2000 px: its view is about 1 px high at any max side up to 2000
            line = np.zeros((1, 2000, 3), np.uint8)
            cases.append(
                {
                    "name": "an image too elongated for the network",
                    "signature": bytes_signature,
                    "inputs": {bytes_input: {"b64": [b64(png_bytes(line))]}},
                    "error": {"type": "InvalidArgumentError", "contains": "too elongated"},
                }
            )
        return cases, bytes_warmup(files, bytes_input), []

    def about(self):
        """``{"view": ...}``: the full-image view's sides."""
        return {
            "view": {
                "min_side": self.meta["min_side"],
                "max_side": self.meta["max_side"],
                "max_pixels": self.meta["max_pixels"],
                "smallest_side": self.smallest_side,
            }
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
    images = image_ops.check_rank(images, 4, "images", "[N, height, width, 3] RGB in [0, 255]")
    shape = tf.shape(images)
    checks = [
        tf.debugging.Assert(
            tf.logical_or(tf.equal(shape[0], 0), tf.logical_and(shape[1] > 0, shape[2] > 0)),
            ["images: height and width must be at least 1; got the shape", shape],
        ),
        # In range, not only finite: pixels of 1e38 overflow the network into NaN probabilities.
        tf.debugging.Assert(
            tf.reduce_all((images >= 0.0) & (images <= 255.0)),  # False for NaN too
            [
                "images: pixels outside [0, 255], NaN or infinite (accepted: RGB in [0, 255]); got the range",
                tf.reduce_min(images),
                tf.reduce_max(images),
            ],
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(images)


def results_next_to(model_path):
    """The ``results.json`` that ``recipes.train_classifier`` wrote next to ``model_path``, or ``None``."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "results.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not readable JSON ({e}); fix it or pass --labels and --min-side.") from e
    if not isinstance(results, dict) or not isinstance(results.get("config", {}), dict):
        raise ValueError(
            f"{path} is not a training's results (a JSON object with 'classes' and 'config'); "
            "fix it or pass --labels and --min-side."
        )
    return results


def _min_side(min_side, results, model_path):
    if min_side is None and results is not None:
        min_side = results.get("config", {}).get("min_side")
    if min_side is None:
        raise ValueError(
            f"No min side for the full-image view: results.json next to {model_path} has no config.min_side; "
            "pass --min-side (the training's, e.g. 256 for ImageNet-like data, 128 for mnist-scenes)."
        )
    if not isinstance(min_side, int) or min_side < 1:
        raise ValueError(f"The min side must be a positive integer; got {min_side!r}.")
    return min_side
