"""The detector's serving graph: one image's detections, mapped over a batch, as
the signatures ``export.detector`` documents.

Its inputs are checked first (``export.detector_checks``); each image is then capped
at the maximum side (``cap_size``), its padding rows dropped (``real_rows``), its
windows pooled (under XLA where the export allows it: ``window_features``) and
scored, regressed and suppressed as ``keras_spp.detection.detector.postprocess``
does, and its detections padded to ``max_detections``.
"""

import tensorflow as tf

from export import images as image_ops
from export.detector_checks import check_boxes, check_image_tensor, check_scales


def image_detector(model, roi, proposer, meta, smallest, table):
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
            image = check_scales(image, tf.zeros([0, 4]), roi, smallest, name, always=proposer.scale_indices)
            pixels = tf.cast(image[tf.newaxis], tf.float32)
            boxes, _, maps = proposer.propose(pixels)
            image = check_scales(image, boxes, roi, smallest, name)
            outputs = head(roi.pool_windows(pixels, boxes, meta["jit"], maps), training=False)
        else:
            boxes = tf.boolean_mask(boxes, real_rows(boxes))
            image, boxes = cap_size(image, boxes, max_side)
            if spp:
                image = check_scales(image, boxes, roi, smallest, name)
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
