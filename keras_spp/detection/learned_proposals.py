"""Learned proposals: an RPN head on the detector's own conv5, at one or several of its
scales, so that the conv5 the proposals come from is the conv5 the windows are
pooled from (``MultiScaleRoiFeatures.pool_windows(..., feature_maps=...)``).

``LearnedProposals.propose(image)`` (TensorFlow, dynamic image size) returns
``(boxes [K, 4], scores [K], feature_maps)``: proposals as ``[y1, x1, y2, x2]``
pixels of the image, best first, and ``{scale index: conv5}`` for reuse. With
several scales, each scale's proposals (``generate_proposals``) are merged by one
more NMS at the same IoU and cut to ``post_nms_top_n``. The steps are
``keras_spp.detection.proposal_ops``', written once for every backend; here they
run with TensorFlow's NMS kernels and dynamic image sizes.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_spp.detection import proposal_ops
from keras_spp.detection import scales as scales_lib
from keras_spp.detection.anchors import AnchorConfig
from keras_spp.detection.proposal_layer import tensorflow_nms


@dataclasses.dataclass(frozen=True)
class ProposalSettings:
    """``generate_proposals``' settings; ``min_size`` in pixels of the original image."""

    pre_nms_top_k: int = 6000
    post_nms_top_n: int = 300
    nms_iou: float = 0.7
    min_size: float = 4.0

    def __post_init__(self):
        # At construction, not at the first image: stored settings may come from JSON.
        proposal_ops.check_settings(self.pre_nms_top_k, self.post_nms_top_n, self.nms_iou, self.min_size)


class LearnedProposals:
    """An RPN head (``keras_spp.detection.rpn.rpn_head``) on ``roi_features``' backbone.

    ``scale_indices``: which of ``roi_features.scales`` the RPN looks at.
    """

    def __init__(self, head, roi_features, anchors=AnchorConfig(), scale_indices=(0,), settings=ProposalSettings()):
        scale_indices = tuple(int(i) for i in scale_indices)
        if not scale_indices or any(not 0 <= i < len(roi_features.scales) for i in scale_indices):
            raise ValueError(
                f"`scale_indices` must index the detector's scales {roi_features.scales}; got {scale_indices}."
            )
        channels = roi_features.backbone.output_shape[-1]
        if head.input_shape[-1] != channels:
            raise ValueError(f"the RPN head takes {head.input_shape[-1]} channels, the backbone gives {channels}.")
        self.head = head
        self.roi = roi_features
        self.anchors = anchors
        self.scale_indices = scale_indices
        self.settings = settings

    @property
    def scales(self):
        return tuple(self.roi.scales[i] for i in self.scale_indices)

    def propose(self, image, settings=None):
        """``(boxes [K, 4], scores [K], {scale index: conv5 [1, h, w, C]})`` for ``image``
        float ``[1, H, W, 3]`` (the backbone's input range)."""
        maps, sizes, factors = self.feature_maps(image)
        boxes, scores = self.propose_from_maps(maps, sizes, factors, settings)
        return boxes, scores, maps

    def feature_maps(self, image):
        """The backbone's part: ``({i: conv5}, {i: (height, width)}, {i: factor})`` for
        each of the RPN's scale indices ``i``, sizes those of the resized image."""
        image = tf.convert_to_tensor(image, self.roi.compute_dtype)
        height, width = tf.shape(image)[1], tf.shape(image)[2]
        all_factors = scales_lib.resize_factors(height, width, self.roi.scales, self.roi.max_side)
        maps, sizes, factors = {}, {}, {}
        for i in self.scale_indices:
            factors[i] = all_factors[i]
            resized = self.roi.resized(image, factors[i], height, width)
            maps[i] = self.roi.backbone(resized, training=False)
            sizes[i] = (tf.shape(resized)[1], tf.shape(resized)[2])
        return maps, sizes, factors

    def propose_from_maps(self, maps, sizes, factors, settings=None):
        """The RPN's part after ``feature_maps``: ``(boxes [K, 4], scores [K])`` in pixels
        of the original image, each scale's proposals merged by one more NMS
        (``proposal_ops``' steps with TensorFlow's NMS kernels)."""
        settings = settings or self.settings
        found = [
            proposal_ops.proposals_of_map(self, maps[i], *sizes[i], factors[i], settings, tensorflow_nms)
            for i in self.scale_indices
        ]
        boxes, scores, _ = proposal_ops.merged(found, settings, tensorflow_nms)
        return boxes, scores

    def to_dict(self):
        return {
            "anchors": self.anchors.to_dict(),
            "scale_indices": list(self.scale_indices),
            "settings": dataclasses.asdict(self.settings),
        }

    @classmethod
    def from_dict(cls, head, roi_features, stored):
        return cls(
            head,
            roi_features,
            AnchorConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored["anchors"].items()}),
            stored["scale_indices"],
            ProposalSettings(**stored["settings"]),
        )

    def proposals_for(self, examples, load_image, settings=None, desc="rpn proposals"):
        """``{image_id: boxes}`` (numpy) for examples with ``image_path``; seconds per image
        under ``"seconds"`` of the returned dict's attribute."""
        import time

        from tqdm.auto import tqdm

        fn = self._propose_fn(settings or self.settings)
        found, seconds = {}, []
        for example in tqdm(examples, desc=desc, unit="img"):
            try:
                image = load_image(example.image_path)
            except ValueError:
                found[example.image_id] = np.zeros((0, 4), np.float32)
                continue
            start = time.perf_counter()
            boxes = fn(tf.constant(np.asarray(image, np.float32)[None]))
            found[example.image_id] = boxes.numpy()
            seconds.append(time.perf_counter() - start)
        return found, float(np.mean(seconds)) if seconds else float("nan")

    def _propose_fn(self, settings):
        return tf.function(
            lambda image: self.propose(image, settings)[0],
            input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)],
        )


def load_head(path):
    return keras.saving.load_model(path)
