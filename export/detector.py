"""The "detector" serving kind: encoded images and their proposals in, detections out.

Selective search runs outside the graph (it is OpenCV, not TensorFlow), so the
client sends each image's proposals with it; scoring, per-class box regression,
clipping and per-class NMS run inside (``keras_spp.detection.detector.postprocess``
with the detector's ``DetectionSettings``). Outputs use the TF Object Detection
API's names and conventions. ``D = max_detections`` (default 100), ``N`` images:

* ``serving_default``: inputs ``image_bytes`` string ``[N]`` (JPEG or PNG of any
  size, ``export.images``; sizes may differ within a batch) and ``boxes`` float32
  ``[N, R, 4]``: each image's proposals as ``[y1, x1, y2, x2]`` in pixels of that
  (original) image. Images with fewer proposals are padded to the batch's ``R``:
  **a row with ``y2 <= y1`` or ``x2 <= x1`` (an all-zero row, say) is padding and is
  ignored**; a real proposal always has some area (selective search drops boxes
  under ``min_size``). An image whose rows are all padding has no detections.
* ``detect_images``: ``image_tensor`` uint8 ``[N, H, W, 3]`` (RGB pixels, every
  image of a batch the same size, as the OD API's ``image_tensor`` input) and
  ``boxes`` as above.

Both return, per image, the detections best first, padded with zeros after the
first ``num_detections``:

* ``detection_boxes`` float32 ``[N, D, 4]``: ``[ymin, xmin, ymax, xmax]`` normalized
  by the original image's height and width (0..1; multiply by them for pixels);
* ``detection_scores`` float32 ``[N, D]``: softmax probabilities (background
  excluded) or SVM scores, as ``scoring`` says;
* ``detection_classes`` float32 ``[N, D]``: **1-based** class ids (the OD API's
  convention; ``0`` only in padding): ``class_names[c - 1]``;
* ``detection_labels`` string ``[N, D]``: the class names (``assets/labels.txt``),
  ``""`` in padding (not an OD API output; handy for clients);
* ``num_detections`` float32 ``[N]``.

Maximum side: an image whose longer side exceeds ``max_side`` (default: the
detector's own, ``MultiScaleRoiFeatures.max_side``, 2000 px as
``keras_spp.detection.scales.MAX_SIDE``) is first resized so that its longer side
is ``max_side``: both sides scaled by ``max_side / longer side``, rounded, aspect
kept, bilinear with antialiasing. Its boxes are scaled by the same per-axis factors
(new size / old size). Since no scale of the detector looks at more than its own
max side, this changes what the network sees only by one resampling more; the
normalized outputs refer to the original image all the same. Images whose header
declares more than ``max_pixels`` are refused before decoding (``export.images``).

Bad input is an ``InvalidArgumentError`` naming what was wrong: bytes that are no
JPEG or PNG (with their batch positions), truncated files, ``boxes`` whose batch
size differs from the images', NaN, infinite or overflowing box coordinates (beyond
+-2^24 pixels), and an image too
elongated for the backbone at a scale its windows use. An empty batch gives outputs
with a first dimension of 0.

Under XLA (unless exported with ``--no-jit``): each scale's conv and RoI pooling
(``MultiScaleRoiFeatures``' XLA function); decoding, the antialiased resize and NMS
have no XLA kernels and stay outside. XLA compiles one program per input shape, so
each scale's boxes are padded to a power of two (at least 64,
``keras_spp.detection.features.MIN_BUCKET``) rows
before it and the padding's features dropped after: one compilation per resized
image size and bucket (64, 128, ..., 2048: six for selective search's 2,000), not
per number of proposals, which differs in nearly every request. R-CNN's
``WarpedWindowFeatures`` has no XLA path, so its export has none.
"""

import json
import os

import numpy as np
import tensorflow as tf

from export import images as image_ops
from export.client import pad_boxes
from export.encoding import b64, jsonable, png_bytes
from export.kinds import ServingKind, label_names, label_table
from keras_spp.data.voc import decode_image_tf
from keras_spp.detection.boxes import MAX_COORDINATE
from keras_spp.validation import is_number, positive_int

SETTING_FLAGS = {  # DetectionSettings field -> the export's command-line flag
    "scoring": "--scoring",
    "box_regression": "--no-box-regression",
    "nms_iou": "--nms-iou",
    "score_threshold": "--score-threshold",
    "max_detections": "--max-detections",
    "vote_iou": "--vote-iou",
}


