"""What the detector's serving graph refuses, as ``tf.debugging.Assert``s whose
messages name the input and what was wrong (``export.detector``'s "Bad input").

Each check returns its input under a control dependency on the assertion, so the
graph cannot use the value without running the check.
"""

import tensorflow as tf

from export import images as image_ops
from keras_spp.detection.boxes import MAX_COORDINATE


def check_boxes(boxes, batch, images_name):
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


def check_image_tensor(images):
    images = image_ops.check_rank(images, 4, "image_tensor", "[N, height, width, 3] uint8 RGB")
    shape = tf.shape(images)
    check = tf.debugging.Assert(
        tf.logical_or(tf.equal(shape[0], 0), tf.logical_and(shape[1] > 0, shape[2] > 0)),
        ["image_tensor: height and width must be at least 1; got the shape", shape],
    )
    with tf.control_dependencies([check]):
        return tf.identity(images)


def check_scales(image, boxes, roi, smallest, name, always=()):
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
