"""Each kind of bad input has one message (``keras_spp.detection.network_outputs``),
and every door of the detector gives it: the ``SppNetDetector`` eagerly, inside a
``tf.function`` (traced with the input's shapes, and with shapes unknown, where the
graph's assertion refuses), ``Detector.detect`` (boxes) and the SavedModel loaded with
``tf.saved_model.load``, through its signatures (an ``InvalidArgumentError``).

The matrix, for the tiny detector of ``test_detector_export`` exported once:

* boxes with NaN, +inf, -inf, corners of +-3e38 (a width that overflows), 0 to
  3e38 (a regressed box of inf - inf), beyond 2^24: ``BOXES_REFUSED``, row ``[1]``,
  at every door and both boxes signatures (``serving_default``, ``detect_images``);
* images of rank 3 or 5, with 1 or 4 channels, with an empty side: the model's
  ``images_refused()`` and the served ``image_tensor``'s share ``RGB_PIXELS`` and
  the shape, at every door but ``Detector.detect`` (its images are ``[H, W, 3]``
  arrays, not the model's input). ``image_bytes`` cannot carry them: every decoded
  image is ``[H, W, 3]``. A float ``image_tensor`` cannot reach the graph: the
  signature's dtype refuses it (``test_detector_export``).
* no boxes to a detector without an RPN: ``NO_RPN`` from the model and
  ``Detector.detect``; the SavedModel of such a detector has no signature without
  ``boxes``, so a request cannot leave them out.
* boxes given to a detector with an RPN are not bad input: its call documents that
  it scores them instead of its proposals, and its export serves them as
  ``with_boxes`` (``test_rpn_detector_export``).
"""

import re

import numpy as np
import pytest
import tensorflow as tf

from export import saved_model
from export.detector_checks import TENSOR_ACCEPTED
from keras_spp.detection.network_outputs import BOXES_REFUSED, NO_RPN, RGB_PIXELS, images_refused
from keras_spp.detection.spp_net_detector import SppNetDetector
from tests.export.conftest import encode, photo
from tests.export.test_detector_export import tiny_detector

GOOD = [5.0, 5.0, 40.0, 40.0]
BAD_BOXES = {
    "nan": [0, np.nan, 40, 40],
    "+inf": [0, 0, np.inf, 40],
    "-inf": [-np.inf, 0, 40, 40],
    "+-3e38": [-3e38, -3e38, 3e38, 3e38],
    "0 to 3e38": [0, 0, 3e38, 3e38],
    "beyond 2^24": [0, 0, 2.0**25, 40],
}
BAD_IMAGES = {  # the served image_tensor's shape; the model gets it as float32
    "rank 3": (60, 60, 3),
    "rank 5": (1, 1, 60, 60, 3),
    "1 channel": (1, 60, 60, 1),
    "4 channels": (1, 60, 60, 4),
    "no rows": (1, 0, 60, 3),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``(SppNetDetector, Detector, loaded SavedModel)`` of one tiny detector."""
    root = tmp_path_factory.mktemp("bad-input")
    detector = tiny_detector(str(root / "detector"))
    out = saved_model.export(str(root / "detector"), "detector", str(root / "served" / "1"))
    return SppNetDetector.from_detector(detector), detector, tf.saved_model.load(out)


def model_doors(model):
    """The model's doors, by name: each a function of ``(images, boxes)``."""
    loose = [tf.TensorSpec(None, tf.float32), tf.TensorSpec([None, 4], tf.float32)]
    return {
        "eager": model,
        "tf.function": tf.function(lambda x, b: model(x, b)),
        "tf.function, shapes unknown": tf.function(lambda x, b: model(x, b), input_signature=loose),
    }


def refusal(call, *args, **kwargs):
    """The text of the ``InvalidArgumentError`` that ``call`` raises."""
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        call(*args, **kwargs)
    return raised.value.message


@pytest.mark.parametrize("bad", list(BAD_BOXES))
def test_bad_boxes_give_one_message_at_every_door(exported, bad):
    model, detector, loaded = exported
    boxes = np.array([GOOD, BAD_BOXES[bad]], np.float32)
    pixels = photo(60, 60, 13)
    got = {name: refusal(door, pixels[None].astype(np.float32), boxes) for name, door in model_doors(model).items()}
    got["Detector.detect"] = refusal(detector.detect, pixels, boxes)
    got["served image_bytes"] = refusal(
        loaded.signatures["serving_default"], image_bytes=tf.constant([encode(pixels)]), boxes=tf.constant(boxes[None])
    )
    got["served image_tensor"] = refusal(
        loaded.signatures["detect_images"], image_tensor=tf.constant(pixels[None]), boxes=tf.constant(boxes[None])
    )
    for door, message in got.items():
        assert BOXES_REFUSED in message and "[1]" in message.split(BOXES_REFUSED)[1], (door, message)


@pytest.mark.parametrize("bad", list(BAD_IMAGES))
def test_bad_images_give_one_message_at_every_door(exported, bad):
    model, _, loaded = exported
    shape = BAD_IMAGES[bad]
    boxes = np.array([GOOD], np.float32)
    pixels = np.zeros(shape, np.float32)
    got = {name: refusal(door, pixels, boxes) for name, door in model_doors(model).items()}
    served = refusal(
        loaded.signatures["detect_images"],
        image_tensor=tf.zeros(shape, tf.uint8),
        boxes=tf.constant(np.tile(boxes, (shape[0], 1, 1))),  # one array of boxes per item of the batch
    )
    digits = r"\D+".join(str(n) for n in shape)
    for door, message in got.items():
        assert images_refused() in message and RGB_PIXELS in message, (door, message)
        assert _has_shape(message, digits), (door, message)
    assert images_refused("image_tensor", TENSOR_ACCEPTED) in served and RGB_PIXELS in served, served
    assert _has_shape(served, digits), served


def _has_shape(message, digits):
    """Whether ``message`` ends in the shape, as the graph prints it or as a list."""
    return re.search(r"got shape\W+" + digits + r"\W", message) is not None


def test_no_boxes_and_no_rpn_give_one_message_and_no_signature_leaves_boxes_out(exported):
    model, detector, loaded = exported
    pixels = photo(60, 60, 13)
    for call in (model, tf.function(lambda x: model(x)), model.raw_outputs):
        with pytest.raises(ValueError, match=re.escape(NO_RPN)):
            call(pixels[None].astype(np.float32))
    with pytest.raises(ValueError, match=re.escape(NO_RPN)):
        detector.detect(pixels)
    for name, signature in loaded.signatures.items():
        assert "boxes" in signature.structured_input_signature[1], name