def resolve(model_path):
    """``(model.keras path, detector.json path or None)`` for a detector folder or its model file."""
    if os.path.isdir(model_path):
        folder, model_file = model_path, os.path.join(model_path, "model.keras")
    else:
        folder, model_file = os.path.dirname(os.path.abspath(model_path)), model_path
    if not os.path.isfile(model_file):
        raise FileNotFoundError(
            f"No model file at {model_file}: --model is a detector folder written by recipes.train_detector "
            "(model.keras and detector.json) or its model.keras."
        )
    meta = os.path.join(folder, "detector.json")
    return model_file, (meta if os.path.isfile(meta) else None)


def read_detector_json(path):
    """``(class names or None, settings dict, metadata dict)`` from a ``detector.json``."""
    return _fields(_detector_json(path))


def _fields(meta):
    names = meta.get("class_names")
    return (
        ([str(n) for n in names] if names is not None else None),
        dict(meta.get("settings") or {}),
        dict(meta.get("metadata") or {}),
    )


def _detector_json(path):
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not readable JSON ({e}); fix it, or pass --labels and the settings' flags.") from e


def settings_from(stored, overrides):
    """``DetectionSettings`` from ``detector.json``'s ``stored`` values and the flags' ``overrides``."""
    from keras_spp.detection.detector import DetectionSettings

    values = dict(stored)
    unknown = sorted(set(overrides) - set(SETTING_FLAGS))
    if unknown:
        raise ValueError(f"Unknown detection settings {unknown}; known: {sorted(SETTING_FLAGS)}.")
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {k: values[k] for k in SETTING_FLAGS if k in values}
    positive_int("--max-detections", known.get("max_detections", 100), hint="the outputs' second dimension")
    threshold = known.get("score_threshold", 0.05)
    if not is_number(threshold):
        raise ValueError(f"--score-threshold must be a finite number; got {threshold!r}.")
    try:
        return DetectionSettings(**known)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Bad detection settings: {e}") from e


class DetectorKind(ServingKind):
    """The detector kind for a loaded ``spp_detector`` Keras ``model`` (``export.kinds``).

    ``meta``: ``labels``, ``labels_file``, ``max_side`` (``None``: the model's),
    ``max_pixels``, ``jit``, ``settings`` (``DetectionSettings``) and ``proposer``
    (the detector's ``LearnedProposals`` or ``None``; when absent, loaded from the
    ``rpn`` entry of its ``detector.json``, ``meta["rpn"]``, and
    ``meta["detector_dir"]``). Sets ``meta["max_side"]`` to the
    side applied, and ``meta["jit"]`` to whether XLA was applied (R-CNN's window
    features have no XLA path).
    """

    name = "detector"
    float_input = ("detect_images", "image_tensor")
    # Detections are compared row by row (a row: one detection's box, score, class
    # and label), within atol for floats and exactly for classes and labels, except
    # where the Keras scores of neighbouring rows are within the tolerance of each
    # other (a near-tie that XLA's rounding may order the other way).
    compare = {
        "detection_boxes": {"atol": 1e-4, "ties_by": "detection_scores"},
        "detection_scores": {"atol": 1e-4, "ties_by": "detection_scores"},
        "detection_classes": {"ties_by": "detection_scores"},
        "detection_labels": {"ties_by": "detection_scores"},
        "num_detections": {"atol": 0.0},
    }

    @classmethod
    def options(cls, model_path, labels, options):
        """``options``: ``settings`` (``{DetectionSettings field: value}`` over the
        ``detector.json``'s) and ``max_side``; ``top_k`` and ``min_side`` are refused."""
        given = [
            flag for flag, key in (("--top-k", "top_k"), ("--min-side", "min_side")) if options.get(key) is not None
        ]
        if given:
            raise ValueError(
                f"{' and '.join(given)} are classifier options: a detector's image scales are in its "
                "model, and it returns up to --max-detections detections per image."
            )
        model_path, detector_json = resolve(model_path)
        stored = _detector_json(detector_json)  # read once: names, settings and the RPN's entry
        stored_names, stored_settings, _ = _fields(stored)
        found = {"classes": stored_names} if stored_names is not None else None
        names = label_names(labels, found, model_path, "a detector.json with 'class_names'")
        settings = settings_from(stored_settings, options.get("settings") or {})
        return (
            model_path,
            names,
            {
                "settings": settings,
                "rpn": stored.get("rpn"),
                "detector_dir": os.path.dirname(detector_json) if detector_json else None,
                "max_side": options.get("max_side"),
                "min_side": None,
                "top_k": None,
            },
        )

    def __init__(self, model, meta):
        from keras_spp.detection.features import MultiScaleRoiFeatures

        if "proposer" not in meta:
            from keras_spp.detection.detector import load_proposer

            meta["proposer"] = load_proposer(meta.get("detector_dir"), meta.get("rpn"), model)
        self.model, self.meta, self.proposer = model, meta, meta["proposer"]
        self.roi = roi = _check_model(model, meta["labels"])
        self.spp = spp = isinstance(roi, MultiScaleRoiFeatures)
        max_side = meta.get("max_side") or (roi.max_side if spp else 2000)
        if not isinstance(max_side, int) or max_side < 1:
            raise ValueError(f"--max-side must be a positive integer; got {max_side!r}.")
        meta["max_side"] = max_side
        meta["jit"] = bool(meta["jit"]) and spp
        # 256 px: any backbone takes it; the search goes down from there.
        self.smallest_side = image_ops.smallest_side(lambda x: roi.backbone(x, training=False), 256) if spp else 1
        self.table = label_table(meta["labels_file"])
        self.track = [self.table]
        detect_one = _image_detector(model, roi, self.proposer, meta, self.smallest_side, self.table)
        self._keras = _keras_reference(model, roi, self.proposer, meta)
        built = _endpoints(
            detect_one, self.proposer is not None, int(meta["settings"].max_detections), meta["max_pixels"]
        )
        self.endpoints, self.signatures = built["endpoints"], built["signatures"]

    def reference(self, decoded, boxes_per_image=None):
        """The expected outputs for uint8 images and their unpadded ``[R, 4]``
        proposals (``None``: the RPN's), from ``Detector.detect`` of the Keras model."""
        return self._keras(decoded, boxes_per_image)

    def cases(self, files, decoded):
        """``reference_cases``, or for a detector with an RPN ``rpn_reference_cases``."""
        make = reference_cases if self.proposer is None else rpn_reference_cases
        return make(files, decoded, self.reference, self.smallest_side, self.meta["max_side"])

    def about(self):
        """``{"detector": ...}``: the sides, the settings, the scales and the proposals."""
        proposer, meta = self.proposer, self.meta
        return {
            "detector": {
                "max_side": meta["max_side"],
                "max_pixels": meta["max_pixels"],
                "smallest_side": self.smallest_side,
                "settings": {k: getattr(meta["settings"], k) for k in SETTING_FLAGS},
                "scales": list(self.roi.scales) if self.spp else None,
                "proposals": ("the detector's RPN (image alone); with_boxes: " if proposer is not None else "")
                + "reference_boxes(height, width): a grid of windows (export.detector)",
                **({"rpn": proposer.to_dict()} if proposer is not None else {}),
            }
        }


