"""keras_spp.detection.nms_ops.per_class_nms on the current Keras backend, eager and
compiled (padded), against the numpy reference: exactly, ties and order included.
Integer-valued boxes keep every product exact, so a fused multiply-add under a
compiler cannot move an IoU across the threshold."""

import subprocess
import sys

import numpy as np
import pytest

from keras_spp.detection import nms_ops
from tests.backends.conftest import BACKEND, compiled, is_native, numpy
from tests.detection.nms_reference import problem, reference_nms, settings


def assert_same(got, expected):
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(numpy(g), e)


def test_nms_ops_imports_no_tensorflow():
    if BACKEND == "tensorflow":
        pytest.skip("Keras on TensorFlow imports it")
    code = "import sys, keras_spp.detection.nms_ops\nassert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={"KERAS_BACKEND": BACKEND, "PATH": ""})


@pytest.mark.parametrize("seed", range(25))
def test_eager(seed):
    boxes, scores = problem(seed)
    iou_t, score_t, top, per_class = settings(seed)
    got = nms_ops.per_class_nms(boxes, scores, iou_t, score_t, top, per_class)
    assert all(is_native(t) for t in got)
    assert_same(got, reference_nms(boxes, scores, iou_t, score_t, top, per_class))


@pytest.mark.parametrize("seed", [1, 4, 9, 16])
def test_compiled(seed):
    boxes, scores = problem(seed, max_rows=8, max_classes=3)
    iou_t, score_t, top, per_class = settings(seed)
    top = min(top, 6)  # torch.compile unrolls the loop
    expected = reference_nms(boxes, scores, iou_t, score_t, top, per_class)
    run = compiled(lambda b, s: nms_ops.per_class_nms(b, s, iou_t, score_t, top, per_class, padded=True))
    b, s, c, count = (numpy(t) for t in run(boxes, scores))
    assert count == len(expected[1]) and s.shape == (top,)
    assert_same((b[:count], s[:count], c[:count]), expected)


def test_the_detector_shape():
    rng = np.random.default_rng(0)
    boxes = rng.integers(0, 500, (300, 20, 4)).astype(np.float32)
    boxes[..., 2:] = boxes[..., :2] + rng.integers(10, 150, (300, 20, 2)).astype(np.float32)
    scores = rng.random((300, 20)).astype(np.float32)
    assert_same(nms_ops.per_class_nms(boxes, scores, 0.3, 0.05, 100), reference_nms(boxes, scores, 0.3, 0.05, 100))
