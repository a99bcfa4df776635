"""What the detector's serving graph refuses, as ``tf.debugging.Assert``s whose
messages name the input and what was wrong (``export.detector``'s "Bad input").

Only what is about serving is checked here: the requests' layout (a batch of
images, one array of boxes each) and the image sizes at the detector's scales.
What the model takes is the model's to say, once: ``image_tensor`` is checked by
its image assertion and each image's boxes by its box assertion, with their text
(``keras_spp.detection.network_outputs``).

Each check returns its input under a control dependency on the assertion, so the
graph cannot use the value without running the check.
"""

import tensorflow as tf

from export import images as image_ops
from keras_spp.detection.network_outputs import RGB_PIXELS, assert_image_shape

TENSOR_ACCEPTED = f"[N, H, W, 3] uint8 {RGB_PIXELS}: a batch of images of one size"


def check_boxes(boxes, batch, images_name):
    """``boxes`` after asserting the request's layout: ``[N, R, 4]``, one ``[R, 4]``
    array per image. Their coordinates are the model's to check
    (``network_outputs.assert_boxes``, run per image by ``detector_graph``)."""
    boxes = image_ops.check_rank(boxes, 3, "boxes", "[N, R, 4]: one [R, 4] array of [y1, x1, y2, x2] pixels per image")
    shape = tf.shape(boxes)
    check = tf.debugging.Assert(
        tf.equal(shape[0], batch),
        [
            f"boxes: its first dimension must be the number of images in {images_name} (one [R, 4] array of "
            "proposals per image, padded with all-zero rows to a common R); got boxes of shape",
            shape,
            "for this many images:",
            batch,
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(boxes)


def check_image_tensor(images):
    """``images`` after the model's own image assertion, for a batch of any size
    (its text: ``network_outputs.images_refused``, naming ``image_tensor``)."""
    checked = assert_image_shape(images, "image_tensor", TENSOR_ACCEPTED, batch=None)
    # TensorFlow's own run-time shape check, should the one above ever be folded away.
    return tf.ensure_shape(checked, [None, None, None, 3])


def check_scales(image, boxes, roi, smallest, name, always=()):
    """``image`` after asserting that at every scale some box is pooled at (and at the
    scales ``always``, an RPN's), the resized image has at least ``smallest`` pixels
    per side (the backbone's minimum)."""
    from keras_spp.detection import scales as scales_lib

    h, w = tf.shape(image)[0], tf.shape(image)[1]
    factors = scales_lib.resize_factors(h, w, roi.scales, roi.max_side)
    sizes = tf.stack([scales_lib.resized_size(h, w, factors[i]) for i in range(len(roi.scales))])  # [S, 2]
    chosen = scales_lib.choose_scales(boxes, factors, roi.window_size)
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
