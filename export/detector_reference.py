"""The expectation a detector export is verified against: the detector's own
``SppNetDetector.call`` (its window pooling without XLA), after the same maximum-side
rule, with the served ``detection_labels`` beside its outputs."""

import numpy as np
import tensorflow as tf

from export.detector_graph import cap_size


def keras_reference(model, meta):
    """``reference(decoded, boxes_per_image)``: the expected outputs for uint8 images
    and their unpadded ``[R, 4]`` proposals (``None``: the RPN's), from the
    ``SppNetDetector`` ``model``'s call (no XLA) after the max-side rule."""
    max_side, count = meta["max_side"], int(model.settings.max_detections)

    def reference(decoded, boxes_per_image=None):
        rows = []
        for image, boxes in zip(decoded, boxes_per_image or [None] * len(decoded), strict=True):
            if boxes is not None:
                boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
                boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
            capped, capped_boxes = cap_size(
                tf.constant(image), tf.constant(np.zeros((0, 4), np.float32) if boxes is None else boxes), max_side
            )
            out = model(capped[tf.newaxis], None if boxes is None else capped_boxes, jit_compile=False)
            rows.append(labelled({name: value[0].numpy() for name, value in out.items()}, model.class_names))
        return stack_outputs(rows, count)

    return reference


def labelled(outputs, labels):
    """One image's outputs (numpy) with ``detection_labels``: the names of its 1-based
    classes, ``""`` in padding."""
    names = np.full(len(outputs["detection_classes"]), "", dtype=object)
    found = int(outputs["num_detections"])
    names[:found] = [labels[int(c) - 1] for c in outputs["detection_classes"][:found]]
    return {**outputs, "detection_labels": names}


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
