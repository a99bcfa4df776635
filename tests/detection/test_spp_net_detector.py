"""``SppNetDetector``: one Keras model from image to detections, saved as one ``.keras`` file."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_spp.detection.detector import DetectionSettings, Detector, evaluate_detector
from keras_spp.detection.spp_net_detector import (
    SppNetDetector,
    convert_detector_folder,
    load_spp_net_detector,
)
from tests.detection.test_detector import tiny_detector

CLASSES = ("a", "b")
BOXES = np.array([[0, 0, 20, 20], [5, 5, 30, 40], [10, 10, 39, 49], [2, 20, 30, 48]], np.float32)


def tiny_rpn_detector(seed=0):
    """``tiny_detector`` with a random RPN on its 96 px scale."""
    from keras_spp.detection.anchors import AnchorConfig
    from keras_spp.detection.learned_proposals import LearnedProposals, ProposalSettings
    from keras_spp.detection.rpn import rpn_head

    detector = tiny_detector(seed, CLASSES)
    roi = detector.model.get_layer("roi_features")
    anchors = AnchorConfig((16.0, 32.0), (1.0,), 16.0)
    head = rpn_head(roi.backbone.output_shape[-1], anchors.per_cell, hidden=8)
    rng = np.random.default_rng(seed)
    for layer in head.layers:
        if layer.weights:
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    proposer = LearnedProposals(head, roi, anchors, (0,), ProposalSettings(200, 20, 0.7, 2.0))
    return Detector(detector.model, CLASSES, proposer=proposer, metadata={"proposals": {"method": "rpn"}})


@pytest.fixture(scope="module")
def detector():
    return tiny_detector(0, CLASSES, DetectionSettings(score_threshold=0.0, max_detections=7))


@pytest.fixture(scope="module")
def rpn_detector():
    return tiny_rpn_detector(0)


def image(height=40, width=50, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (1, height, width, 3)).astype(np.float32)


def numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()}


def expected(detector, pixels, boxes, settings):
    """``Detector.detect`` in the export's layout (tests/export/test_detector_export.padded_outputs)."""
    found, scores, classes = detector.detect(pixels[0], boxes, settings)
    count, d = int(settings.max_detections), len(scores)
    height, width = pixels.shape[1:3]
    out = {
        "detection_boxes": np.zeros((1, count, 4), np.float32),
        "detection_scores": np.zeros((1, count), np.float32),
        "detection_classes": np.zeros((1, count), np.float32),
        "num_detections": np.float32([d]),
    }
    out["detection_boxes"][0, :d] = found / np.float32([height, width, height, width])
    out["detection_scores"][0, :d] = scores
    out["detection_classes"][0, :d] = classes + 1
    return out


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_call_gives_the_detectors_detections_in_the_export_layout(detector):
    model = SppNetDetector.from_detector(detector)
    assert isinstance(model, keras.Model) and model.heads is detector.model
    pixels = image()
    got = numpy(model(pixels, BOXES))
    want = expected(detector, pixels, BOXES, detector.settings)
    assert 0 < want["num_detections"][0] <= 7
    assert_same(got, want)
    # raw_outputs: the windows and the network's outputs, as Detector.outputs gives them.
    boxes, raw = model.raw_outputs(pixels, BOXES)
    np.testing.assert_array_equal(boxes.numpy(), BOXES)
    assert_same(numpy(raw), detector.outputs(pixels[0], BOXES))
    # Other settings, given to the model, are what it applies.
    svm = DetectionSettings("svm", box_regression=False, score_threshold=-1.0, max_detections=3)
    assert_same(
        numpy(SppNetDetector.from_detector(detector, svm)(pixels, BOXES)), expected(detector, pixels, BOXES, svm)
    )


