"""The "detector" kind of export.saved_model: a tiny random SPP-net detector exported once."""

import base64
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from export import client, detector_cases, detector_graph, saved_model, serving_check, verify
from export import detector as detector_kind
from keras_spp.data.voc import decode_image_bytes
from keras_spp.detection.features import bucket_size
from tests.export.conftest import encode, fake_rest_server, photo

CLASSES = ["a", "b", "c"]
ATOL = 1e-4  # on normalized boxes and scores, as the export's reference states
OUTPUTS = {
    "detection_boxes": (100, 4),
    "detection_scores": (100,),
    "detection_classes": (100,),
    "detection_labels": (100,),
    "num_detections": (),
}


def tiny_detector(folder, seed=3, context=None):
    """ZF-5 at 1/8 width, one scale of 160 px, random heads with spread-out scores."""
    from keras_spp.detection.detector import Detector
    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.detection.heads import spp_detector
    from keras_spp.models import backbone

    keras.utils.set_random_seed(seed)
    roi = MultiScaleRoiFeatures(
        backbone("zf5", width=0.125), scales=(160,), levels=(2, 1), window_size=64, context=context, name="roi_features"
    )
    model = spp_detector(roi, len(CLASSES), fc_units=16)
    spread_heads(model, roi, np.random.default_rng(seed))
    detector = Detector(model, CLASSES)
    detector.save(folder)
    return detector


def spread_heads(model, roi, rng):
    """Random fc8, SVM and box heads (fc_units 16, three classes) with spread-out scores."""
    from keras_spp.detection.heads import set_linear

    # fc8 at N(0, 0.01) gives near-uniform softmax scores; N(0, 1) spreads them out.
    model.get_layer("fc8").set_weights([rng.normal(0, 1, (16, 4)).astype("float32"), np.zeros(4, "float32")])
    set_linear(model, "svm", rng.normal(0, 0.5, (16, 3)), rng.normal(0, 0.1, 3))
    set_linear(model, "bbox", rng.normal(0, 0.01, (roi.output_dim, 12)), np.zeros(12))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``(export_dir, Keras Detector, loaded SavedModel)``, the export made from the folder."""
    root = tmp_path_factory.mktemp("detector-export")
    keras_detector = tiny_detector(str(root / "detector"))
    out = saved_model.export(str(root / "detector"), "detector", str(root / "served" / "1"))
    return out, keras_detector, tf.saved_model.load(out)


def serve(loaded, images, boxes, signature="serving_default"):
    fn = loaded.signatures[signature]
    boxes = np.asarray(boxes, np.float32)
    boxes = tf.constant(boxes if boxes.ndim == 3 else boxes.reshape(len(images), -1, 4))
    if signature == "serving_default":
        out = fn(image_bytes=tf.constant(images, tf.string), boxes=boxes)
    else:
        out = fn(
            image_tensor=tf.constant(np.asarray(images, np.uint8).reshape(len(images), *np.shape(images)[1:])),
            boxes=boxes,
        )
    return {k: v.numpy() for k, v in out.items()}


def keras_outputs(keras_detector, image, boxes, settings=None, count=100):
    """What the export must answer for one uint8 image, from ``Detector.detect``."""
    found, scores, classes = keras_detector.detect(image, boxes, settings)
    return padded_outputs(found, scores, classes, image.shape[:2], count, CLASSES)


def assert_same(got, want, i=0):
    """Image ``i`` of served outputs against one image's expected outputs."""
    n = int(want["num_detections"])
    assert got["num_detections"][i] == n and n > 0
    np.testing.assert_allclose(got["detection_boxes"][i], want["detection_boxes"], atol=ATOL)
    np.testing.assert_allclose(got["detection_scores"][i], want["detection_scores"], atol=ATOL)
    np.testing.assert_array_equal(got["detection_classes"][i], want["detection_classes"])
    assert [s.decode() for s in got["detection_labels"][i]] == list(want["detection_labels"])


def some_boxes(height, width, count, seed):
    """``count`` random proposals inside the image, at least 8 px a side."""
    rng = np.random.default_rng(seed)
    y1 = rng.uniform(0, height - 8, count)
    x1 = rng.uniform(0, width - 8, count)
    y2 = np.minimum(height, y1 + rng.uniform(8, height, count))
    x2 = np.minimum(width, x1 + rng.uniform(8, width, count))
    return np.round(np.stack([y1, x1, y2, x2], 1)).astype(np.float32)