def _image_detector(model, roi, proposer, meta, smallest, table):
    """``detect_one(image uint8 [H, W, 3], boxes [R, 4] padded or None, input name)``
    -> the padded outputs of one image; ``boxes=None`` asks the RPN."""
    from keras_spp.detection.detector import postprocess
    from keras_spp.detection.features import MultiScaleRoiFeatures

    spp = isinstance(roi, MultiScaleRoiFeatures)
    head = _head_of(model, roi) if spp else None
    settings, max_side, count = meta["settings"], meta["max_side"], int(meta["settings"].max_detections)

    def detect_one(image, boxes, name):
        if boxes is None:
            image, _ = cap_size(image, tf.zeros([0, 4]), max_side)
            image = _check_scales(image, tf.zeros([0, 4]), roi, smallest, name, always=proposer.scale_indices)
            pixels = tf.cast(image[tf.newaxis], tf.float32)
            boxes, _, maps = proposer.propose(pixels)
            image = _check_scales(image, boxes, roi, smallest, name)
            outputs = head(roi.pool_windows(pixels, boxes, meta["jit"], maps), training=False)
        else:
            boxes = tf.boolean_mask(boxes, real_rows(boxes))
            image, boxes = cap_size(image, boxes, max_side)
            if spp:
                image = _check_scales(image, boxes, roi, smallest, name)
            if head is not None:
                outputs = head(window_features(roi, image[tf.newaxis], boxes, meta["jit"]), training=False)
            else:
                outputs = model({"image": image[tf.newaxis], "boxes": boxes}, training=False)
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        found, scores, classes = postprocess(outputs, boxes, h, w, settings)
        found = found / tf.cast(tf.stack([h, w, h, w]), tf.float32)
        n = tf.shape(scores)[0]
        pad = count - n
        labels = table.lookup(tf.cast(classes, tf.int64))
        return (
            tf.ensure_shape(tf.pad(found, [[0, pad], [0, 0]]), [count, 4]),
            tf.ensure_shape(tf.pad(scores, [[0, pad]]), [count]),
            tf.ensure_shape(tf.pad(tf.cast(classes + 1, tf.float32), [[0, pad]]), [count]),
            tf.ensure_shape(tf.pad(labels, [[0, pad]], constant_values=""), [count]),
            tf.cast(n, tf.float32),
        )

    return detect_one


