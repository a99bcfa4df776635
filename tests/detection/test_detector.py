import dataclasses
import json
import os
import stat

import numpy as np
import pytest
import tensorflow as tf

from keras_spp import folders
from keras_spp.detection.detector import DetectionSettings, postprocess


def _outputs(rng, rows, classes):
    logits = rng.normal(size=(rows, classes + 1)).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return {
        "class_probabilities": probabilities,
        "svm_scores": rng.normal(size=(rows, classes)).astype(np.float32),
        "box_deltas": rng.normal(scale=0.1, size=(rows, 4 * classes)).astype(np.float32),
    }


@pytest.mark.parametrize("scoring", ["softmax", "svm"])
@pytest.mark.parametrize("box_regression", [False, True])
def test_voting_moves_the_plain_detections_by_class_probabilities(scoring, box_regression):
    rng = np.random.default_rng(0)
    centres = rng.uniform(20, 80, size=(40, 2))
    proposals = np.concatenate([centres - 10, centres + 10], 1).astype(np.float32)
    outputs = _outputs(rng, 40, 3)
    plain = DetectionSettings(scoring, box_regression, score_threshold=-10.0)
    voted = DetectionSettings(scoring, box_regression, score_threshold=-10.0, vote_iou=0.5)
    boxes, scores, classes = postprocess(outputs, proposals, 100, 100, plain)
    got = postprocess(outputs, proposals, 100, 100, voted)
    np.testing.assert_array_equal(got[1], scores)
    np.testing.assert_array_equal(got[2], classes)
    # the candidates NMS chose from, as postprocess makes them
    per_class = tf.clip_by_value(_decoded(proposals, outputs, box_regression), 0.0, 100.0)
    expected = reference_voting(boxes, classes, per_class.numpy(), outputs["class_probabilities"][:, 1:], 0.5)
    np.testing.assert_allclose(got[0], expected, rtol=1e-5)
    assert not np.allclose(got[0], boxes)  # windows overlap: some box moved


def reference_iou(a, b):
    y1, x1 = max(a[0], b[0]), max(a[1], b[1])
    y2, x2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(y2 - y1, 0.0) * max(x2 - x1, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_voting(boxes, classes, candidates, weights, iou_threshold):
    """Box voting from its definition: each kept box becomes the mean of its class's
    candidates ``[R, K, 4]`` with IoU ``>= iou_threshold``, weighted by their weight of
    that class; a box without such a candidate stays."""
    out = []
    for box, c in zip(np.asarray(boxes, np.float64), np.asarray(classes)):
        total, summed = 0.0, np.zeros(4)
        for r in range(len(candidates)):
            candidate, weight = np.asarray(candidates[r, c], np.float64), max(float(weights[r, c]), 0.0)
            if weight > 0 and reference_iou(box, candidate) >= iou_threshold:
                total += weight
                summed += weight * candidate
        out.append(summed / total if total > 0 else box)
    return np.array(out).reshape(-1, 4)


def _decoded(proposals, outputs, box_regression):
    from keras_spp.detection.boxes import decode_boxes

    if box_regression:
        return decode_boxes(proposals, outputs["box_deltas"])
    return tf.tile(proposals[:, None], [1, 3, 1])


@pytest.mark.parametrize("value", [-0.1, 1.5, "0.5", True])
def test_bad_vote_iou(value):
    with pytest.raises(ValueError, match="`vote_iou` must be None"):
        DetectionSettings(vote_iou=value)


def test_compiled_postprocess_is_postprocess_in_a_graph_built_once_per_settings():
    from keras_spp.detection.detector import DetectionSettings, compiled_postprocess, postprocess

    rng = np.random.default_rng(7)
    corner = rng.uniform(0, 80, (40, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 30, (40, 2))], 1).astype("float32")
    probabilities = rng.dirichlet(np.full(4, 0.3), 40).astype("float32")
    outputs = {
        "class_probabilities": tf.constant(probabilities),
        "box_deltas": tf.constant(rng.normal(0, 0.1, (40, 3, 4)).astype("float32")),
        "svm_scores": tf.constant(rng.normal(0, 1, (40, 3)).astype("float32")),
    }
    for settings in (DetectionSettings(), DetectionSettings("svm", vote_iou=0.5, score_threshold=-1.0)):
        fn = compiled_postprocess(settings)
        assert compiled_postprocess(DetectionSettings(**dataclasses.asdict(settings))) is fn
        for rows in (40, 13, 0):  # other box counts reuse the graph
            got = fn(outputs_rows(outputs, rows), tf.constant(boxes[:rows]), tf.constant(100), tf.constant(120))
            want = postprocess(outputs_rows(outputs, rows), boxes[:rows], 100, 120, settings)
            for g, w in zip(got, want):
                np.testing.assert_allclose(g.numpy(), w.numpy(), atol=1e-6)
    assert compiled_postprocess(DetectionSettings(nms_iou=0.4)) is not compiled_postprocess(DetectionSettings())


def outputs_rows(outputs, rows):
    return {k: v[:rows] for k, v in outputs.items()}


def tiny_detector(seed, class_names=("a", "b"), settings=None):
    import keras

    from keras_spp.detection.detector import Detector
    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.detection.heads import spp_detector
    from keras_spp.models import backbone

    keras.utils.set_random_seed(seed)
    roi = MultiScaleRoiFeatures(
        backbone("zf5", width=0.125), scales=(96,), levels=(2, 1), window_size=48, name="roi_features"
    )
    return Detector(spp_detector(roi, len(class_names), fc_units=8), class_names, settings)


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.model.get_weights(), b.model.get_weights(), strict=True))


