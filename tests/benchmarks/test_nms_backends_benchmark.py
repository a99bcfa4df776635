import numpy as np

from benchmarks import nms_backends


def test_problems_have_the_detector_layout():
    for kind, _ in nms_backends.PROBLEMS:
        boxes, scores = nms_backends.problem(kind, 12)
        assert boxes.shape == (12, nms_backends.CLASSES, 4) and scores.shape == (12, nms_backends.CLASSES)
        assert (boxes[..., 2:] > boxes[..., :2]).all() and np.isfinite(scores).all()
    _, uniform = nms_backends.problem("uniform", 12)
    assert (uniform > nms_backends.SETTINGS["score_threshold"]).all()


def test_every_tensorflow_candidate_gives_the_op_path_detections():
    from keras_spp.detection import nms

    boxes, scores = nms_backends.problem("softmax", 40)
    expected = [t.numpy() for t in nms.per_class_nms(boxes, scores, **nms_backends.SETTINGS)]
    for name, fn in nms_backends.candidates("tensorflow").items():
        got = [np.asarray(t)[: len(expected[1])] for t in fn(boxes, scores)]
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e, err_msg=name)
