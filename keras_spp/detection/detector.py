"""Detection with a trained detector model: scoring, box regression, per-class NMS.

``postprocess`` is ``keras_spp.detection.detector_ops``' chain in ``keras.ops`` with
TensorFlow's NMS op on TensorFlow (the SavedModel export runs it in its graph);
``Detector`` bundles the Keras model with its class names and test-time settings,
saved as ``model.keras`` plus ``detector.json`` in one folder. The same detector as
one Keras model, saved as one ``.keras`` file, is
``keras_spp.detection.spp_net_detector.SppNetDetector.from_detector(detector)``.
"""

import dataclasses
import json
import logging
import os
import shutil
import time

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

# Registers the detector's layers, so Detector.load works in a fresh process.
import keras_spp.detection.heads  # noqa: F401
from keras_spp import folders
from keras_spp.data.voc import load_image
from keras_spp.detection.detector_ops import padded_detections, trimmed
from keras_spp.detection.evaluation import evaluate_detections
from keras_spp.detection.heads import roi_features_of
from keras_spp.detection.network_outputs import NO_RPN, NetworkOutputs, check_box_values
from keras_spp.models.saving import load_keras_model
from keras_spp.tensorflow_only import require_tensorflow
from keras_spp.validation import is_number

SCORINGS = ("softmax", "svm")
RPN_FILE = "rpn.keras"
log = logging.getLogger(__name__)


@dataclasses.dataclass
class DetectionSettings:
    """Test-time choices (the paper: SVM or softmax scores, NMS at 0.3).

    ``vote_iou``: if set, box voting after NMS (``keras_spp.detection.nms.box_voting``,
    beyond the paper): each detection moves to the mean of its class's windows that
    overlap it at least this much, weighted by their class probabilities.
    """

    scoring: str = "softmax"
    box_regression: bool = True
    nms_iou: float = 0.3
    score_threshold: float = 0.05
    max_detections: int = 100
    vote_iou: float | None = None

    def __post_init__(self):
        if self.scoring not in SCORINGS:
            raise ValueError(f"`scoring` must be one of {SCORINGS}; got {self.scoring!r}.")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"`nms_iou` must be in (0, 1]; got {self.nms_iou}.")
        if int(self.max_detections) < 0:
            raise ValueError(f"`max_detections` must be >= 0; got {self.max_detections}.")
        if self.vote_iou is not None and not (is_number(self.vote_iou) and 0.0 <= self.vote_iou <= 1.0):
            raise ValueError(f"`vote_iou` must be None (no box voting) or in [0, 1]; got {self.vote_iou!r}.")


def postprocess(outputs, boxes, image_height, image_width, settings=DetectionSettings()):
    """Detector outputs for ``boxes [R, 4]`` -> ``(boxes [D, 4], scores [D], classes [D])``.

    Scores are the softmax probabilities without background, or the SVM scores;
    with ``box_regression`` each class's window is moved by its regressor, then
    clipped to the image; then per-class NMS, ``score_threshold`` and the
    ``max_detections`` best, and box voting if ``settings.vote_iou`` is set. Classes
    are 0-based indices into the class names. The chain is ``keras.ops``
    (``detector_ops.padded_detections``, which ``SppNetDetector`` runs on every
    backend); on TensorFlow with TensorFlow's NMS op, and ``D`` then dynamic in graphs.
    """
    return trimmed(padded_detections(outputs, boxes, image_height, image_width, settings))


_COMPILED = {}


def compiled_postprocess(settings):
    """``postprocess`` with ``settings`` fixed, in a graph: a callable ``(outputs, boxes,
    height, width)`` built once per distinct settings. Run eagerly, the per-class NMS
    loop took 44 ms an image here (300 windows, 10 classes), in a graph 1.6 ms."""
    key = dataclasses.astuple(settings)
    if key not in _COMPILED:
        _COMPILED[key] = _PostprocessGraphs(settings)
    return _COMPILED[key]


class _PostprocessGraphs:
    """One ``tf.function`` per layout of the model's outputs, each with a signature
    that leaves the window count free: the count differs in nearly every image, and
    shape relaxation alone once generalised the boxes to an unknown rank."""

    def __init__(self, settings):
        self.settings = settings
        self._graphs = {}

    def __call__(self, outputs, boxes, height, width):
        specs = {k: tf.TensorSpec([None, *v.shape[1:]], v.dtype) for k, v in outputs.items()}
        layout = tuple(sorted((k, tuple(s.shape), s.dtype.name) for k, s in specs.items()))
        if layout not in self._graphs:
            self._graphs[layout] = tf.function(
                _Postprocess(self.settings),
                input_signature=[
                    specs,
                    tf.TensorSpec([None, 4], tf.float32),
                    tf.TensorSpec([], tf.int32),
                    tf.TensorSpec([], tf.int32),
                ],
            )
        boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
        return self._graphs[layout](dict(outputs), boxes, tf.cast(height, tf.int32), tf.cast(width, tf.int32))


