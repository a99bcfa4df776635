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
+-2^24 pixels), ``image_tensor`` of another rank or channel count, and an image too
elongated for the backbone at a scale its windows use. What the model itself takes
(images, box coordinates) is refused with the model's own text, as its Keras call
refuses it (``keras_spp.detection.network_outputs``); the export checks only the
requests' layout, the bytes and the sizes. An empty batch gives outputs
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

Each signature is a wrapper around the detector's one Keras model,
``keras_spp.detection.spp_net_detector.SppNetDetector`` (built here from the folder's
heads, RPN and settings), as in Model Garden: decode and cap the images and drop the
boxes' padding, check, call the model, rename its outputs and add
``detection_labels``. The Keras reference the export is verified against is the same
model's call with its window pooling outside XLA.

The kind is assembled from modules of one idea each: the serving graph
(``export.detector_graph``) with its input checks (``export.detector_checks``), the
Keras reference it is verified against (``export.detector_reference``) and the
verification cases of ``reference.json`` (``export.detector_cases``).
"""

import json
import os

from export import images as image_ops
from export.detector_cases import reference_cases, rpn_reference_cases
from export.detector_graph import image_detector, serving_endpoints
from export.detector_reference import keras_reference
from export.kinds import ServingKind, label_names, label_table
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
        from keras_spp.detection.detector import Detector
        from keras_spp.detection.features import MultiScaleRoiFeatures
        from keras_spp.detection.spp_net_detector import SppNetDetector

        if "proposer" not in meta:
            from keras_spp.detection.detector import load_proposer

            meta["proposer"] = load_proposer(meta.get("detector_dir"), meta.get("rpn"), model)
        self.model, self.meta = model, meta
        self.roi = roi = _check_model(model, meta["labels"])
        # The served graph and its reference are this model's call: the chain exists once.
        self.detector = SppNetDetector.from_detector(
            Detector(model, meta["labels"], meta["settings"], proposer=meta["proposer"])
        )
        self.proposer = self.detector.proposer
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
        detect_one = image_detector(self.detector, meta, self.smallest_side, self.table, roi if spp else None)
        self._keras = keras_reference(self.detector, meta)
        built = serving_endpoints(
            detect_one, self.proposer is not None, int(meta["settings"].max_detections), meta["max_pixels"]
        )
        self.endpoints, self.signatures = built["endpoints"], built["signatures"]

    def reference(self, decoded, boxes_per_image=None):
        """The expected outputs for uint8 images and their unpadded ``[R, 4]``
        proposals (``None``: the RPN's), from the detector's ``SppNetDetector.call``."""
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
                + "reference_boxes(height, width): a grid of windows (export.detector_cases)",
                **({"rpn": proposer.to_dict()} if proposer is not None else {}),
            }
        }


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
