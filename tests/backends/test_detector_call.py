"""``SppNetDetector``'s call, image to detections, on the current Keras backend against
TensorFlow's: the same ``.keras`` file, the same inputs, outputs within 1e-4.

A child process on TensorFlow builds two tiny detectors with RPNs, saves them and
writes its outputs (``write_reference``); this process loads the files and calls
them. Detector ``one_scale`` (96 px, enlarging the 40 x 50 image: plain bilinear,
softmax scores, box voting) and ``two_scales`` (32 and 96 px: the 32 px scale
shrinks it, so antialiased; SVM scores, context features, the RPN on both scales,
merged by one more NMS). Inputs: given boxes, zero boxes, none (the RPN's). On JAX
the same calls under ``jax.jit`` too; ``torch.compile`` is not tried (the NMS loop
of ``max_detections`` steps unrolls), nor is it on TensorFlow, whose call is its
``tf.function`` already.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.backends.conftest import BACKEND, is_native, numpy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOXES = np.array([[0, 0, 20, 20], [5, 5, 30, 40], [10, 10, 39, 49], [2, 20, 30, 48], [0, 0, 40, 50]], np.float32)
DETECTORS = ("one_scale", "two_scales")
INPUTS = ("boxes", "no boxes", "rpn")
TOLERANCE = 1e-4


def image():
    return np.random.default_rng(0).uniform(0, 255, (1, 40, 50, 3)).astype(np.float32)


def inputs(kind):
    """The call's arguments for an input kind of ``INPUTS``."""
    if kind == "boxes":
        return (image(), BOXES)
    if kind == "no boxes":
        return (image(), np.zeros((0, 4), np.float32))
    return (image(),)


def build(name):
    """A tiny ``SppNetDetector`` with a random RPN (TensorFlow; ``write_reference``)."""
    import keras

    from keras_spp.detection.anchors import AnchorConfig
    from keras_spp.detection.detector import DetectionSettings
    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.detection.heads import spp_detector
    from keras_spp.detection.learned_proposals import LearnedProposals, ProposalSettings
    from keras_spp.detection.rpn import rpn_head
    from keras_spp.detection.spp_net_detector import SppNetDetector
    from keras_spp.models import backbone

    keras.utils.set_random_seed(0)
    two = name == "two_scales"
    roi = MultiScaleRoiFeatures(
        backbone("zf5", width=0.125),
        scales=(32, 96) if two else (96,),
        levels=(2, 1),
        window_size=24 if two else 48,
        context=2.0 if two else None,
        name="roi_features",
    )
    heads = spp_detector(roi, 2, fc_units=8)
    rng = np.random.default_rng(1)
    for layer in ("svm", "bbox"):  # nonzero SVMs and regressors (they start at zero)
        heads.get_layer(layer).set_weights(
            [rng.normal(0, 0.2, w.shape).astype("float32") for w in heads.get_layer(layer).get_weights()]
        )
    anchors = AnchorConfig((16.0, 32.0), (1.0, 2.0) if two else (1.0,), 16.0)
    head = rpn_head(roi.backbone.output_shape[-1], anchors.per_cell, hidden=8)
    for layer in head.layers:
        if layer.weights:
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    proposer = LearnedProposals(head, roi, anchors, (0, 1) if two else (0,), ProposalSettings(200, 20, 0.7, 2.0))
    settings = (
        DetectionSettings(scoring="svm", score_threshold=-1.0, max_detections=9)
        if two
        else DetectionSettings(score_threshold=0.0, max_detections=7, vote_iou=0.5)
    )
    return SppNetDetector(heads, ["a", "b"], head, proposer.to_dict(), settings, name=name)