class _Postprocess:
    """``postprocess`` with its settings fixed (a lambda per settings made six
    evaluation settings look like one function retraced six times)."""

    def __init__(self, settings):
        self.settings = settings

    def __call__(self, outputs, boxes, height, width):
        return postprocess(outputs, boxes, height, width, self.settings)


class Detector:
    """A trained detector: ``detect(image, proposals)`` on numpy images.

    ``model``: the Keras model of ``keras_spp.detection.heads.spp_detector``;
    ``class_names``: one per non-background class.
    """

    def __init__(self, model, class_names, settings=None, metadata=None, proposer=None):
        require_tensorflow("Detector")
        num_classes = model.get_layer("svm").units
        if len(class_names) != num_classes:
            raise ValueError(f"the model has {num_classes} classes but {len(class_names)} class names were given.")
        self.model = model
        self.class_names = tuple(class_names)
        self.settings = settings or DetectionSettings()
        self.metadata = dict(metadata or {})
        # ``keras_spp.detection.learned_proposals.LearnedProposals``: detect(image) alone.
        self.proposer = proposer
        # The one chain from image to network outputs, SppNetDetector's too.
        self._network = NetworkOutputs(model, proposer)

    def raw_outputs(self, image, proposals=None):
        """``(boxes [R, 4], outputs)`` as tensors for an ``[H, W, 3]`` image: the windows
        scored (``proposals``, or the RPN's for ``None``) and the network's outputs for
        them (``keras_spp.detection.network_outputs``), before any post-processing."""
        image = _as_image(image)
        if proposals is None:
            if self.proposer is None:
                raise ValueError(NO_RPN)
        else:
            proposals = tf.constant(check_box_values(proposals))
        if self._network.proposer is not self.proposer:  # a proposer set after __init__
            self._network = NetworkOutputs(self.model, self.proposer)
        return self._network(tf.constant(image[None]), proposals)

    def outputs(self, image, proposals):
        """Raw model outputs (numpy) for an ``[H, W, 3]`` image and ``[R, 4]`` proposals."""
        _, out = self.raw_outputs(image, check_box_values(proposals))
        return {k: v.numpy() for k, v in out.items()}

    def detect(self, image, proposals=None, settings=None):
        """``(boxes [D, 4] y1 x1 y2 x2 px, scores [D], classes [D] 0-based)`` as numpy.

        ``proposals``: ``[R, 4]`` boxes; ``None`` asks the detector's RPN for them
        (a detector without one raises ValueError)."""
        settings = settings or self.settings
        image = _as_image(image)
        proposals, out = self.raw_outputs(image, proposals)
        boxes, scores, classes = compiled_postprocess(settings)(out, proposals, image.shape[0], image.shape[1])
        return boxes.numpy(), scores.numpy(), classes.numpy()

    def save(self, directory):
        """Writes ``model.keras``, ``detector.json`` (and ``rpn.keras`` with an RPN) into
        the folder ``directory``, whole or not at all: written beside it, then renamed
        into place (``keras_spp.folders``), so a failure leaves an earlier detector
        there as it was. ``directory`` must not hold other files (they would be lost)."""
        directory = os.path.abspath(os.fspath(directory))
        _check_save_target(directory)
        stored = {
            "class_names": list(self.class_names),
            "settings": dataclasses.asdict(self.settings),
            "metadata": self.metadata,
        }
        if self.proposer is not None:
            stored["rpn"] = self.proposer.to_dict()
        # Before any slow write: metadata that JSON cannot hold would otherwise fail last.
        text = json.dumps(stored, indent=2)
        staging = folders.staging_folder(directory)
        try:
            self.model.save(os.path.join(staging, MODEL_FILE))
            if self.proposer is not None:
                self.proposer.head.save(os.path.join(staging, RPN_FILE))
            with open(os.path.join(staging, META_FILE), "w", encoding="utf-8") as f:
                f.write(text)
            folders.replace_folder(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def load(cls, path):
        """From a folder written by ``save`` (or the path of its ``model.keras``).

        Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the
        file for a ``detector.json`` that is not what ``save`` writes."""
        path = os.fspath(path)
        directory = path if os.path.isdir(path) else os.path.dirname(path)
        meta_path = os.path.join(directory, META_FILE)
        model_path = os.path.join(directory, MODEL_FILE)
        for needed in (meta_path, model_path):
            if not os.path.exists(needed):
                raise FileNotFoundError(f"{needed} not found: a detector folder holds model.keras and detector.json.")
        meta, settings = _read_detector_json(meta_path)
        model = load_keras_model(model_path, "the detector's model")
        proposer = load_proposer(directory, meta.get("rpn"), model)
        try:
            return cls(model, meta["class_names"], settings, meta.get("metadata"), proposer)
        except ValueError as error:
            raise ValueError(f"{meta_path} does not match {model_path}: {error}") from error


MODEL_FILE, META_FILE = "model.keras", "detector.json"
_SAVED_FILES = {MODEL_FILE, META_FILE, RPN_FILE}


def _check_save_target(directory):
    """A ``ValueError`` before anything is written if saving would destroy something
    that is not a saved detector (the folder is replaced as a whole)."""
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise ValueError(f"Cannot save a detector to {directory}: it exists and is not a folder.")
    if os.path.isdir(directory):
        others = sorted(set(os.listdir(directory)) - _SAVED_FILES)
        if others:
            raise ValueError(
                f"Cannot save a detector to {directory}: it holds other files ({', '.join(others[:5])}), which "
                "saving would remove; save into a new or empty folder, or one that holds only a saved detector."
            )


def _read_detector_json(path):
    """``(the stored dict, DetectionSettings)`` of a ``detector.json``; ``ValueError`` naming it if corrupt."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except ValueError as error:  # also UnicodeDecodeError
        raise ValueError(
            f"{path} is not valid JSON ({error}): the detector folder is damaged (an interrupted save by an "
            "older version?); save the detector again."
        ) from error
    names = meta.get("class_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"{path} is not a detector's metadata: it needs 'class_names', a list of strings (and 'settings'); "
            f"got {type(meta).__name__} {str(meta)[:80]!r}."
        )
    if not isinstance(meta.get("metadata") or {}, dict):
        raise ValueError(f"{path}: 'metadata' must be an object; got {meta['metadata']!r:.80}.")
    try:
        settings = DetectionSettings(**meta.get("settings", {}))
    except (TypeError, ValueError) as error:
        known = ", ".join(f.name for f in dataclasses.fields(DetectionSettings))
        raise ValueError(f"{path}: bad 'settings' ({error}); accepted: an object with {known}.") from error
    return meta, settings


def load_proposer(directory, stored, model):
    """The ``LearnedProposals`` of a detector folder (``None`` when ``stored``, the
    ``"rpn"`` entry of its ``detector.json``, is ``None``), on ``model``'s own window
    feature layer so that the RPN and the windows share one conv5."""
    if stored is None:
        return None
    from keras_spp.detection.learned_proposals import LearnedProposals

    rpn_path = os.path.join(directory, RPN_FILE)
    if not os.path.exists(rpn_path):
        raise FileNotFoundError(f"{rpn_path} not found: detector.json names an RPN, whose head is saved there.")
    head = load_keras_model(rpn_path, "the detector's RPN")
    try:
        return LearnedProposals.from_dict(head, roi_features_of(model), stored)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(
            f"The 'rpn' entry of {os.path.join(directory, META_FILE)} is not what Detector.save writes "
            f"({type(error).__name__}: {error})."
        ) from error


def _as_image(image):
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an image [H, W, 3] (or [H, W]); got shape {image.shape}.")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"the image is empty: shape {image.shape}.")
    return image.astype(np.float32)


def evaluate_detector(detector, examples, proposals, settings_by_name, desc="evaluate"):
    """mAP of one trained detector under several test-time settings.

    ``detector``: a ``Detector`` or an ``SppNetDetector``. The network runs once per
    image (``raw_outputs``); each ``DetectionSettings`` in
    ``settings_by_name`` then post-processes the same outputs. Unreadable images
    count as images with no detections (their objects are missed), with a warning.
    Returns ``{name: evaluate_detections(...) result}`` and, under ``"seconds_per_image"``,
    the mean network time.
    """
    detections = {name: [] for name in settings_by_name}
    ground_truths = []
    seconds = []
    for example in tqdm(examples, desc=desc, unit="img"):
        ground_truths.append((example.boxes, example.labels, example.difficult))
        try:
            image = load_image(example.image_path)
        except (ValueError, OSError) as error:
            log.warning("no detections for %s: %s", example.image_id, error)
            for name in settings_by_name:
                detections[name].append(_no_detections())
            continue
        start = time.perf_counter()
        boxes_in, out = _raw_outputs(detector, image, proposals[example.image_id])
        seconds.append(time.perf_counter() - start)
        for name, settings in settings_by_name.items():
            boxes, scores, classes = compiled_postprocess(settings)(out, boxes_in, image.shape[0], image.shape[1])
            detections[name].append((boxes.numpy(), scores.numpy(), classes.numpy()))
    results = {
        name: evaluate_detections(dets, ground_truths, len(detector.class_names), class_names=detector.class_names)
        for name, dets in detections.items()
    }
    results["seconds_per_image"] = float(np.mean(seconds)) if seconds else float("nan")
    return results, detections


def _raw_outputs(detector, image, boxes):
    """``raw_outputs`` of a ``Detector`` or an ``SppNetDetector`` for one ``[H, W, 3]`` image."""
    if isinstance(detector, Detector):
        return detector.raw_outputs(image, boxes)
    return detector.raw_outputs(tf.constant(_as_image(image)[None]), tf.constant(check_box_values(boxes)))


def _no_detections():
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