OUTPUT_NAMES = ("detection_boxes", "detection_scores", "detection_classes", "detection_labels", "num_detections")


def _serving_functions(detect_one, count, max_pixels):
    """The four batch functions over ``detect_one``: bytes or tensors, with or
    without boxes; each maps over the batch and names the OD API outputs."""
    signature = (
        tf.TensorSpec([count, 4], tf.float32),
        tf.TensorSpec([count], tf.float32),
        tf.TensorSpec([count], tf.float32),
        tf.TensorSpec([count], tf.string),
        tf.TensorSpec([], tf.float32),
    )

    def outputs(mapped):
        return dict(zip(OUTPUT_NAMES, mapped, strict=True))

    def bytes_with_boxes(image_bytes, boxes):
        image_bytes = image_ops.check_encoded(image_bytes)
        boxes = _check_boxes(boxes, tf.shape(image_bytes)[0], "image_bytes")

        def one(args):
            encoded, image_boxes = args
            return detect_one(image_ops.decode(encoded, max_pixels), image_boxes, "image_bytes")

        # Fully known per-image output shapes: map_fn returns [0, ...] for an empty batch.
        return outputs(tf.map_fn(one, (image_bytes, boxes), fn_output_signature=signature))

    def images_with_boxes(image_tensor, boxes):
        image_tensor = _check_image_tensor(image_tensor)
        boxes = _check_boxes(boxes, tf.shape(image_tensor)[0], "image_tensor")
        return outputs(
            tf.map_fn(
                lambda args: detect_one(args[0], args[1], "image_tensor"),
                (image_tensor, boxes),
                fn_output_signature=signature,
            )
        )

    def bytes_alone(image_bytes):
        image_bytes = image_ops.check_encoded(image_bytes)
        return outputs(
            tf.map_fn(
                lambda encoded: detect_one(image_ops.decode(encoded, max_pixels), None, "image_bytes"),
                image_bytes,
                fn_output_signature=signature,
            )
        )

    def images_alone(image_tensor):
        image_tensor = _check_image_tensor(image_tensor)
        return outputs(
            tf.map_fn(
                lambda image: detect_one(image, None, "image_tensor"), image_tensor, fn_output_signature=signature
            )
        )

    return {
        "bytes_with_boxes": bytes_with_boxes,
        "images_with_boxes": images_with_boxes,
        "bytes_alone": bytes_alone,
        "images_alone": images_alone,
    }


def _endpoints(detect_one, rpn, count, max_pixels):
    """``{"endpoints": {name: (fn, input specs)}, "signatures": reference.json's}``.

    Without an RPN: ``serving_default`` (image_bytes, boxes) and ``detect_images``
    (image_tensor, boxes). With one: those two take the images alone, and the
    boxes-in pair stays as ``with_boxes`` and ``detect_images_with_boxes``."""
    fns = _serving_functions(detect_one, count, max_pixels)
    bytes_spec = tf.TensorSpec([None], tf.string, name="image_bytes")
    tensor_spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="image_tensor")
    boxes_spec = tf.TensorSpec([None, None, 4], tf.float32, name="boxes")
    output_signature = {
        "detection_boxes": ["DT_FLOAT", [-1, count, 4]],
        "detection_scores": ["DT_FLOAT", [-1, count]],
        "detection_classes": ["DT_FLOAT", [-1, count]],
        "detection_labels": ["DT_STRING", [-1, count]],
        "num_detections": ["DT_FLOAT", [-1]],
    }
    bytes_inputs = {"image_bytes": ["DT_STRING", [-1]]}
    tensor_inputs = {"image_tensor": ["DT_UINT8", [-1, -1, -1, 3]]}
    boxes_input = {"boxes": ["DT_FLOAT", [-1, -1, 4]]}
    with_boxes = {
        BOXES_SIGNATURES[rpn][0]: (fns["bytes_with_boxes"], [bytes_spec, boxes_spec], {**bytes_inputs, **boxes_input}),
        BOXES_SIGNATURES[rpn][1]: (
            fns["images_with_boxes"],
            [tensor_spec, boxes_spec],
            {**tensor_inputs, **boxes_input},
        ),
    }
    alone = (
        {
            "serving_default": (fns["bytes_alone"], [bytes_spec], bytes_inputs),
            "detect_images": (fns["images_alone"], [tensor_spec], tensor_inputs),
        }
        if rpn
        else {}
    )
    every = {**alone, **with_boxes}
    return {
        "endpoints": {name: (fn, specs) for name, (fn, specs, _) in every.items()},
        "signatures": {name: {"inputs": inputs, "outputs": output_signature} for name, (_, _, inputs) in every.items()},
    }