def write_reference(folder):
    """Saves each of ``DETECTORS`` as ``<name>.keras`` and its outputs for each of
    ``INPUTS`` in ``reference.npz``: run on TensorFlow."""
    outputs = {}
    for name in DETECTORS:
        model = build(name)
        model.save(os.path.join(folder, f"{name}.keras"))
        for kind in INPUTS:
            for key, value in model(*inputs(kind)).items():
                outputs[f"{name}/{kind}/{key}"] = value.numpy()
    staging = os.path.join(folder, "reference.partial.npz")
    np.savez(staging, **outputs)
    os.replace(staging, os.path.join(folder, "reference.npz"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``(folder of the .keras files, {name/kind/output: array})`` from TensorFlow."""
    folder = str(tmp_path_factory.mktemp("detector-call"))
    code = f"from tests.backends.test_detector_call import write_reference; write_reference({folder!r})"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, capture_output=True)
    with np.load(os.path.join(folder, "reference.npz")) as stored:
        return folder, dict(stored)


@pytest.fixture(scope="module")
def models(reference):
    from keras_spp.detection.spp_net_detector import load_spp_net_detector

    return {name: load_spp_net_detector(os.path.join(reference[0], f"{name}.keras")) for name in DETECTORS}


def assert_close(got, expected, name, kind):
    assert sorted(got) == sorted(k.split("/")[-1] for k in expected if k.startswith(f"{name}/{kind}/"))
    for key, value in got.items():
        want = expected[f"{name}/{kind}/{key}"]
        value = numpy(value)
        assert value.shape == want.shape and value.dtype == want.dtype, (key, value.shape, want.shape)
        if key in ("detection_classes", "num_detections"):
            np.testing.assert_array_equal(value, want, err_msg=f"{name}, {kind}: {key}")
        else:
            np.testing.assert_allclose(value, want, rtol=0, atol=TOLERANCE, err_msg=f"{name}, {kind}: {key}")


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.parametrize("kind", INPUTS)
def test_the_call_gives_tensorflows_detections(reference, models, name, kind):
    got = models[name](*inputs(kind))
    assert all(is_native(v) for v in got.values())
    assert_close(got, reference[1], name, kind)
    found = int(numpy(got["num_detections"])[0])
    assert (kind == "no boxes") == (found == 0)


@pytest.mark.parametrize("name", DETECTORS)
def test_under_jax_jit(reference, models, name):
    if BACKEND != "jax":
        pytest.skip("jax.jit is JAX's; TensorFlow's call is a tf.function already, torch.compile unrolls the NMS loop")
    import jax

    model = models[name]
    with_boxes = jax.jit(lambda images, boxes: model(images, boxes))
    proposals = jax.jit(lambda images: model(images))
    for kind in INPUTS:
        got = with_boxes(*inputs(kind)) if kind != "rpn" else proposals(*inputs(kind))
        assert_close(got, reference[1], name, kind)


def test_bad_input_gives_network_outputs_messages(models):
    if BACKEND == "tensorflow":
        pytest.skip("TensorFlow's doors are tests/export/test_bad_input_everywhere.py's")
    from keras_spp.detection.network_outputs import BOXES_REFUSED, NO_RPN, images_refused
    from keras_spp.detection.spp_net_detector import SppNetDetector

    model = models["one_scale"]
    bad = np.array([[5, 5, 40, 40], [0, np.nan, 40, 40]], np.float32)
    with pytest.raises(ValueError, match=re.escape(BOXES_REFUSED) + r" \[1\]"):
        model(image(), bad)
    for shape in ((40, 50, 3), (1, 40, 50, 4), (1, 0, 50, 3), (2, 40, 50, 3)):
        with pytest.raises(ValueError, match=r"`images` (must be|holds a batch)"):
            model(np.zeros(shape, np.float32), BOXES)
    with pytest.raises(ValueError, match=re.escape(images_refused())):
        model(np.zeros((1, 40, 50, 1), np.float32), BOXES)
    with pytest.raises(ValueError, match=r"`boxes` must be .* got shape \[5, 3\]"):
        model(image(), BOXES[:, :3])
    without_rpn = SppNetDetector(model.heads, model.class_names, settings=model.settings)
    with pytest.raises(ValueError, match=re.escape(NO_RPN)):
        without_rpn(image())
