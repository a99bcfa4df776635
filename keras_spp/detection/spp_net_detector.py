"""SPP-net's detector as one Keras model, saved as one ``.keras`` file (in the style
of keras-hub's ``RetinaNetObjectDetector``).

``SppNetDetector(heads, class_names, rpn=None, rpn_config=None, settings=None)``
holds the heads model (``keras_spp.detection.heads.spp_detector``: window features,
fc6, fc7, softmax, SVMs, box regression), the class names, optionally an RPN
(``keras_spp.detection.learned_proposals``: its head model and ``to_dict()``) on the
heads' own conv5, and the test-time ``DetectionSettings``.

``model(images)`` or ``model(images, boxes)``: ``images`` float ``[1, H, W, 3]``, one
image a call (pixels 0..255 for the Table 1 backbones); ``boxes`` float ``[R, 4]``
proposals as ``[y1, x1, y2, x2]`` pixels of that image (selective search's or the
user's). Without ``boxes`` the RPN proposes them (a model without one raises
ValueError); a model with an RPN given ``boxes`` uses those instead. Returns the TF
Object Detection API's outputs, as ``export.detector`` serves them, ``D`` the
settings' ``max_detections``, best first, zeros after ``num_detections``:

* ``detection_boxes`` float32 ``[1, D, 4]``: ``[ymin, xmin, ymax, xmax]`` normalized
  by the image's height and width (0..1);
* ``detection_scores`` float32 ``[1, D]``: softmax probabilities (background
  excluded) or SVM scores, as ``settings.scoring`` says;
* ``detection_classes`` float32 ``[1, D]``: 1-based class ids, ``class_names[c - 1]``
  (``0`` only in padding);
* ``num_detections`` float32 ``[1]``.

``raw_outputs(images, boxes=None)``: ``(boxes [R, 4], {class_probabilities,
svm_scores, box_deltas})``, the network alone, so that several scorings
(``keras_spp.detection.detector.postprocess``) share one run; ``detections(boxes,
outputs, height, width)`` post-processes them as ``call`` does. ``Detector`` runs its
detections through the same network (``NetworkOutputs``).

Both take ``jit_compile``: SPP-net's window pooling under XLA (``True``) or not
(``False``) for this call, whatever the window feature layer's setting (``None``:
that setting; an RPN's windows without XLA). ``export.detector`` serves ``call``
under XLA and verifies it against ``call`` without.

Run eagerly, both go through one ``tf.function`` per entry point and input kind
(boxes given or not), whose signature leaves the image size and the box count free:
one trace each. Inside a caller's ``tf.function`` (or ``model.predict(images)`` of a
model with an RPN) they trace inline.

On JAX and PyTorch the call (and ``raw_outputs``) runs the same chain in
``keras.ops`` (``keras_spp.detection.detector_ops``, ``proposal_ops``), eagerly or
under ``jax.jit``, with the same outputs (within float32 rounding; the per-class NMS
is ``nms_ops``' instead of TensorFlow's op, tests/backends/test_detector_call.py);
``jit_compile`` changes nothing there, and a ``.keras`` file saved on one backend
loads on the others. Post-processing is that chain on TensorFlow too, with
TensorFlow's NMS op, faster there.

Bad input raises ``tf.errors.InvalidArgumentError`` whose message says what was
wrong and what is accepted (``keras_spp.detection.network_outputs``): at the call
when the dtype or shape alone shows it (eagerly, or traced with known shapes), as
``InvalidDetectorInput`` (also a ``ValueError``); otherwise (coordinates, shapes
unknown when traced) when the graph runs, with the same text.

Saving: ``model.save("detector.keras")`` (written aside, then renamed);
``keras.saving.load_model`` or ``load_spp_net_detector`` reads it back. A folder of
``Detector.save`` converts with ``convert_detector_folder(folder, "detector.keras")``.
"""

import dataclasses
import json
import os
import tempfile

import keras
import tensorflow as tf

# Registers the heads' layers, so that a saved model loads in a fresh process.
import keras_spp.detection.heads  # noqa: F401
from keras_spp import folders
from keras_spp.detection.detector import DetectionSettings, Detector
from keras_spp.detection.detector_ops import detection_outputs, padded_detections
from keras_spp.detection.detector_training import DetectorTraining
from keras_spp.detection.heads import roi_features_of
from keras_spp.detection.network_outputs import NetworkOutputs, TracedCalls, on_tensorflow
from keras_spp.models.saving import load_keras_model

CONVERTER = "keras_spp.detection.convert_detector_folder"


