"""The detector's network from one image to the scores of its windows: the one chain
that ``Detector`` and ``SppNetDetector`` both run, with the checks of its input.

``NetworkOutputs(heads, proposer)(images, boxes=None)`` -> ``(boxes [R, 4], outputs)``:
``images`` float ``[1, H, W, 3]`` (pixels 0..255 for the Table 1 backbones), one image
a call; ``boxes`` float ``[R, 4]`` proposals as ``[y1, x1, y2, x2]`` pixels of that
image, or ``None`` for the RPN's (``proposer``, a ``LearnedProposals`` on the heads'
own window feature layer, whose conv5 maps the windows are then pooled from).
``outputs``: the heads' ``class_probabilities [R, K + 1]``, ``svm_scores [R, K]`` and
``box_deltas [R, 4 K]`` (``keras_spp.detection.heads``), before any post-processing.

Run eagerly, a call goes through one ``tf.function`` per input kind (boxes given or
not), whose signature leaves the image size and the box count free: one trace each.
Inside a caller's ``tf.function`` it traces inline.

Bad input raises ``tf.errors.InvalidArgumentError`` whose message says what was
wrong and what is accepted: when the dtype or shape alone shows it (eagerly, or
traced with known shapes), at the call, as ``InvalidDetectorInput`` (also a
``ValueError``); otherwise (coordinates; shapes unknown when traced) when the graph
runs, with the same text. On JAX and PyTorch (``outputs_ops``, ``keras.ops``)
every shape is known, so all of it raises at the call, the coordinates' check
eagerly; under ``jax.jit`` a bad box's pooled features are NaN instead.

Each kind of bad input has one message, written here once, which every door of
the detector gives: ``SppNetDetector``'s call eagerly and traced, ``Detector.detect``
(``check_box_values``, the same text from numpy) and the SavedModel's signatures
(``export.detector_graph`` runs ``assert_image_shape`` on its ``image_tensor`` and
``assert_boxes`` on each image's boxes before dropping their padding rows):
``images_refused`` (rank, channels, empty sides), ``BOXES_REFUSED`` (NaN, infinite
or overflowing coordinates), ``NO_RPN`` (no boxes and no RPN).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_spp.detection import detector_ops, proposal_ops
from keras_spp.detection.boxes import MAX_COORDINATE
from keras_spp.detection.heads import roi_features_of

# What an image is, wherever it comes in: the model's images and the served image_tensor.
RGB_PIXELS = "RGB pixels (3 channels), H and W at least 1"
IMAGES_ACCEPTED = f"[1, H, W, 3] float {RGB_PIXELS}: one image a call"
BOXES_ACCEPTED = "[R, 4] float proposals [y1, x1, y2, x2] in pixels of the image"
# Corners of +-3e38 are finite, but their sides (y2 - y1) overflow to inf, and 0 to
# 3e38 gives a regressed box of inf - inf: NaN boxes either way.
BOXES_REFUSED = (
    f"`boxes` must be {BOXES_ACCEPTED}, finite, of magnitude at most {MAX_COORDINATE:.0f} (2^24), where a "
    "side y2 - y1 or a regressed box would overflow float32; got NaN, infinite or larger coordinates in rows"
)
IMAGE_SPEC = tf.TensorSpec([1, None, None, 3], tf.float32)
BOXES_SPEC = tf.TensorSpec([None, 4], tf.float32)
NO_RPN = (
    "this detector has no RPN (it was trained on selective search proposals): pass each image's "
    "proposals, or train one with recipes.train_detector --proposals rpn."
)


class InvalidDetectorInput(tf.errors.InvalidArgumentError, ValueError):
    """Input whose dtype or shape alone shows it is wrong: raised at the call (or while
    tracing), with the text the graph's assertion gives when the shape is only known
    at run time."""

    def __init__(self, node_def=None, op=None, message=None, *args):
        # One argument, the message, too: Keras re-raises a layer's error on JAX and
        # PyTorch as `type(error)(text)`, with `error.args[0]` in the text.
        if isinstance(node_def, str) and op is None and message is None:
            node_def, message = None, node_def
        super().__init__(node_def, op, message, *args)
        self.args = (message,)


def on_tensorflow():
    """Whether Keras runs on TensorFlow: its graphs and ops, else ``keras.ops`` alone."""
    return keras.backend.backend() == "tensorflow"


def refuse(message):
    raise InvalidDetectorInput(None, None, message)


class NetworkOutputs:
    """``(boxes, outputs)`` of the ``spp_detector`` model ``heads`` (module docstring)."""

    def __init__(self, heads, proposer=None):
        self.heads, self.proposer = heads, proposer
        self.traced = TracedCalls(self)

    def __call__(self, images, boxes=None, jit_compile=None):
        images, boxes = self.checked(images, boxes)
        if on_tensorflow() and tf.executing_eagerly():
            return self.traced("outputs", images, boxes, jit_compile)
        return self.outputs(images, boxes, jit_compile)

    def checked(self, images, boxes):
        """``(images, boxes)`` as float32 after the checks of what their dtype and shape
        show (on JAX and PyTorch, whose shapes are always known, every check but the
        coordinates' under ``jax.jit``: ``detector_ops.check_boxes``); ``ValueError``
        for no boxes and no RPN."""
        if boxes is None and self.proposer is None:
            raise ValueError(NO_RPN)
        if not on_tensorflow():
            images = detector_ops.check_images(images, IMAGES_ACCEPTED, refuse, images_refused())
            return images, None if boxes is None else detector_ops.check_boxes(
                boxes, BOXES_ACCEPTED, refuse, BOXES_REFUSED
            )
        return check_images(images), None if boxes is None else check_boxes(boxes)

    def outputs(self, images, boxes=None, jit_compile=None):
        """The graph of a call, after ``checked``: its assertions, then the network.

        ``jit_compile``: SPP-net's window pooling under XLA (``True``) or not
        (``False``), whatever the layer's own setting; ``None``: given boxes go through
        the heads model as saved (the layer's setting), the RPN's windows without XLA.
        R-CNN's window features have no XLA path: there it changes nothing.

        On JAX and PyTorch: ``outputs_ops`` (``jit_compile`` is TensorFlow's and
        changes nothing there); compiled, the RPN's proposals come padded (zero boxes
        past the real ones)."""
        if not on_tensorflow():
            boxes, outputs, _ = self.outputs_ops(images, boxes)
            return boxes, outputs
        images = assert_images(images)
        roi = roi_features_of(self.heads)
        if boxes is None:
            boxes, _, maps = self.proposer.propose(images)
            pooled = roi.pool_windows(images, boxes, bool(jit_compile), maps)
            return boxes, head_outputs(self.heads, pooled)
        boxes = assert_boxes(boxes)
        if jit_compile is None or not hasattr(roi, "pool_windows"):
            return boxes, self.heads({"image": images, "boxes": boxes}, training=False)
        return boxes, head_outputs(self.heads, roi.pool_windows(images, boxes, bool(jit_compile)))

    def outputs_ops(self, images, boxes=None):
        """``outputs`` in ``keras.ops`` for JAX and PyTorch, after ``checked``: the windows
        pooled by ``detector_ops.pool_windows`` (SPP-net's layer only), then the heads.
        Returns ``(boxes, outputs, valid)``. Without boxes, the RPN's proposals
        (``proposal_ops.propose``), padded to ``post_nms_top_n`` rows where their count
        is unknown (compiled): ``valid`` ``[R]`` bool marks the real ones (``None``:
        all are)."""
        roi = roi_features_of(self.heads)
        if not hasattr(roi, "pool_windows"):
            raise NotImplementedError(
                "R-CNN's warped window features (WarpedWindowFeatures) run on the TensorFlow backend only; "
                "SPP-net's MultiScaleRoiFeatures runs on every backend."
            )
        maps, valid = None, None
        if boxes is None:
            boxes, valid, maps = proposal_ops.propose(self.proposer, images)
        pooled = detector_ops.pool_windows(roi, images, boxes, maps)
        return boxes, head_outputs(self.heads, pooled), valid


class TracedCalls:
    """The graphs of an object's eager calls: ``traced(method, images, boxes, jit_compile)``
    runs ``owner.<method>(images, boxes, jit_compile)`` in one ``tf.function`` per
    method, input kind and ``jit_compile``, each with a signature that leaves the image
    size and box count free. Callable objects, not bound methods or lambdas: TensorFlow
    counts the traces of functions with the same code together, so a lambda per
    detector looked like one function retraced at every new detector."""

    def __init__(self, owner):
        self.owner = owner
        self.functions = {}

    def __call__(self, method, images, boxes, jit_compile=None):
        key = (method, boxes is None, jit_compile)
        if key not in self.functions:
            specs = [IMAGE_SPEC] if boxes is None else [IMAGE_SPEC, BOXES_SPEC]
            self.functions[key] = tf.function(_Method(self.owner, method, jit_compile), input_signature=specs)
        return self.functions[key](images) if boxes is None else self.functions[key](images, boxes)


class _Method:
    def __init__(self, owner, name, jit_compile=None):
        self.owner, self.name, self.jit_compile = owner, name, jit_compile

    def __call__(self, images, boxes=None):
        return getattr(self.owner, self.name)(images, boxes, self.jit_compile)


def images_refused(name="images", accepted=IMAGES_ACCEPTED):
    """The text of an image input of the wrong rank, channel count or size, before its shape."""
    return f"`{name}` must be {accepted}; got shape"


def check_images(images):
    """``images`` as float32, refused (``InvalidDetectorInput``) when its dtype or
    known shape is not ``IMAGES_ACCEPTED``."""
    images = tf.convert_to_tensor(images)
    if not (images.dtype.is_floating or images.dtype.is_integer):
        refuse(detector_ops.dtype_refused("images", IMAGES_ACCEPTED, images.dtype.name))
    shape = images.shape
    if shape.rank == 4 and shape[0] is not None and shape[0] > 1:
        refuse(detector_ops.batch_refused(shape[0], IMAGES_ACCEPTED))
    if shape.rank is not None and (
        shape.rank != 4 or shape[0] not in (None, 1) or shape[3] not in (None, 3) or 0 in shape[1:3]
    ):
        refuse(f"{images_refused()} {shape.as_list()}.")
    return tf.cast(images, tf.float32)


def check_boxes(boxes):
    """``boxes`` as float32 ``[R, 4]``, refused when its dtype or known shape is not that."""
    boxes = tf.convert_to_tensor(boxes)
    if not (boxes.dtype.is_floating or boxes.dtype.is_integer):
        refuse(detector_ops.dtype_refused("boxes", BOXES_ACCEPTED, boxes.dtype.name))
    if boxes.shape.rank is not None and (boxes.shape.rank != 2 or boxes.shape[1] not in (None, 4)):
        refuse(f"`boxes` must be {BOXES_ACCEPTED}; got shape {boxes.shape.as_list()}.")
    return tf.cast(boxes, tf.float32)


def assert_images(images):
    """``images`` after asserting the shape ``[1, H >= 1, W >= 1, 3]`` when it runs
    (what the static shape shows is ``check_images``')."""
    return tf.ensure_shape(assert_image_shape(images), [None, None, None, 3])


def assert_image_shape(images, name="images", accepted=IMAGES_ACCEPTED, batch=1):
    """``images`` after asserting, when it runs, 4 dimensions, 3 channels, H and W at
    least 1 and a first dimension of ``batch`` (``None``: any; then an empty batch
    may have empty sides), with the text of ``images_refused(name, accepted)``.

    The served ``image_tensor`` checks itself with it too: a loaded signature takes
    any shape, and only this says what it takes."""
    shape = tf.shape(images)
    # Grappler folds the rank and the sizes the traced shape fixes (a signature's 3
    # channels) to constants; padded with a run-time count of zeros, they stay run time.
    count = tf.size(images, out_type=tf.int32)
    dims = tf.concat([shape, tf.zeros([count - count], tf.int32), tf.ones([4], tf.int32)], 0)[:4]
    first = tf.equal(dims[0], batch) if batch is not None else tf.constant(True)
    sides = (dims[1] > 0) & (dims[2] > 0)
    if batch is None:
        sides |= tf.equal(dims[0], 0)
    ok = tf.equal(tf.size(shape) + count - count, 4) & first & tf.equal(dims[3], 3) & sides
    check = tf.debugging.Assert(ok, [images_refused(name, accepted), shape], summarize=8)
    with tf.control_dependencies([check]):
        return tf.identity(images)


def assert_boxes(boxes):
    """``boxes`` after asserting, when it runs, coordinates of magnitude at most
    ``MAX_COORDINATE`` (False for NaN too): past it a side or a regressed box overflows."""
    bad = ~tf.reduce_all(tf.abs(boxes) <= MAX_COORDINATE, axis=1)
    check = tf.debugging.Assert(
        ~tf.reduce_any(bad),
        [BOXES_REFUSED, tf.where(bad)[:, 0], "first:", tf.boolean_mask(boxes, bad)[:1]],
        summarize=8,
    )
    with tf.control_dependencies([check]):
        return tf.identity(boxes)


def check_box_values(boxes):
    """``boxes`` as a float32 numpy ``[R, 4]`` (a flat array of ``4 R`` too, so that
    ``[]`` is no boxes), refused (``InvalidDetectorInput``) with ``check_boxes``' text
    for another shape and ``assert_boxes``' where a coordinate is NaN, infinite or
    beyond ``MAX_COORDINATE``: ``Detector``'s checks, before any graph."""
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim == 1 and boxes.size % 4 == 0:
        boxes = boxes.reshape(-1, 4)
    check_boxes(boxes)
    bad = ~np.all(np.abs(boxes) <= MAX_COORDINATE, axis=1)
    if bad.any():
        refuse(f"{BOXES_REFUSED} {np.flatnonzero(bad).tolist()}, first: {boxes[bad][:1].tolist()}.")
    return boxes


def head_outputs(heads, pooled):
    """The heads' three outputs for pooled window features ``[R, D]`` (inference: no dropout)."""
    fc7 = heads.get_layer("fc7")(heads.get_layer("fc6")(pooled))
    return {
        "class_probabilities": heads.get_layer("fc8")(fc7),
        "svm_scores": heads.get_layer("svm")(fc7),
        "box_deltas": heads.get_layer("bbox")(pooled),
    }
