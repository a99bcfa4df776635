import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_spp.detection.anchors import AnchorConfig
from keras_spp.detection.features import MultiScaleRoiFeatures
from keras_spp.detection.learned_proposals import LearnedProposals, ProposalSettings
from keras_spp.detection.rpn import rpn_head
from keras_spp.models import backbone
from tests.detection.test_nms import reference_nms

ANCHORS = AnchorConfig(sizes=(24, 48), aspect_ratios=(1.0, 2.0))


@pytest.fixture(scope="module")
def parts():
    keras.utils.set_random_seed(4)
    roi = MultiScaleRoiFeatures(backbone("zf5", width=0.125), scales=(96, 160, 224))
    head = rpn_head(roi.backbone.output_shape[-1], ANCHORS.per_cell, hidden=8)
    # Weights far from the N(0, 0.01) start, so that scores and deltas spread out.
    head.set_weights([np.random.default_rng(0).normal(0, 0.3, w.shape).astype("float32") for w in head.get_weights()])
    image = tf.constant(np.random.default_rng(1).uniform(0, 255, (1, 120, 150, 3)), tf.float32)
    return roi, head, image


def test_several_scales_are_each_scales_proposals_merged_by_nms(parts):
    roi, head, image = parts
    settings = ProposalSettings(pre_nms_top_k=200, post_nms_top_n=25, nms_iou=0.6, min_size=2.0)
    both = LearnedProposals(head, roi, ANCHORS, (0, 2), settings)
    boxes, scores, maps = both.propose(image)
    assert sorted(maps) == [0, 2]
    singles = [LearnedProposals(head, roi, ANCHORS, (i,), settings).propose(image)[:2] for i in (0, 2)]
    pooled_boxes = np.concatenate([b.numpy() for b, _ in singles])
    pooled_scores = np.concatenate([s.numpy() for _, s in singles])
    assert len(pooled_boxes) > settings.post_nms_top_n  # the merge has something to cut
    want_boxes, want_scores, _ = reference_nms(pooled_boxes, pooled_scores[:, None], 0.6, -np.inf, 25)
    np.testing.assert_allclose(boxes.numpy(), want_boxes, atol=1e-4)
    np.testing.assert_allclose(scores.numpy(), want_scores, atol=1e-6)


def test_proposals_from_given_maps_are_the_proposals_of_the_image(parts):
    roi, head, image = parts
    proposer = LearnedProposals(head, roi, ANCHORS, (1, 2), ProposalSettings(post_nms_top_n=30))
    maps, sizes, factors = proposer.feature_maps(image)
    again = proposer.propose_from_maps(maps, sizes, factors)
    first = proposer.propose(image)
    np.testing.assert_array_equal(again[0].numpy(), first[0].numpy())
    # Sizes are those of the resized image the map came from, in pixels.
    assert [int(v) for v in sizes[2]] == [224, 280]


@pytest.mark.parametrize(
    "bad, says",
    [
        (dict(pre_nms_top_k=0), "integers >= 1"),
        (dict(post_nms_top_n=2.5), "integers >= 1"),
        (dict(nms_iou=0.0), r"in \(0, 1\]"),
        (dict(nms_iou=float("nan")), r"in \(0, 1\]"),
        (dict(min_size=-1.0), "pixels >= 0"),
        (dict(min_size="4"), "pixels >= 0"),
        (dict(min_size=np.float32("nan")), "pixels >= 0"),
    ],
)
def test_bad_settings_are_refused_when_made(bad, says):
    with pytest.raises(ValueError, match=says):
        ProposalSettings(**bad)


@pytest.mark.parametrize("indices", [(), (3,), (-1,)])
def test_scale_indices_must_index_the_detector_scales(parts, indices):
    roi, head, _ = parts
    with pytest.raises(ValueError, match="must index the detector's scales"):
        LearnedProposals(head, roi, ANCHORS, indices)