@keras.saving.register_keras_serializable(package="keras_spp")
class SppNetDetector(DetectorTraining, keras.Model):
    """SPP-net's detector: images in, detections out (module docstring).

    Args:
      heads: the ``spp_detector`` model (inputs ``image`` and ``boxes``).
      class_names: one per non-background class, in class-id order.
      rpn: ``None``, or the RPN head model (``keras_spp.detection.rpn.rpn_head``).
      rpn_config: with ``rpn``, ``LearnedProposals.to_dict()`` (anchors, scale
        indices, proposal settings); the RPN looks at the heads' own conv5.
      settings: ``DetectionSettings`` or a dict of its fields (``None``: defaults).
      metadata: a JSON-ready dict kept with the model (training facts).

    Training: ``compile(optimizer)``, then ``fit`` on window features
    ``(features [B, D], labels [B])`` or on images with windows
    ``({"image", "boxes"}, labels [n])`` trains fc6-fc8 (and the conv layers made
    trainable) with the softmax's cross-entropy; ``call`` stays inference
    (``keras_spp.detection.detector_training``, with an example).
    """

    def __init__(self, heads, class_names, rpn=None, rpn_config=None, settings=None, metadata=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(heads, keras.Model):
            raise ValueError(
                f"`heads` must be the keras.Model of keras_spp.detection.heads.spp_detector; got {heads!r}."
            )
        roi = roi_features_of(heads)
        class_names = _class_names(class_names, heads)
        if (rpn is None) != (rpn_config is None):
            raise ValueError("`rpn` and `rpn_config` go together: an RPN head and its LearnedProposals.to_dict().")
        self.heads = heads
        self.rpn = rpn
        self.class_names = class_names
        self.settings = _settings(settings)
        # JSON text, not dicts: Keras and TensorFlow wrap dict attributes in trackers.
        self._rpn_config = None if rpn_config is None else json.dumps(rpn_config)
        self._metadata = json.dumps(dict(metadata or {}))
        self._proposer = None
        if rpn is not None:
            from keras_spp.detection.learned_proposals import LearnedProposals

            try:
                self._proposer = LearnedProposals.from_dict(rpn, roi, rpn_config)
            except (KeyError, TypeError, AttributeError) as error:
                raise ValueError(
                    f"`rpn_config` must be LearnedProposals.to_dict() (anchors, scale_indices, settings); got "
                    f"{rpn_config!r:.120} ({type(error).__name__}: {error})."
                ) from error
        self._network = NetworkOutputs(heads, self._proposer)
        self._traced = TracedCalls(self)
        self.built = True  # every part is a built model already

    @classmethod
    def from_detector(cls, detector, settings=None):
        """The model of a ``keras_spp.detection.detector.Detector`` (its layers, not a
        copy: training one trains the other), with its settings unless ``settings``."""
        proposer = detector.proposer
        if proposer is not None and proposer.roi is not roi_features_of(detector.model):
            raise ValueError(
                "the detector's RPN must look at the detector's own window feature layer "
                "(LearnedProposals(head, roi_features_of(model), ...)), so that both use one conv5."
            )
        return cls(
            detector.model,
            detector.class_names,
            rpn=None if proposer is None else proposer.head,
            rpn_config=None if proposer is None else proposer.to_dict(),
            settings=settings or detector.settings,
            metadata=detector.metadata,
            name="spp_net_detector",
        )

    @property
    def proposer(self):
        """The ``LearnedProposals`` of the RPN, or ``None``."""
        return self._proposer

    @property
    def rpn_config(self):
        return None if self._rpn_config is None else json.loads(self._rpn_config)

    @property
    def metadata(self):
        return json.loads(self._metadata)

    def call(self, images, boxes=None, jit_compile=None):
        """The detections (module docstring). ``jit_compile``: the window pooling under
        XLA or not, whatever the window feature layer says (``None``: as it says;
        ``NetworkOutputs.outputs``); not ``keras.Model.jit_compile``, which is ``fit``'s."""
        images, boxes = self._network.checked(images, boxes)
        if on_tensorflow() and tf.executing_eagerly():
            return self._traced("_detections", images, boxes, jit_compile)
        return self._detections(images, boxes, jit_compile)

    def raw_outputs(self, images, boxes=None, jit_compile=None):
        """``(boxes [R, 4], {"class_probabilities": [R, K + 1], "svm_scores": [R, K],
        "box_deltas": [R, 4 K]})``: the windows scored (``boxes``, or the RPN's
        proposals) and the network's outputs for them, before any post-processing
        (``keras_spp.detection.network_outputs``); ``jit_compile`` as ``call``'s."""
        return self._network(images, boxes, jit_compile)

    def detections(self, boxes, outputs, height, width, valid=None):
        """``call``'s outputs from ``raw_outputs``' ``(boxes, outputs)`` of an image of
        ``height`` x ``width``: post-processed with the model's settings
        (``detector_ops``, with TensorFlow's NMS op on TensorFlow). ``valid``: ``[R]``
        bool, the windows that are not padding (``None``: all)."""
        found = padded_detections(outputs, boxes, height, width, self.settings, valid=valid)
        return detection_outputs(*found, height, width, int(self.settings.max_detections))

    def _detections(self, images, boxes=None, jit_compile=None):
        if not on_tensorflow():
            boxes, outputs, valid = self._network.outputs_ops(images, boxes)
            return self.detections(boxes, outputs, int(images.shape[1]), int(images.shape[2]), valid)
        boxes, outputs = self._network.outputs(images, boxes, jit_compile)
        return self.detections(boxes, outputs, tf.shape(images)[1], tf.shape(images)[2])

    def save(self, filepath, overwrite=True, **kwargs):
        """``keras.Model.save`` to a ``.keras`` file, written beside it and renamed into
        place: a failure leaves an earlier file there as it was."""
        filepath = os.path.abspath(os.fspath(filepath))
        if not filepath.endswith(".keras") or kwargs.get("zipped", True) is False:
            raise ValueError(f"an SppNetDetector saves as one .keras file (zipped); got the path {filepath}.")
        if not overwrite and os.path.exists(filepath):
            raise FileExistsError(f"{filepath} exists (overwrite=False).")
        parent, name = os.path.split(filepath)
        os.makedirs(parent, exist_ok=True)
        handle, staging = tempfile.mkstemp(dir=parent, prefix=f".{name}.partial-", suffix=".keras")
        os.close(handle)
        try:
            super().save(staging, overwrite=True, **kwargs)
            os.chmod(staging, 0o666 & ~folders.umask())  # mkstemp's 0600 would follow it into place
            os.replace(staging, filepath)
        finally:
            if os.path.exists(staging):
                os.unlink(staging)

    def get_config(self):
        config = super().get_config()
        config.update(
            heads=keras.saving.serialize_keras_object(self.heads),
            class_names=list(self.class_names),
            rpn=None if self.rpn is None else keras.saving.serialize_keras_object(self.rpn),
            rpn_config=self.rpn_config,
            settings=dataclasses.asdict(self.settings),
            metadata=self.metadata,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["heads"] = keras.saving.deserialize_keras_object(config["heads"])
        if config.get("rpn") is not None:
            config["rpn"] = keras.saving.deserialize_keras_object(config["rpn"])
        return cls(**config)


def _class_names(class_names, heads):
    if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names):
        raise ValueError(f"`class_names` must be a list of strings, one per class; got {class_names!r:.80}.")
    num_classes = heads.get_layer("svm").units
    if len(class_names) != num_classes:
        raise ValueError(f"the model has {num_classes} classes but {len(class_names)} class names were given.")
    return tuple(class_names)


def _settings(settings):
    if settings is None:
        return DetectionSettings()
    if isinstance(settings, DetectionSettings):
        return settings
    if isinstance(settings, dict):
        try:
            return DetectionSettings(**settings)
        except TypeError as error:
            known = ", ".join(f.name for f in dataclasses.fields(DetectionSettings))
            raise ValueError(f"bad `settings` ({error}); accepted: a dict of {known}.") from error
    raise ValueError(f"`settings` must be DetectionSettings, a dict of its fields or None; got {settings!r:.80}.")


def load_spp_net_detector(path):
    """The ``SppNetDetector`` saved in the ``.keras`` file ``path``
    (``keras.saving.load_model`` with errors that say what ``path`` holds instead).

    A detector folder of ``Detector.save`` (``model.keras`` and ``detector.json``) is
    refused with the one call that converts it (``convert_detector_folder``)."""
    path = os.fspath(path)
    folder = path if os.path.isdir(path) else os.path.dirname(path) or "."
    old = os.path.exists(os.path.join(folder, "detector.json"))
    if os.path.isdir(path) or (old and os.path.basename(path) == "model.keras"):
        _refuse_folder(path, folder, old)
    model = load_keras_model(path, "the detector")
    if not isinstance(model, SppNetDetector):
        raise ValueError(
            f"{path} holds a {type(model).__name__} ({model.name!r}), not an SppNetDetector: save one with "
            "SppNetDetector(...).save(path) or SppNetDetector.from_detector(detector).save(path)."
        )
    return model


def _refuse_folder(path, folder, old):
    if old:
        raise ValueError(
            f"{path} is a detector folder of Detector.save (model.keras + detector.json), not an SppNetDetector "
            f"file; convert it once with {CONVERTER}({folder!r}, 'detector.keras') and load that file."
        )
    raise ValueError(f"{path} is a folder; an SppNetDetector is one .keras file (SppNetDetector.save).")


def convert_detector_folder(folder, path):
    """Reads the detector folder ``folder`` (``Detector.load``) and saves it as one
    ``.keras`` file at ``path`` (written aside, then renamed); returns the model."""
    model = SppNetDetector.from_detector(Detector.load(folder))
    model.save(path)
    return model