def test_saves_as_one_keras_file_and_loads_with_the_same_detections(detector, tmp_path):
    model = SppNetDetector.from_detector(
        detector, DetectionSettings(nms_iou=0.4, score_threshold=0.0, max_detections=5, vote_iou=0.5)
    )
    pixels = image(44, 37, seed=1)
    want = numpy(model(pixels, BOXES))
    path = tmp_path / "detector.keras"
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["detector.keras"]
    for loaded in (keras.saving.load_model(path), load_spp_net_detector(path)):
        assert isinstance(loaded, SppNetDetector) and loaded.heads is not detector.model
        assert loaded.class_names == CLASSES and loaded.settings == model.settings
        assert loaded.proposer is None and loaded.rpn is None
        assert_same(numpy(loaded(pixels, BOXES)), want)


def test_an_rpn_model_proposes_alone_uses_given_boxes_and_round_trips(rpn_detector, tmp_path):
    model = SppNetDetector.from_detector(rpn_detector)
    pixels = image(64, 80, seed=2)
    want = numpy(model(pixels))
    assert want["num_detections"][0] > 0
    assert_same(want, expected(rpn_detector, pixels, None, rpn_detector.settings))
    # Boxes given: the model scores those instead of its proposals.
    assert_same(numpy(model(pixels, BOXES)), expected(rpn_detector, pixels, BOXES, rpn_detector.settings))
    proposals, _ = model.raw_outputs(pixels)
    np.testing.assert_array_equal(proposals.numpy(), rpn_detector.proposer.propose(tf.constant(pixels))[0].numpy())
    path = tmp_path / "rpn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.rpn_config == rpn_detector.proposer.to_dict() and loaded.metadata == rpn_detector.metadata
    assert loaded.proposer.roi is loaded.heads.get_layer("roi_features")  # one conv5 for both
    assert_same(numpy(loaded(pixels)), want)


def test_window_pooling_under_xla_or_not_and_detections_of_raw_outputs_are_the_call(rpn_detector):
    model = SppNetDetector.from_detector(rpn_detector)
    pixels = image(64, 80, seed=3)
    for boxes in (None, BOXES):
        want = numpy(model(pixels, boxes))
        for jit in (True, False):
            got = numpy(model(pixels, boxes, jit_compile=jit))
            assert sorted(got) == sorted(want) and got["num_detections"] == want["num_detections"]
            for name in want:
                np.testing.assert_allclose(got[name], want[name], atol=1e-5, err_msg=f"{name}, jit_compile={jit}")
        # The call in two halves, as export.detector serves an RPN's images.
        found, raw = model.raw_outputs(pixels, boxes, jit_compile=False)
        assert_same(
            numpy(model.detections(found, raw, *pixels.shape[1:3])), numpy(model(pixels, boxes, jit_compile=False))
        )


def test_without_an_rpn_boxes_are_needed(detector):
    with pytest.raises(ValueError, match="this detector has no RPN"):
        SppNetDetector.from_detector(detector)(image())
    with pytest.raises(ValueError, match="this detector has no RPN"):
        SppNetDetector.from_detector(detector).raw_outputs(image())


IMAGE_MESSAGE = r"`images` must be \[1, H, W, 3\] float RGB pixels \(3 channels\), H and W at least 1"


@pytest.mark.parametrize(
    "shape, message",
    [
        ((40, 50, 3), IMAGE_MESSAGE + r".*got shape \[40, 50, 3\]"),
        ((1, 40, 50, 4), IMAGE_MESSAGE + r".*got shape \[1, 40, 50, 4\]"),
        ((1, 0, 50, 3), IMAGE_MESSAGE + r".*got shape \[1, 0, 50, 3\]"),
        ((2, 40, 50, 3), r"`images` holds a batch of 2 images; the detector takes \[1, H, W, 3\].*once per image"),
    ],
)
def test_bad_images_are_refused_eagerly_and_in_a_graph(detector, shape, message):
    model = SppNetDetector.from_detector(detector)
    pixels = np.zeros(shape, np.float32)
    traced = tf.function(lambda x, b: model(x, b))
    for call in (model, traced, model.raw_outputs):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message) as raised:
            call(pixels, BOXES)
        assert isinstance(raised.value, ValueError)  # known from the shape: at the call
    # Shapes unknown when traced: the graph's assertion, with the same text.
    loose = tf.function(lambda x, b: model(x, b), input_signature=[tf.TensorSpec(None), tf.TensorSpec([None, 4])])
    with pytest.raises(tf.errors.InvalidArgumentError, match=IMAGE_MESSAGE):
        loose(pixels, BOXES)
    with pytest.raises(tf.errors.InvalidArgumentError, match="got dtype string"):
        model(tf.constant([["x"]]), BOXES)


