"""The detector's serving graph: one image's detections, mapped over a batch, as
the signatures ``export.detector`` documents.

Its inputs' layout is checked first (``export.detector_checks``), each image's boxes
by the model's own assertion (``assert_boxes``); each image is then capped
at the maximum side (``cap_size``), its padding rows dropped (``real_rows``), and
the detector's own ``SppNetDetector.call`` gives its detections (with its window
pooling under XLA where the export allows it), which are renamed and labelled here.
The network and its post-processing exist once, in the model.
"""

import tensorflow as tf

from export import images as image_ops
from export.detector_checks import check_boxes, check_image_tensor, check_scales
from keras_spp.detection.network_outputs import assert_boxes


def image_detector(model, meta, smallest, table, roi=None):
    """``detect_one(image uint8 [H, W, 3], boxes [R, 4] padded or None, input name)``
    -> the padded outputs of one image from the ``SppNetDetector`` ``model``'s call;
    ``boxes=None`` asks its RPN. ``roi``: SPP-net's window feature layer, whose scales
    ``check_scales`` checks (``None``: R-CNN's windows, which have none)."""
    max_side, jit = meta["max_side"], meta["jit"]

    def detect_one(image, boxes, name):
        if boxes is None:
            image, _ = cap_size(image, tf.zeros([0, 4]), max_side)
            image = check_scales(image, tf.zeros([0, 4]), roi, smallest, name, always=model.proposer.scale_indices)
            # The call in two halves: the image is checked at the scales the proposals use.
            boxes, outputs = model.raw_outputs(image[tf.newaxis], None, jit)
            image = check_scales(image, boxes, roi, smallest, name)
            return served_outputs(model.detections(boxes, outputs, tf.shape(image)[0], tf.shape(image)[1]), table)
        # Before the padding goes: a NaN row has no y2 > y1 and would pass for padding.
        boxes = tf.boolean_mask(assert_boxes(boxes), real_rows(boxes))
        image, boxes = cap_size(image, boxes, max_side)
        if roi is not None:
            image = check_scales(image, boxes, roi, smallest, name)
        return served_outputs(model.call(image[tf.newaxis], boxes, jit), table)

    return detect_one


def served_outputs(detections, table):
    """One image's outputs of ``SppNetDetector.call`` (``[1, ...]`` each) as the
    served tuple (``OUTPUT_NAMES``' order), with ``detection_labels`` looked up in
    ``table`` (0-based ids; ``""`` in padding)."""
    classes = detections["detection_classes"][0]
    found = detections["num_detections"][0]
    real = tf.range(tf.shape(classes)[0]) < tf.cast(found, tf.int32)
    labels = tf.where(real, table.lookup(tf.maximum(tf.cast(classes, tf.int64) - 1, 0)), "")
    return detections["detection_boxes"][0], detections["detection_scores"][0], classes, labels, found


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
        boxes = check_boxes(boxes, tf.shape(image_bytes)[0], "image_bytes")

        def one(args):
            encoded, image_boxes = args
            return detect_one(image_ops.decode(encoded, max_pixels), image_boxes, "image_bytes")

        # Fully known per-image output shapes: map_fn returns [0, ...] for an empty batch.
        return outputs(tf.map_fn(one, (image_bytes, boxes), fn_output_signature=signature))

    def images_with_boxes(image_tensor, boxes):
        image_tensor = check_image_tensor(image_tensor)
        boxes = check_boxes(boxes, tf.shape(image_tensor)[0], "image_tensor")
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
        image_tensor = check_image_tensor(image_tensor)
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


def serving_endpoints(detect_one, rpn, count, max_pixels):
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


def real_rows(boxes):
    """``[R]`` bool: rows with ``y2 > y1`` and ``x2 > x1`` (the others are padding)."""
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def cap_size(image, boxes, max_side):
    """The maximum-side rule (``export.detector``'s docstring): ``(float32 image [h, w, 3], boxes [R, 4])``.

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