# The boxes-in signatures (image_bytes, image_tensor), by whether the detector has an RPN.
BOXES_SIGNATURES = {False: ("serving_default", "detect_images"), True: ("with_boxes", "detect_images_with_boxes")}


def _keras_reference(model, roi, proposer, meta):
    """``reference(decoded, boxes_per_image)``: the expected outputs for uint8 images
    and their unpadded ``[R, 4]`` proposals (``None``: the RPN's), from
    ``Detector.detect`` of the Keras model (no XLA) after the max-side rule."""
    from keras_spp.detection.detector import Detector
    from keras_spp.detection.features import MultiScaleRoiFeatures

    spp = isinstance(roi, MultiScaleRoiFeatures)
    settings, max_side, count = meta["settings"], meta["max_side"], int(meta["settings"].max_detections)
    keras_side = {}

    def reference(decoded, boxes_per_image=None):
        was = getattr(roi, "jit_compile", None)
        if spp:
            roi.jit_compile = False
        try:
            if "detector" not in keras_side:  # one tf.function for every call: traced once
                keras_side["detector"] = Detector(model, meta["labels"], settings, proposer=proposer)
            keras_detector = keras_side["detector"]
            rows = []
            for image, boxes in zip(decoded, boxes_per_image or [None] * len(decoded), strict=True):
                if boxes is not None:
                    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
                    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
                capped, capped_boxes = cap_size(
                    tf.constant(image), tf.constant(np.zeros((0, 4), np.float32) if boxes is None else boxes), max_side
                )
                capped = capped.numpy()
                found, scores, classes = keras_detector.detect(
                    capped, None if boxes is None else capped_boxes.numpy(), settings
                )
                rows.append(padded_outputs(found, scores, classes, capped.shape[:2], count, meta["labels"]))
        finally:
            if spp:
                roi.jit_compile = was
        return stack_outputs(rows, count)

    return reference


def window_features(roi, image, boxes, jit):
    """The window feature layer's output with XLA on or off for this export
    (``MultiScaleRoiFeatures.pool_windows``: under XLA, each scale's boxes are padded
    to a power of two, so a new proposal count does not recompile)."""
    return roi.pool_windows(image, boxes, jit)


def _head_of(model, roi):
    """The detector's layers after its window features: a model from the pooled
    features ``[R, D]`` to the output dict."""
    import keras

    try:
        pooled = roi.output
    except (AttributeError, ValueError) as e:  # a layer shared by several models has no one output
        raise ValueError(
            f"The window feature layer {roi.name!r} is used more than once; export a detector built "
            "by spp_detector (saved by Detector.save)."
        ) from e
    return keras.Model(pooled, model.output, name="detector_head")


def real_rows(boxes):
    """``[R]`` bool: rows with ``y2 > y1`` and ``x2 > x1`` (the others are padding)."""
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def cap_size(image, boxes, max_side):
    """The maximum-side rule (module docstring): ``(float32 image [h, w, 3], boxes [R, 4])``.

    An image whose longer side is at most ``max_side`` comes back as it is (cast to
    float32), its boxes untouched.
    """
    image = tf.convert_to_tensor(image)
    boxes = tf.cast(boxes, tf.float32)
    size = tf.shape(image)[:2]
    longer = tf.reduce_max(size)

    def shrink():
        old = tf.cast(size, tf.float32)
        new = tf.maximum(tf.cast(tf.round(old * (max_side / tf.cast(longer, tf.float32))), tf.int32), 1)
        resized = tf.image.resize(tf.cast(image, tf.float32), new, antialias=True)
        factor = tf.cast(new, tf.float32) / old
        return resized, boxes * tf.tile(factor, [2])

    return tf.cond(longer > max_side, shrink, lambda: (tf.cast(image, tf.float32), boxes))