BOXES_MESSAGE = (
    r"`boxes` must be \[R, 4\] float proposals \[y1, x1, y2, x2\] in pixels of the image, finite, of magnitude "
    r"at most 16777216 \(2\^24\).*in rows\] \[1\]"
)


@pytest.mark.parametrize("bad", [[0, 0, 3e38, 3e38], [0, np.nan, 5, 5], [0, 0, np.inf, 5], [0, 0, 2.0**25, 4]])
def test_bad_boxes_are_refused_eagerly_and_in_a_graph(rpn_detector, bad):
    model = SppNetDetector.from_detector(rpn_detector)  # an RPN model uses given boxes, so checks them too
    boxes = np.array([[0, 0, 10, 10], bad], np.float32)
    traced = tf.function(lambda x, b: model(x, b))
    for call in (model, traced, model.raw_outputs):
        with pytest.raises(tf.errors.InvalidArgumentError, match=BOXES_MESSAGE):
            call(image(), boxes)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`boxes` must be \[R, 4\].*got shape \[2, 3\]"):
        model(image(), np.zeros((2, 3), np.float32))


def test_one_trace_per_input_kind_whatever_the_image_size_and_box_count(rpn_detector, caplog):
    model = SppNetDetector.from_detector(rpn_detector)
    rng = np.random.default_rng(3)
    with caplog.at_level("WARNING"):
        for height, width, count in ((40, 50, 7), (64, 33, 19), (90, 120, 1), (40, 50, 0)):
            corner = rng.uniform(0, 20, (count, 2))
            boxes = np.concatenate([corner, corner + rng.uniform(5, 20, (count, 2))], 1).astype(np.float32)
            pixels = image(height, width, seed=count)
            model(pixels, boxes)
            model(pixels.astype(np.float64), boxes)  # cast before the graph: no new trace
            model(pixels)
            model.raw_outputs(pixels, boxes)
            model.raw_outputs(pixels)
    functions = [*model._traced.functions.values(), *model._network.traced.functions.values()]
    assert len(functions) == 4  # detections and raw outputs, each with boxes and without
    assert all(f.experimental_get_tracing_count() == 1 for f in functions)
    assert not [m for m in caplog.messages if "retracing" in m]


def test_an_old_detector_folder_is_refused_naming_its_converter(tmp_path):
    old = tmp_path / "old"
    detector = tiny_detector(1, CLASSES, DetectionSettings(score_threshold=0.0))
    detector.save(old)
    for path in (old, old / "model.keras"):
        with pytest.raises(ValueError, match=r"keras_spp.detection.convert_detector_folder\(.*'detector.keras'\)"):
            load_spp_net_detector(path)
    new = tmp_path / "new.keras"
    converted = convert_detector_folder(old, new)
    assert sorted(os.listdir(tmp_path)) == ["new.keras", "old"]
    loaded = load_spp_net_detector(new)
    assert loaded.settings == detector.settings and loaded.class_names == CLASSES
    pixels = image(seed=4)
    assert_same(numpy(loaded(pixels, BOXES)), expected(detector, pixels, BOXES, detector.settings))
    assert_same(numpy(loaded(pixels, BOXES)), numpy(converted(pixels, BOXES)))
    detector.model.save(tmp_path / "heads.keras")
    with pytest.raises(ValueError, match="holds a Functional .*not an SppNetDetector"):
        load_spp_net_detector(tmp_path / "heads.keras")


