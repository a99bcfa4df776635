"""The expectation a detector export is verified against: ``Detector.detect`` of
the Keras model (no XLA), after the same maximum-side rule, its detections laid out
as the served outputs (normalized boxes, 1-based classes, padded rows)."""

import numpy as np
import tensorflow as tf

from export.detector_graph import cap_size


def keras_reference(model, roi, proposer, meta):
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