def test_writes_tf_servings_layout_with_the_label_map_and_warmup(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    out, _, _ = exported
    assert os.listdir(os.path.dirname(out)) == ["1"]
    with open(os.path.join(out, "assets", "labels.txt"), encoding="utf-8") as f:
        assert f.read().splitlines() == CLASSES
    requests = []
    for record in tf.data.TFRecordDataset(os.path.join(out, "assets.extra", "tf_serving_warmup_requests")):
        requests.append(prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request)
    assert len(requests) == 4  # one per reference image size
    for request in requests:
        assert request.model_spec.signature_name == "serving_default"
        assert tf.make_ndarray(request.inputs["boxes"]).shape == (1, 121, 4)
        assert len(request.inputs["image_bytes"].string_val) == 1


def test_verify_saved_model_cli_and_a_tensorflow_only_child(exported):
    out, _, _ = exported
    report = verify.verify(out)
    assert report["ok"], verify.summary(report)
    outputs = {
        "detection_boxes": ["DT_FLOAT", [-1, 100, 4]],
        "detection_scores": ["DT_FLOAT", [-1, 100]],
        "detection_classes": ["DT_FLOAT", [-1, 100]],
        "detection_labels": ["DT_STRING", [-1, 100]],
        "num_detections": ["DT_FLOAT", [-1]],
    }
    shown = report["signatures"]
    assert shown["serving_default"]["inputs"] == {
        "image_bytes": ["DT_STRING", [-1]],
        "boxes": ["DT_FLOAT", [-1, -1, 4]],
    }
    assert shown["detect_images"]["inputs"] == {
        "image_tensor": ["DT_UINT8", [-1, -1, -1, 3]],
        "boxes": ["DT_FLOAT", [-1, -1, 4]],
    }
    assert shown["serving_default"]["outputs"] == shown["detect_images"]["outputs"] == outputs
    check = report["serving_check"]
    assert check["kind"] == "detector" and check["modules"]["keras_spp"] is False
    assert check["device_placements"] == [] and check["xla_compiled_calls"] > 0
    for loader in ("tf1_session", "tf2_load"):
        rows = {row["case"].split(" (")[0].split(";")[0]: row for row in check["loaders"][loader]}
        assert all(row["ok"] for row in rows.values()), rows
        sizes = rows["images of several sizes, JPEG and PNG, in one batch"]["details"]
        assert sizes["detection_boxes"]["max_abs_diff"] <= ATOL and sizes["detection_scores"]["max_abs_diff"] <= ATOL
        assert sizes["detection_classes"]["different"] == 0
        assert "an image above the maximum side" in rows and "an image too elongated for the detector" in rows
    assert "PASSED" in verify.summary(report)


def test_three_sizes_in_one_batch_match_the_keras_detector(exported):
    _, keras_detector, loaded = exported
    images = [photo(90, 140, 1), photo(200, 120, 2), photo(64, 64, 3)]
    encoded = [encode(images[0], "JPEG", quality=95), encode(images[1]), encode(images[2])]
    decoded = [decode_image_bytes(e) for e in encoded]  # JPEG is lossy: its pixels, as training reads them
    boxes = [some_boxes(*image.shape[:2], count, seed) for image, count, seed in zip(images, (40, 25, 12), (4, 5, 6))]
    got = serve(loaded, encoded, client.pad_boxes(boxes))
    assert {k: v.shape[1:] for k, v in got.items()} == OUTPUTS and got["num_detections"].shape == (3,)
    for i, (image, b) in enumerate(zip(decoded, boxes, strict=True)):
        want = keras_outputs(keras_detector, image, b)
        assert_same(got, want, i)
        n = int(want["num_detections"])
        # Beyond num_detections: zeros, and no label.
        assert not got["detection_boxes"][i, n:].any() and not got["detection_classes"][i, n:].any()
        assert set(got["detection_labels"][i, n:]) <= {b""}
    assert set(got["detection_classes"][0, :3]) <= {1.0, 2.0, 3.0}  # 1-based
    assert 0.0 <= got["detection_boxes"].min() and got["detection_boxes"].max() <= 1.0


def test_a_detector_with_context_features_serves_what_it_detects(tmp_path):
    keras_detector = tiny_detector(str(tmp_path / "detector"), seed=4, context=2.0)
    out = saved_model.export(str(tmp_path / "detector"), "detector", str(tmp_path / "served" / "1"))
    loaded = tf.saved_model.load(out)
    images = [photo(90, 140, 11), photo(150, 110, 12)]
    encoded = [encode(image) for image in images]
    boxes = [some_boxes(*image.shape[:2], count, seed) for image, count, seed in zip(images, (30, 17), (13, 14))]
    got = serve(loaded, encoded, client.pad_boxes(boxes))
    for i, (image, b) in enumerate(zip(images, boxes, strict=True)):
        assert_same(got, keras_outputs(keras_detector, image, b), i)


def test_padding_rows_are_ignored(exported):
    _, keras_detector, loaded = exported
    image = photo(100, 130, 7)
    boxes = some_boxes(100, 130, 20, 8)
    degenerate = np.array([[0, 0, 0, 0], [50, 10, 50, 60], [10, 60, 90, 40], [0, 0, 0, 0]], np.float32)
    mixed = np.concatenate([boxes[:7], degenerate[:2], boxes[7:], degenerate[2:]])
    png = encode(image)
    plain = serve(loaded, [png], boxes[None])
    padded = serve(loaded, [png], mixed[None])
    for name in OUTPUTS:
        np.testing.assert_array_equal(padded[name], plain[name])
    assert_same(plain, keras_outputs(keras_detector, image, boxes))
    none = serve(loaded, [png], np.zeros((1, 5, 4)))
    assert none["num_detections"].tolist() == [0.0] and not none["detection_scores"].any()


def test_decoded_pixels_give_what_the_bytes_give(exported):
    _, _, loaded = exported
    images = np.stack([photo(80, 100, 9), photo(80, 100, 10)])
    boxes = client.pad_boxes([some_boxes(80, 100, 15, 11), some_boxes(80, 100, 9, 12)])
    from_pixels = serve(loaded, images, boxes, "detect_images")
    from_bytes = serve(loaded, [encode(image) for image in images], boxes)
    for name in OUTPUTS:
        if name == "detection_labels":
            np.testing.assert_array_equal(from_pixels[name], from_bytes[name])
        else:
            np.testing.assert_allclose(from_pixels[name], from_bytes[name], atol=1e-6)


def test_bad_input_is_an_invalid_argument_with_a_clear_message(exported):
    _, _, loaded = exported
    good = encode(photo(60, 60, 13))
    boxes = np.array([[[5, 5, 40, 40]]] * 3, np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"not JPEG or PNG data.*\[1 2\]"):
        serve(loaded, [good, b"GIF89a not supported", b""], boxes)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid PNG data"):
        serve(loaded, [good[: len(good) // 2]], boxes[:1])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"must be the number of images.*\[3 1 4\].*\[2\]"):
        loaded.signatures["serving_default"](image_bytes=tf.constant([good, good]), boxes=tf.constant(boxes))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"finite, of magnitude at most.*got NaN, infinite"):
        serve(loaded, [good], np.array([[[0, 0, np.nan, 10]]]))
    # ZF-5 needs 29 px a side (tests/export/test_images.py works it out).
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)too elongated.*\[4 2000\].*at least 29.*\[2 1000\]"):
        serve(loaded, [encode(photo(2, 1000, 14))], np.array([[[0, 0, 2, 1000]]]))


def test_requests_of_the_wrong_rank_are_invalid_arguments_naming_the_input(exported):
    _, _, loaded = exported
    good = encode(photo(60, 60, 13))
    box = tf.constant([[[5.0, 5, 40, 40]]])
    serving, tensors = loaded.signatures["serving_default"], loaded.signatures["detect_images"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes: must have 1 dimension.*\[1 1\]"):
        serving(image_bytes=tf.constant([[good]]), boxes=box)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"boxes: must have 3 dimension.*\[R, 4\].*\[1 4\]"):
        serving(image_bytes=tf.constant([good]), boxes=box[0])
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"`image_tensor` must be \[N, H, W, 3\] uint8 RGB.*got shape\] \[60 60 3\]",
    ):
        tensors(image_tensor=tf.zeros([60, 60, 3], tf.uint8), boxes=box)
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor but is a float tensor"):
        tensors(image_tensor=tf.zeros([1, 60, 60, 3]), boxes=box)


def test_empty_batches_give_empty_outputs(exported):
    _, _, loaded = exported
    empty_bytes = serve(loaded, [], np.zeros((0, 1, 4)))
    empty_pixels = serve(loaded, np.zeros((0, 10, 10, 3), np.uint8), np.zeros((0, 3, 4)), "detect_images")
    for got in (empty_bytes, empty_pixels):
        assert {k: v.shape for k, v in got.items()} == {k: (0, *shape) for k, shape in OUTPUTS.items()}


def test_images_above_the_max_side_are_resized_with_their_boxes(exported):
    _, keras_detector, loaded = exported
    image = photo(300, 2400, 15)  # longer side 2400 > 2000: resized to 250 x 2000
    boxes = some_boxes(300, 2400, 30, 16)
    capped, capped_boxes = detector_graph.cap_size(tf.constant(image), tf.constant(boxes), 2000)
    assert capped.shape == (250, 2000, 3)
    np.testing.assert_allclose(capped_boxes.numpy(), boxes * np.float32([250 / 300, 2000 / 2400] * 2), rtol=1e-6)
    got = serve(loaded, [encode(image)], boxes[None])
    # The detector sees the resized image and boxes; normalized outputs refer to the original all the same.
    want = keras_outputs(keras_detector, capped.numpy(), capped_boxes.numpy())
    assert_same(got, want)
    # At or below the max side: untouched.
    small, same = detector_graph.cap_size(tf.constant(image[:, :2000]), tf.constant(boxes), 2000)
    assert small.shape == (300, 2000, 3) and np.array_equal(same.numpy(), boxes)


def test_client_bodies_and_requests_round_trip_through_the_export(exported):
    from tensorflow_serving.apis import predict_pb2

    _, _, loaded = exported
    images = [encode(photo(70, 90, 17), "JPEG"), encode(photo(120, 80, 18))]
    boxes = [some_boxes(70, 90, 6, 19), some_boxes(120, 80, 3, 20)]
    direct = serve(loaded, images, client.pad_boxes(boxes))

    row = client.detection_rest_body(images, boxes)
    assert [sorted(instance) for instance in row["instances"]] == [["boxes", "image_bytes"]] * 2
    # Both forms carry dense tensors: the shorter list of boxes is padded with zero rows.
    assert [len(instance["boxes"]) for instance in row["instances"]] == [6, 6]
    assert row["instances"][1]["boxes"][3:] == [[0.0] * 4] * 3
    columnar = client.detection_rest_body(images, boxes, columnar=True)
    assert np.asarray(columnar["inputs"]["boxes"]).shape == (2, 6, 4)
    for body in (row, columnar):
        json.dumps(body)
        _, got = _rest_predict(loaded, body)
        rows = client.parse_rest_response(got)
        for i, answer in enumerate(rows):
            np.testing.assert_allclose(answer["detection_scores"], direct["detection_scores"][i], atol=1e-6)
    found = client.detections(rows[0], height=70, width=90)
    assert len(found) == int(direct["num_detections"][0])
    assert found[0]["label"] == CLASSES[found[0]["class"] - 1]
    np.testing.assert_allclose(found[0]["box"], direct["detection_boxes"][0, 0] * [70, 90, 70, 90], rtol=1e-5)

    request = client.detection_request(images, boxes, "spp-detector", version=2)
    wire = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert wire.model_spec.signature_name == "serving_default" and wire.model_spec.version.value == 2
    inputs = {name: tf.make_ndarray(proto) for name, proto in wire.inputs.items()}
    assert inputs["boxes"].shape == (2, 6, 4) and inputs["boxes"].dtype == np.float32
    outputs = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()})
    response = predict_pb2.PredictResponse()
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    parsed = client.parse_predict_response(predict_pb2.PredictResponse.FromString(response.SerializeToString()))
    assert [client.detections(r) for r in parsed] == [client.detections(r) for r in rows]

    assert client.pad_boxes([[], []]).shape == (2, 1, 4)  # never an empty list in JSON
    with pytest.raises(ValueError, match="One array of boxes per image"):
        client.detection_rest_body(images, boxes[:1])
    with pytest.raises(ValueError, match=r"image 1 must be \[R, 4\]"):
        client.pad_boxes([boxes[0], np.zeros((3, 5))])