def test_an_interrupted_save_leaves_the_earlier_file(detector, tmp_path, monkeypatch):
    path = tmp_path / "detector.keras"
    SppNetDetector.from_detector(detector, DetectionSettings(nms_iou=0.4)).save(path)

    def disk_full(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK")  # a cut-short zip
        raise OSError(28, "No space left on device", str(filepath))

    monkeypatch.setattr(keras.Model, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        SppNetDetector.from_detector(detector, DetectionSettings(nms_iou=0.5)).save(path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["detector.keras"]
    assert load_spp_net_detector(path).settings.nms_iou == 0.4
    with pytest.raises(ValueError, match="one .keras file"):
        SppNetDetector.from_detector(detector).save(tmp_path / "detector.h5")
    with pytest.raises(ValueError, match="one .keras file"):
        SppNetDetector.from_detector(detector).save(tmp_path / "unzipped.keras", zipped=False)
    assert sorted(os.listdir(tmp_path)) == ["detector.keras"]


def test_evaluate_detector_takes_the_model_or_the_detector(detector, tmp_path):
    from PIL import Image

    from keras_spp.data.detection_examples import DetectionExample

    examples, proposals = [], {}
    for i in range(2):
        pixels = image(40, 50, seed=10 + i)[0].astype(np.uint8)
        path = tmp_path / f"{i}.png"
        Image.fromarray(pixels).save(path)
        examples.append(DetectionExample(str(i), str(path), 40, 50, BOXES[i : i + 2], [i, 1 - i], [False, False]))
        proposals[str(i)] = BOXES
    settings = {"softmax": detector.settings, "plain": DetectionSettings(box_regression=False, score_threshold=0.0)}
    want, want_detections = evaluate_detector(detector, examples, proposals, settings)
    got, got_detections = evaluate_detector(SppNetDetector.from_detector(detector), examples, proposals, settings)
    for name in settings:
        assert got[name] == want[name]
        for g, w in zip(got_detections[name], want_detections[name], strict=True):
            for a, b in zip(g, w, strict=True):
                np.testing.assert_array_equal(a, b)


def test_constructor_errors_say_what_is_accepted(detector, rpn_detector):
    heads = detector.model
    with pytest.raises(ValueError, match="2 classes but 3 class names"):
        SppNetDetector(heads, ["a", "b", "c"])
    with pytest.raises(ValueError, match="`class_names` must be a list of strings"):
        SppNetDetector(heads, "ab")
    with pytest.raises(ValueError, match="bad `settings`.*accepted: a dict of scoring"):
        SppNetDetector(heads, CLASSES, settings={"nms": 0.3})
    with pytest.raises(ValueError, match=r"`nms_iou` must be in \(0, 1\]"):
        SppNetDetector(heads, CLASSES, settings={"nms_iou": 2})
    with pytest.raises(ValueError, match="`rpn` and `rpn_config` go together"):
        SppNetDetector(heads, CLASSES, rpn=rpn_detector.proposer.head)
    with pytest.raises(ValueError, match="`rpn_config` must be LearnedProposals.to_dict"):
        SppNetDetector(rpn_detector.model, CLASSES, rpn=rpn_detector.proposer.head, rpn_config={"anchors": {}})
    with pytest.raises(ValueError, match="`heads` must be the keras.Model"):
        SppNetDetector(None, CLASSES)
    # An RPN on another window feature layer than the heads' would pool from another conv5.
    other = tiny_detector(5, CLASSES)
    detector_with_foreign_rpn = Detector(other.model, CLASSES, proposer=rpn_detector.proposer)
    with pytest.raises(ValueError, match="the detector's own window feature layer"):
        SppNetDetector.from_detector(detector_with_foreign_rpn)
