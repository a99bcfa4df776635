"""SPP-net detection (the paper's section 4): boxes, proposals, features, heads, SVMs,
NMS, evaluation and the R-CNN baseline.

The public API is ``__all__``: ``from keras_spp.detection import Detector`` and the
like. The names are imported on first use (PEP 562), so that importing the package
loads none of its submodules and a submodule's own imports never go round through
it; the submodules (``keras_spp.detection.heads`` and so on) hold the rest.
"""

import importlib

from keras_spp.tensorflow_only import require_tensorflow_installed

# The submodules import TensorFlow at their top; any of them is imported through here.
require_tensorflow_installed("keras_spp.detection")

# Public name -> the submodule that defines it.
_EXPORTS = {
    # The trained detector and its test-time settings.
    "Detector": "detector",
    "DetectionSettings": "detector",
    "postprocess": "detector",
    "evaluate_detector": "detector",
    # The same detector as one Keras model, saved as one .keras file.
    "SppNetDetector": "spp_net_detector",
    "load_spp_net_detector": "spp_net_detector",
    "convert_detector_folder": "spp_net_detector",
    # Window features and the network.
    "MultiScaleRoiFeatures": "features",
    "WarpedWindowFeatures": "rcnn",
    "spp_detector": "heads",
    "roi_features_of": "heads",
    "PAPER_SCALES": "scales",
    "SINGLE_SCALE": "scales",
    # Proposals: selective search and the region proposal network.
    "selective_search": "proposals",
    "compute_proposals": "proposals",
    "load_precomputed_proposals": "proposals",
    "LearnedProposals": "learned_proposals",
    "ProposalSettings": "learned_proposals",
    "AnchorConfig": "anchors",
    "anchor_grid": "anchors",
    "generate_proposals": "proposal_layer",
    "RpnProposals": "proposal_layer",
    "rpn_head": "rpn",
    "RpnTargetConfig": "rpn",
    "RpnTrainingConfig": "rpn_training",
    "train_rpn": "rpn_training",
    # Training the heads.
    "HeadTrainingConfig": "training",
    "compute_window_features": "training",
    "fine_tune": "training",
    "fit_box_regression": "training",
    "fit_svms": "training",
    # The whole training run, as recipes.train_detector runs it.
    "DetectorTrainingConfig": "pipeline_config",
    "DetectorTrainingResult": "pipeline",
    "train_detector": "pipeline",
    # Boxes, NMS and evaluation.
    "iou_matrix": "boxes",
    "encode_boxes": "boxes",
    "decode_boxes": "boxes",
    "per_class_nms": "nms",
    "box_voting": "nms",
    "evaluate_detections": "evaluation",
    "average_precision": "evaluation",
    "EVALUATION_SETTINGS": "evaluation_settings",
}

__all__ = sorted(_EXPORTS)
# What runs on JAX and PyTorch too: SppNetDetector's call, image to detections, and
# what it is built and loaded with (keras_spp.detection.detector_ops).
EVERY_BACKEND = frozenset(
    {"SppNetDetector", "load_spp_net_detector", "DetectionSettings", "MultiScaleRoiFeatures", "spp_detector"}
)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in EVERY_BACKEND:
        from keras_spp.tensorflow_only import require_tensorflow

        require_tensorflow(f"keras_spp.detection.{name}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # found once, then an ordinary attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