def _rest_predict(loaded, body):
    """TF Serving's REST predict, as documented: both forms become dense tensors, b64 objects bytes."""

    def value(v):
        return base64.b64decode(v["b64"]) if isinstance(v, dict) else v

    signature = loaded.signatures[body.get("signature_name", "serving_default")]
    if "instances" in body:
        names = list(body["instances"][0])
        inputs = {name: [value(instance[name]) for instance in body["instances"]] for name in names}
    else:
        inputs = {name: [value(v) for v in values] for name, values in body["inputs"].items()}
    tensors = {name: tf.constant(v, tf.string if name == "image_bytes" else tf.float32) for name, v in inputs.items()}
    try:
        out = signature(**tensors)
    except tf.errors.InvalidArgumentError as e:
        return 400, {"error": e.message}
    out = {
        k: np.vectorize(bytes.decode)(v.numpy()).tolist() if v.dtype == tf.string else v.numpy().tolist()
        for k, v in out.items()
    }
    if "inputs" in body:
        return 200, {"outputs": out}
    return 200, {"predictions": [{k: v[i] for k, v in out.items()} for i in range(len(inputs["image_bytes"]))]}


def test_the_command_line_client_sends_proposals(exported, tmp_path, capsys):
    _, _, loaded = exported
    with fake_rest_server(lambda body: _rest_predict(loaded, body)) as url:
        (tmp_path / "scene.png").write_bytes(encode(photo(90, 120, 21)))
        np.savez(tmp_path / "boxes.npz", scene=some_boxes(90, 120, 10, 22))
        for form in ([], ["--columnar"]):
            assert (
                client.main(
                    [
                        "--rest",
                        url,
                        "--model",
                        "det",
                        "--boxes",
                        str(tmp_path / "boxes.npz"),
                        *form,
                        str(tmp_path / "scene.png"),
                    ]
                )
                == 0
            )
            lines = capsys.readouterr().out.splitlines()
            assert lines[0].startswith(f"{tmp_path / 'scene.png'}: ") and lines[0].endswith("detections")
            assert len(lines) == 1 + int(lines[0].split()[-2])
            assert lines[1].split()[0] in CLASSES and "ymin=" in lines[1]
        np.save(tmp_path / "nan.npy", np.array([[0, 0, np.nan, 5]], np.float32))
        assert client.main(["--rest", url, "--boxes", str(tmp_path / "nan.npy"), str(tmp_path / "scene.png")]) == 1
        assert "NaN or infinite" in capsys.readouterr().err