def _check_boxes(boxes, batch, images_name):
    boxes = image_ops.check_rank(boxes, 3, "boxes", "[N, R, 4]: one [R, 4] array of [y1, x1, y2, x2] pixels per image")
    shape = tf.shape(boxes)
    checks = [
        tf.debugging.Assert(
            tf.equal(shape[0], batch),
            [
                f"boxes: its first dimension must be the number of images in {images_name} (one [R, 4] array of "
                "proposals per image, padded with all-zero rows to a common R); got boxes of shape",
                shape,
                "for this many images:",
                batch,
            ],
        ),
        # Finite is not enough: corners of +-3e38 give infinite sides, and 0 to 3e38 a
        # regressed box of inf - inf, NaN boxes either way. Past 2^24 float32 does not
        # even hold whole pixels; below it the sides and the regression stay finite.
        tf.debugging.Assert(
            tf.reduce_all(tf.abs(boxes) <= MAX_COORDINATE),  # False for NaN too
            [
                "boxes: NaN or infinite coordinates, or beyond +-2^24, where a side y2 - y1 or x2 - x1 or a "
                f"regressed box overflows float32 (accepted: [y1, x1, y2, x2] pixels, finite, of magnitude at most "
                f"{MAX_COORDINATE:.0f}, so that y2 - y1 and x2 - x1 are finite; padding rows all zero)"
            ],
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(boxes)


def _check_image_tensor(images):
    images = image_ops.check_rank(images, 4, "image_tensor", "[N, height, width, 3] uint8 RGB")
    shape = tf.shape(images)
    check = tf.debugging.Assert(
        tf.logical_or(tf.equal(shape[0], 0), tf.logical_and(shape[1] > 0, shape[2] > 0)),
        ["image_tensor: height and width must be at least 1; got the shape", shape],
    )
    with tf.control_dependencies([check]):
        return tf.identity(images)


def _check_scales(image, boxes, roi, smallest, name, always=()):
    """``image`` after asserting that at every scale some box is pooled at (and at the
    scales ``always``, an RPN's), the resized image has at least ``smallest`` pixels
    per side (the backbone's minimum)."""
    from keras_spp.detection import scales as scales_lib

    h, w = tf.shape(image)[0], tf.shape(image)[1]
    factors = scales_lib.scale_factors_tf(h, w, roi.scales, roi.max_side)
    sizes = tf.stack([scales_lib.scaled_size_tf(h, w, factors[i]) for i in range(len(roi.scales))])  # [S, 2]
    chosen = scales_lib.assign_scales_tf(boxes, factors, roi.window_size)
    used = tf.reduce_any(tf.one_hot(chosen, len(roi.scales), on_value=True, off_value=False), axis=0)
    used = used | tf.constant([i in always for i in range(len(roi.scales))])
    sides = tf.where(used, tf.reduce_min(sizes, axis=1), tf.int32.max)
    check = tf.debugging.Assert(
        tf.reduce_min(sides) >= smallest,
        [
            f"{name}: an image too elongated for the detector: at a scale its proposals use, it is resized to "
            "(height, width)",
            tf.gather(sizes, tf.argmin(sides)),
            f"and the backbone needs at least {smallest} pixels per side (image height, width:",
            tf.stack([h, w]),
            ")",
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(image)


def _check_model(model, labels):
    from keras_spp.detection.heads import OUTPUTS, roi_features_of

    names = set(model.output) if isinstance(model.output, dict) else set()
    input_names = {getattr(t, "name", "") for t in model.inputs}
    if not {"image", "boxes"} <= input_names or not set(OUTPUTS) <= names:
        raise ValueError(
            f"A detector export takes a model of keras_spp.detection.heads.spp_detector (inputs image and boxes, "
            f"outputs {', '.join(OUTPUTS)}); {model.name} has inputs {sorted(input_names)} and outputs "
            f"{sorted(names)}. A classifier is exported with --kind classifier."
        )
    roi = roi_features_of(model)
    units = model.get_layer("svm").units
    if units != len(labels):
        raise ValueError(
            f"The detector has {units} classes but the label map has {len(labels)} names; give one "
            "name per class (background excluded), in class-id order."
        )
    return roi


def padded_outputs(boxes, scores, classes, size, count, labels):
    """One image's outputs (numpy) from pixel ``boxes`` ``[D, 4]``, ``scores``, 0-based
    ``classes`` of an image of ``size`` (height, width), padded to ``count``."""
    d = len(scores)
    h, w = float(size[0]), float(size[1])
    out = {
        "detection_boxes": np.zeros((count, 4), np.float32),
        "detection_scores": np.zeros(count, np.float32),
        "detection_classes": np.zeros(count, np.float32),
        "detection_labels": np.full(count, "", dtype=object),
        "num_detections": np.float32(d),
    }
    out["detection_boxes"][:d] = np.asarray(boxes, np.float32).reshape(-1, 4) / np.float32([h, w, h, w])
    out["detection_scores"][:d] = scores
    out["detection_classes"][:d] = np.asarray(classes) + 1
    out["detection_labels"][:d] = [labels[c] for c in classes]
    return out


def stack_outputs(rows, count):
    if not rows:
        return {
            "detection_boxes": np.zeros((0, count, 4), np.float32),
            "detection_scores": np.zeros((0, count), np.float32),
            "detection_classes": np.zeros((0, count), np.float32),
            "detection_labels": np.zeros((0, count), dtype=object),
            "num_detections": np.zeros(0, np.float32),
        }
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


def reference_boxes(height, width, fractions=(0.25, 0.5, 0.75)):
    """Proposals for the reference images: a grid of windows, float32 ``[R, 4]``.

    Windows of ``fy * height`` by ``fx * width`` for every pair of ``fractions``,
    slid by half their size, rounded to whole pixels (121 windows at the defaults).
    A fixed function of the size, so the export needs no OpenCV; what a detector
    answers for them is beside the point, only that the export answers the same.
    """

    def spans(extent):
        out = []
        for f in fractions:
            size, step = f * extent, f * extent / 2
            k = 0
            while k * step + size <= extent + 1e-6:
                out.append((k * step, k * step + size))
                k += 1
        return out

    boxes = [(y1, x1, y2, x2) for y1, y2 in spans(height) for x1, x2 in spans(width)]
    boxes = np.round(np.array(boxes, np.float64)).astype(np.float32).reshape(-1, 4)
    return boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]


def oversize_image(max_side):
    """``(file name, JPEG bytes)``: a photo whose longer side is 1/8 above ``max_side``
    (2250 x 375 px at 2000), for the maximum-side case; ``None`` above 4096 px."""
    import io

    from PIL import Image
    from skimage import data

    if max_side > 4096:
        return None
    long = max_side + max(1, max_side // 8)
    short = max(64, long // 6)
    buffer = io.BytesIO()
    Image.fromarray(data.rocket()).resize((long, short), Image.BILINEAR).save(buffer, "JPEG", quality=85)
    return f"oversize-{short}x{long}.jpg", buffer.getvalue()


def _float_array(a):
    return jsonable({"x": np.asarray(a, np.float32)})["x"]


def _refused_requests(files, boxes, by_bytes):
    """Cases that must fail with a named error: bytes that are no image, a cut JPEG,
    fewer box lists than images."""
    names = [name for name, _ in files]
    array = _float_array
    return [
        {
            "name": "bytes that are no image",
            "signature": by_bytes,
            "inputs": {
                "image_bytes": {"b64": [b64(files[0][1]), b64(b"<html>not an image</html>")]},
                "boxes": array(pad_boxes([boxes[0], boxes[0]])),
            },
            "error": {"type": "InvalidArgumentError", "contains": "not JPEG or PNG data"},
        },
        {
            "name": "truncated JPEG",
            "signature": by_bytes,
            "inputs": {
                "image_bytes": {"b64": [b64(files[0][1][: len(files[0][1]) // 3])]},
                "boxes": array(pad_boxes([boxes[0]])),
            },
            "error": {"type": "InvalidArgumentError", "contains": ""},
        },
        {
            "name": "boxes for fewer images than image_bytes",
            "signature": by_bytes,
            "inputs": {"image_bytes": {"files": names[:2]}, "boxes": array(pad_boxes([boxes[0]]))},
            "error": {"type": "InvalidArgumentError", "contains": "must be the number of images"},
        },
    ]


def _size_limit_cases(reference, smallest, max_side, by_bytes):
    """An image over ``max_side`` (resized, its boxes with it) and one too elongated
    for the backbone: ``(cases, extra files)``."""
    array = _float_array
    cases = []
    extra = []
    oversize = oversize_image(max_side)
    if oversize is not None:
        name, encoded = oversize
        image = decode_image_tf(encoded).numpy()
        big_boxes = reference_boxes(*image.shape[:2])
        extra.append(oversize)
        cases.append(
            {
                "name": f"an image above the maximum side ({image.shape[0]} x {image.shape[1]}; resized to "
                f"a longer side of {max_side}, its boxes with it)",
                "signature": by_bytes,
                "inputs": {"image_bytes": {"files": [name]}, "boxes": array(pad_boxes([big_boxes]))},
                "outputs": jsonable(reference([image], [big_boxes])),
            }
        )
    if smallest > 1:  # 1 x min(max_side, 2000) px with one window over all of it
        long = min(max_side, 2000)
        line = np.zeros((1, long, 3), np.uint8)
        cases.append(
            {
                "name": "an image too elongated for the detector",
                "signature": by_bytes,
                "inputs": {"image_bytes": {"b64": [b64(png_bytes(line))]}, "boxes": array([[[0, 0, 1, long]]])},
                "error": {"type": "InvalidArgumentError", "contains": "too elongated"},
            }
        )
    return cases, extra


def reference_cases(files, decoded, reference, smallest, max_side, signatures=BOXES_SIGNATURES[False]):
    """``(cases, warmup inputs, extra files)`` of ``reference.json`` for the detector's
    boxes-in ``signatures`` (image_bytes, image_tensor)."""
    by_bytes, by_tensor = signatures
    names = [name for name, _ in files]
    images = [decoded[n] for n in names]
    boxes = [reference_boxes(*image.shape[:2]) for image in images]
    padded = pad_boxes(boxes)  # sizes differ, so do their grids: the shorter lists are padded
    first = images[0]
    array = _float_array
    cases = [
        {
            "name": "images of several sizes, JPEG and PNG, in one batch; proposals padded with zero rows",
            "signature": by_bytes,
            "inputs": {"image_bytes": {"files": names}, "boxes": array(padded)},
            "outputs": jsonable(reference(images, boxes)),
        },
        {
            "name": "decoded pixels (image_tensor), a batch of two",
            "signature": by_tensor,
            "inputs": {
                "image_tensor": {"decoded_files": [names[0], names[0]]},
                "boxes": array(pad_boxes([boxes[0], boxes[0][::2]])),
            },
            "outputs": jsonable(reference([first, first], [boxes[0], boxes[0][::2]])),
        },
        {
            "name": "an image whose proposals are all padding",
            "signature": by_bytes,
            "inputs": {"image_bytes": {"files": names[:1]}, "boxes": array(np.zeros((1, 3, 4)))},
            "outputs": jsonable(reference([first], [np.zeros((0, 4))])),
        },
        {
            "name": "empty batch",
            "signature": by_bytes,
            "inputs": {"image_bytes": {"b64": []}, "boxes": array(np.zeros((0, 1, 4)))},
            "outputs": jsonable(reference([], [])),
        },
        *_refused_requests(files, boxes, by_bytes),
    ]
    limit_cases, extra = _size_limit_cases(reference, smallest, max_side, by_bytes)
    cases += limit_cases
    # One warmup request per image size (each compiles its own XLA programs).
    warmup = [
        {"image_bytes": np.array([encoded], dtype=object), "boxes": pad_boxes([b])}
        for (_, encoded), b in zip(files, boxes, strict=True)
    ]
    return cases, warmup, extra


def rpn_reference_cases(files, decoded, reference, smallest, max_side):
    """``(cases, warmup inputs, extra files)`` for an RPN detector: images alone in
    ``serving_default`` and ``detect_images``, then the boxes-in cases under their names."""
    names = [name for name, _ in files]
    images = [decoded[n] for n in names]
    first = images[0]
    blank = np.full((240, 320, 3), 128, np.uint8)
    cases = [
        {
            "name": "images of several sizes, JPEG and PNG, in one batch, bytes alone (the RPN proposes)",
            "signature": "serving_default",
            "inputs": {"image_bytes": {"files": names}},
            "outputs": jsonable(reference(images)),
        },
        {
            "name": "decoded pixels (image_tensor) alone, a batch of two",
            "signature": "detect_images",
            "inputs": {"image_tensor": {"decoded_files": [names[0], names[0]]}},
            "outputs": jsonable(reference([first, first])),
        },
        {
            "name": "a flat grey image (nothing to find)",
            "signature": "serving_default",
            "inputs": {"image_bytes": {"b64": [b64(png_bytes(blank))]}},
            "outputs": jsonable(reference([blank])),
        },
        {
            "name": "empty batch",
            "signature": "serving_default",
            "inputs": {"image_bytes": {"b64": []}},
            "outputs": jsonable(reference([])),
        },
        {
            "name": "bytes that are no image",
            "signature": "serving_default",
            "inputs": {"image_bytes": {"b64": [b64(files[0][1]), b64(b"<html>not an image</html>")]}},
            "error": {"type": "InvalidArgumentError", "contains": "not JPEG or PNG data"},
        },
        {
            "name": "truncated JPEG",
            "signature": "serving_default",
            "inputs": {"image_bytes": {"b64": [b64(files[0][1][: len(files[0][1]) // 3])]}},
            "error": {"type": "InvalidArgumentError", "contains": ""},
        },
    ]
    if smallest > 1:
        line = np.zeros((1, min(max_side, 2000), 3), np.uint8)
        cases.append(
            {
                "name": "an image too elongated for the RPN's scale",
                "signature": "serving_default",
                "inputs": {"image_bytes": {"b64": [b64(png_bytes(line))]}},
                "error": {"type": "InvalidArgumentError", "contains": "too elongated"},
            }
        )
    boxes_cases, _, extra = reference_cases(files, decoded, reference, smallest, max_side, BOXES_SIGNATURES[True])
    cases += [case for case in boxes_cases if "error" not in case or "number of images" in case["error"]["contains"]]
    # One warmup request per image size, images alone (each size compiles its own XLA programs).
    warmup = [{"image_bytes": np.array([encoded], dtype=object)} for _, encoded in files]
    return cases, warmup, extra