def test_a_save_interrupted_while_writing_detector_json_leaves_the_old_detector(tmp_path, monkeypatch):
    from keras_spp.detection import detector as detector_module
    from keras_spp.detection.detector import Detector

    folder = tmp_path / "detector"
    old = tiny_detector(1, settings=DetectionSettings(nms_iou=0.4))
    old.save(folder)
    new = tiny_detector(2, settings=DetectionSettings(nms_iou=0.5))
    real_open = open

    def disk_full(path, mode="r", *args, **kwargs):
        if str(path).endswith("detector.json") and "w" in mode:
            real_open(path, mode, *args, **kwargs).close()  # truncated, as a full disk leaves it
            raise OSError(28, "No space left on device", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(detector_module, "open", disk_full, raising=False)
    with pytest.raises(OSError, match="No space left"):
        new.save(folder)
    monkeypatch.undo()
    loaded = Detector.load(folder)
    assert loaded.settings.nms_iou == 0.4 and same_weights(loaded, old)
    assert sorted(os.listdir(tmp_path)) == ["detector"]  # no staging folder left behind
    new.save(folder)  # and a save that succeeds replaces it whole
    loaded = Detector.load(folder)
    assert loaded.settings.nms_iou == 0.5 and same_weights(loaded, new)
    assert sorted(os.listdir(tmp_path)) == ["detector"]
    assert sorted(os.listdir(folder)) == ["detector.json", "model.keras"]
    assert stat.S_IMODE(os.stat(folder).st_mode) == folders.folder_mode()


def test_load_names_a_corrupt_detector_json_and_what_it_needs(tmp_path):
    from keras_spp.detection.detector import Detector

    folder = tmp_path / "detector"
    tiny_detector(1).save(folder)
    meta = folder / "detector.json"
    good = json.loads(meta.read_text())
    bad = {
        "": "not valid JSON",
        "{": "not valid JSON",
        b"\xff\xfe": "not valid JSON",
        "[]": "needs 'class_names'",
        json.dumps({"settings": {}}): "needs 'class_names'",
        json.dumps({**good, "settings": {"nms": 0.3}}): "bad 'settings'.*accepted: an object with scoring",
        json.dumps({**good, "settings": {"nms_iou": 2}}): r"bad 'settings'.*nms_iou.*\(0, 1\]",
        json.dumps({**good, "class_names": ["a", "b", "c"]}): "does not match.*3 class names",
        json.dumps({**good, "metadata": [1]}): "'metadata' must be an object",
        json.dumps({**good, "rpn": {"anchors": {}}}): "rpn.keras not found",
    }
    for text, message in bad.items():
        meta.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises((ValueError, FileNotFoundError), match=message) as raised:
            Detector.load(folder)
        assert str(folder) in str(raised.value)


def test_save_refuses_a_folder_holding_other_files_before_writing(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds other files \(notes.txt\)"):
        tiny_detector(1).save(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        tiny_detector(1).save(tmp_path / "notes.txt")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


@pytest.mark.parametrize(
    "bad", [[0, 0, 3e38, 3e38], [-3e38, 0, 3e38, 10], [0, np.nan, 5, 5], [0, 0, np.inf, 5], [0, 0, 2.0**25, 4]]
)
def test_detect_refuses_proposals_that_overflow(bad):
    detector = tiny_detector(0)
    image = np.zeros((40, 50, 3), np.uint8)
    with pytest.raises(ValueError, match=r"finite, of magnitude at most 16777216.*in rows \[1\]"):
        detector.detect(image, np.array([[0, 0, 10, 10], bad], np.float32))
    with pytest.raises(ValueError, match=r"must be \[R, 4\]"):
        detector.detect(image, np.zeros((2, 3)))
    # Within the bound, large but finite boxes give finite detections.
    boxes, scores, _ = detector.detect(image, np.array([[0, 0, 10, 10], [0, 0, 2.0**23, 2.0**23]], np.float32))
    assert np.isfinite(boxes).all() and np.isfinite(scores).all()


def test_detection_traces_once_per_settings_and_output_layout(caplog):
    from keras_spp.detection.detector import DetectionSettings, compiled_postprocess

    detector = tiny_detector(0)
    rng = np.random.default_rng(3)
    every = [
        DetectionSettings(scoring, b, vote_iou=v)
        for scoring in ("softmax", "svm")
        for b in (True, False)
        for v in (None, 0.5)
    ]
    with caplog.at_level("WARNING"):
        for height, width, count in ((40, 50, 7), (64, 33, 19), (90, 120, 1), (40, 50, 0)):
            image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            corner = rng.uniform(0, 20, (count, 2))
            boxes = np.concatenate([corner, corner + rng.uniform(5, 20, (count, 2))], 1)
            for settings in every:
                detector.detect(image, boxes, settings)
    # Images of other sizes and window counts reuse each graph: one trace per settings
    # and layout of the outputs (other tests' detectors may have added other layouts).
    for settings in every:
        graphs = compiled_postprocess(settings)._graphs.values()
        assert graphs and all(graph.experimental_get_tracing_count() == 1 for graph in graphs)
    assert not [m for m in caplog.messages if "retracing" in m]