def test_cli_settings_flags_no_jit_and_clear_refusals(exported, tmp_path, capsys):
    out, keras_detector, _ = exported
    folder = os.path.join(os.path.dirname(os.path.dirname(out)), "detector")

    def run(*args):
        code = saved_model.main(["--kind", "detector", *args])
        return code, capsys.readouterr().err

    # Settings from the flags; --model may be the model.keras; --no-jit leaves XLA out.
    target = tmp_path / "svm" / "1"
    code, _ = run(
        "--model",
        os.path.join(folder, "model.keras"),
        "--out",
        str(target),
        "--scoring",
        "svm",
        "--max-detections",
        "5",
        "--score-threshold",
        "-0.5",
        "--nms-iou",
        "0.5",
        "--vote-iou",
        "0.6",
        "--no-jit",
    )
    assert code == 0
    with open(target / "assets.extra" / "reference" / "reference.json", encoding="utf-8") as f:
        reference = json.load(f)
    assert reference["xla"] is False
    assert reference["detector"]["settings"] == {
        "scoring": "svm",
        "box_regression": True,
        "nms_iou": 0.5,
        "score_threshold": -0.5,
        "max_detections": 5,
        "vote_iou": 0.6,
    }
    assert serving_check.graph_facts(str(target))["xla_compiled_calls"] == 0
    loaded = tf.saved_model.load(str(target))
    image, boxes = photo(100, 100, 23), some_boxes(100, 100, 20, 24)
    got = serve(loaded, [encode(image)], boxes[None])
    assert got["detection_boxes"].shape == (1, 5, 4)
    settings = detector_kind.settings_from({}, reference["detector"]["settings"])
    assert_same(got, keras_outputs(keras_detector, image, boxes, settings, count=5))

    code, err = run("--model", folder, "--out", str(tmp_path / "a" / "1"), "--min-side", "100")
    assert code == 2 and "--min-side are classifier options" in err
    code, err = run("--model", folder, "--out", str(tmp_path / "a" / "1"), "--max-detections", "0")
    assert code == 2 and "--max-detections must be a positive integer" in err
    code, err = run("--model", str(tmp_path), "--out", str(tmp_path / "a" / "1"))
    assert code == 2 and "No model file" in err and "detector.json" in err
    lone = tmp_path / "lone"
    lone.mkdir()
    keras_detector.model.save(lone / "model.keras")  # no detector.json beside it
    code, err = run("--model", str(lone), "--out", str(tmp_path / "a" / "1"))
    assert code == 2 and "No label map" in err and "detector.json" in err and "--labels" in err
    labels = tmp_path / "labels.txt"
    labels.write_text("x\ny\n")
    code, err = run("--model", str(lone), "--out", str(tmp_path / "a" / "1"), "--labels", str(labels))
    assert code == 2 and "3 classes but the label map has 2 names" in err
    assert not (tmp_path / "a").exists()
    code = saved_model.main(
        [
            "--kind",
            "classifier",
            "--model",
            os.path.join(folder, "model.keras"),
            "--out",
            str(tmp_path / "c" / "1"),
            "--scoring",
            "svm",
        ]
    )
    assert code == 2 and "are options of --kind detector" in capsys.readouterr().err


def test_the_served_call_with_window_buckets_under_xla_is_the_heads_model_at_several_scales():
    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.detection.heads import spp_detector
    from keras_spp.detection.spp_net_detector import SppNetDetector
    from keras_spp.models import backbone

    keras.utils.set_random_seed(5)
    roi = MultiScaleRoiFeatures(backbone("zf5", width=0.0625), scales=(96, 160), levels=(2, 1), window_size=48)
    heads = spp_detector(roi, len(CLASSES), fc_units=16)
    model = SppNetDetector(heads, CLASSES)
    image = tf.constant(photo(120, 90, 25)[None].astype(np.float32))
    boxes = tf.constant(some_boxes(120, 90, 70, 26))  # both scales get some: 70 rows padded to 64 or 128
    want = heads({"image": image, "boxes": boxes}, training=False)
    from keras_spp.detection.scales import assign_scales, scale_factors

    assert set(assign_scales(boxes.numpy(), scale_factors(120, 90, roi.scales), 48)) == {0, 1}
    for jit in (True, False, None):
        got_boxes, got = model.raw_outputs(image, boxes, jit_compile=jit)
        np.testing.assert_array_equal(got_boxes.numpy(), boxes.numpy())
        for name in want:
            np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), atol=1e-5)
    _, empty = model.raw_outputs(image, tf.zeros([0, 4]), jit_compile=True)
    assert empty["svm_scores"].shape == (0, len(CLASSES))
    sizes = [bucket_size(tf.constant(n)).numpy() for n in (1, 64, 65, 128, 129, 2000)]
    assert sizes == [64, 64, 128, 128, 256, 2048]


def test_reference_grid_and_padding_helpers():
    boxes = detector_cases.reference_boxes(300, 451)
    assert boxes.shape == (121, 4) and boxes.dtype == np.float32
    assert boxes.min() >= 0 and (boxes[:, 2] <= 300).all() and (boxes[:, 3] <= 451).all()
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    padded = client.pad_boxes([boxes[:2], boxes[:0]])
    assert padded.shape == (2, 2, 4) and not padded[1].any()
    assert detector_graph.real_rows(tf.constant(padded[0])).numpy().all()


def test_serving_check_forgives_rows_swapped_between_near_tied_detections():
    rules = {
        "detection_boxes": {"atol": 1e-4, "ties_by": "detection_scores"},
        "detection_scores": {"atol": 1e-4, "ties_by": "detection_scores"},
        "detection_classes": {"ties_by": "detection_scores"},
    }
    case = {
        "outputs": {
            "detection_boxes": {
                "dtype": "float32",
                "shape": [1, 3, 4],
                "values": [[[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0, 0, 0, 0]]],
            },
            "detection_scores": {"dtype": "float32", "shape": [1, 3], "values": [[0.9, 0.89995, 0.0]]},
            "detection_classes": {"dtype": "float32", "shape": [1, 3], "values": [[1, 2, 0]]},
        }
    }
    swapped = {
        "detection_boxes": np.array([[[0.5, 0.5, 1, 1], [0, 0, 0.5, 0.5], [0, 0, 0, 0]]]),
        "detection_scores": np.array([[0.89996, 0.9, 0.0]]),
        "detection_classes": np.array([[2, 1, 0]]),
    }
    ok, details = serving_check.compare(case, swapped, None, rules)
    assert ok and details["detection_boxes"]["explained_by_near_ties"] == "8 of 8 values"
    far = {**case["outputs"], "detection_scores": {"dtype": "float32", "shape": [1, 3], "values": [[0.9, 0.5, 0.0]]}}
    assert not serving_check.compare(
        {"outputs": far}, {**swapped, "detection_scores": np.array([[0.5, 0.9, 0.0]])}, None, rules
    )[0]


def test_serving_benchmark_times_every_detector_path(exported):
    from benchmarks import serving

    out, keras_detector, _ = exported
    fns = serving.detector_paths(keras_detector, {"xla": out})
    assert set(fns) == {"saved_model_session", "saved_model_load", "keras_graph"}
    boxes = serving.random_proposals(60, 80, 20, seed=1)
    assert boxes.shape == (20, 4) and boxes.min() >= 0 and boxes[:, 2].max() <= 60 and boxes[:, 3].max() <= 80
    assert np.all(boxes[:, 2:] - boxes[:, :2] >= 19.99)
    report = serving.latencies(fns, {"60x80": (serving.jpeg(60, 80), boxes)}, repeats=2, reference="keras_graph")
    row = report["60x80"]
    for name in fns:
        assert row[name]["p50_ms"] > 0  # the timing itself: tests/export/test_serving_benchmark.py's fake clock
        assert row[name]["max_abs_diff_vs_keras"] <= ATOL
    # The scores compared are real detections, not two empty paddings.
    assert fns["keras_graph"](serving.jpeg(60, 80), boxes)[0] > 0


def test_boxes_whose_sides_overflow_are_invalid_arguments(exported):
    _, _, loaded = exported
    good = encode(photo(60, 60, 13))
    overflowing = np.array([[[5, 5, 40, 40], [-3e38, -3e38, 3e38, 3e38]]], np.float32)
    for signature, images in (("serving_default", [good]), ("detect_images", [photo(60, 60, 13)])):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"finite, of magnitude at most.*side y2 - y1"):
            serve(loaded, images, overflowing, signature)
    # Finite sides but a regressed box of inf - inf: refused too.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"at most 16777216 \(2\^24\)"):
        serve(loaded, [good], np.array([[[5, 5, 40, 40], [0, 0, 3e38, 3e38]]], np.float32))
    edge = float(2**24)  # the largest accepted: served, clipped to the image
    got = serve(loaded, [good], np.array([[[5, 5, 40, 40], [-edge, -edge, edge, edge]]], np.float32))
    assert np.all(np.isfinite(got["detection_boxes"])) and got["num_detections"][0] > 0


def padded_outputs(boxes, scores, classes, size, count, labels):
    """One image's outputs (numpy) from pixel ``boxes`` ``[D, 4]``, ``scores``, 0-based
    ``classes`` of an image of ``size`` (height, width), padded to ``count``."""
    d = len(scores)
    h, w = float(size[0]), float(size[1])
    out = {
        "detection_boxes": np.zeros((count, 4), np.float32),
        "detection_scores": np.zeros(count, np.float32),
        "detection_classes": np.zeros(count, np.float32),
        "detection_labels": np.full(count, "", dtype=object),
        "num_detections": np.float32(d),
    }
    out["detection_boxes"][:d] = np.asarray(boxes, np.float32).reshape(-1, 4) / np.float32([h, w, h, w])
    out["detection_scores"][:d] = scores
    out["detection_classes"][:d] = np.asarray(classes) + 1
    out["detection_labels"][:d] = [labels[c] for c in classes]
    return out
