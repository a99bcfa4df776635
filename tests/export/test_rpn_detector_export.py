"""An RPN detector exported once: images alone in, detections out, as TF Serving loads it."""

import base64
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from export import client, saved_model, verify
from tests.export.conftest import encode, fake_rest_server, photo
from tests.export.test_detector_export import CLASSES, spread_heads, tiny_detector

ATOL = 1e-4
IMAGE_ALONE = {"image_bytes": ["DT_STRING", [-1]]}


def tiny_rpn_detector(folder, seed=5):
    """ZF-5 at 1/8 width on two scales (128, 192 px), a random RPN on the 192 px one
    whose objectness is spread out so that NMS and top-N have real work."""
    from keras_spp.detection.anchors import AnchorConfig
    from keras_spp.detection.detector import Detector
    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.detection.heads import spp_detector
    from keras_spp.detection.learned_proposals import LearnedProposals, ProposalSettings
    from keras_spp.detection.rpn import rpn_head
    from keras_spp.models import backbone

    keras.utils.set_random_seed(seed)
    roi = MultiScaleRoiFeatures(
        backbone("zf5", width=0.125), scales=(128, 192), levels=(2, 1), window_size=48, name="roi_features"
    )
    model = spp_detector(roi, len(CLASSES), fc_units=16)
    rng = np.random.default_rng(seed)
    spread_heads(model, roi, rng)
    anchors = AnchorConfig((24.0, 48.0, 96.0), (1.0, 2.0), 16.0)
    head = rpn_head(roi.backbone.output_shape[-1], anchors.per_cell, hidden=16)
    for layer in head.layers:
        if layer.weights:
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    proposer = LearnedProposals(head, roi, anchors, (1,), ProposalSettings(500, 40, 0.7, 4.0))
    detector = Detector(model, CLASSES, proposer=proposer)
    detector.save(folder)
    return detector


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("rpn-export")
    keras_detector = tiny_rpn_detector(str(root / "detector"))
    out = saved_model.export(str(root / "detector"), "detector", str(root / "served" / "1"))
    return out, keras_detector, tf.saved_model.load(out)


def test_signatures_take_images_alone_and_boxes_under_another_name(exported):
    out, _, _ = exported
    report = verify.verify(out)
    assert report["ok"], verify.summary(report)
    shown = report["signatures"]
    assert shown["serving_default"]["inputs"] == IMAGE_ALONE
    assert shown["detect_images"]["inputs"] == {"image_tensor": ["DT_UINT8", [-1, -1, -1, 3]]}
    assert shown["with_boxes"]["inputs"] == {**IMAGE_ALONE, "boxes": ["DT_FLOAT", [-1, -1, 4]]}
    assert set(shown["detect_images_with_boxes"]["inputs"]) == {"image_tensor", "boxes"}
    check = report["serving_check"]
    assert check["modules"]["keras_spp"] is False  # TF Serving's view: no keras_spp in the child
    for loader in ("tf1_session", "tf2_load"):
        rows = {row["case"]: row for row in check["loaders"][loader]}
        assert all(row["ok"] for row in rows.values()), rows
        alone = rows["images of several sizes, JPEG and PNG, in one batch, bytes alone (the RPN proposes)"]
        assert alone["details"]["detection_boxes"]["max_abs_diff"] <= ATOL
        assert alone["details"]["detection_classes"]["different"] == 0
        assert "an image too elongated for the RPN's scale" in rows and "a flat grey image (nothing to find)" in rows
        assert any(row.startswith("images of several sizes") and "proposals padded" in row for row in rows)


def test_served_detections_equal_the_keras_detectors(exported):
    _, keras_detector, loaded = exported
    images = [photo(150, 200, 1), photo(233, 181, 2)]
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([encode(i) for i in images]))
    for k, image in enumerate(images):
        boxes, scores, classes = keras_detector.detect(image)
        n = int(out["num_detections"][k])
        assert n == len(scores) > 0
        h, w = image.shape[:2]
        np.testing.assert_allclose(out["detection_boxes"][k, :n].numpy() * [h, w, h, w], boxes, atol=ATOL * max(h, w))
        np.testing.assert_allclose(out["detection_scores"][k, :n], scores, atol=ATOL)
        np.testing.assert_array_equal(out["detection_classes"][k, :n].numpy() - 1, classes)
    tensor = loaded.signatures["detect_images"](image_tensor=tf.constant(np.stack(images[:1])))
    np.testing.assert_allclose(tensor["detection_scores"][0], out["detection_scores"][0], atol=ATOL)


def test_the_rpn_and_the_boxes_signature_agree_on_the_rpns_boxes(exported):
    """with_boxes fed the RPN's own proposals finds what serving_default finds."""
    _, keras_detector, loaded = exported
    image = photo(160, 210, 3)
    proposals, _, _ = keras_detector.proposer.propose(tf.constant(image[None], tf.float32))
    both = loaded.signatures["with_boxes"](image_bytes=tf.constant([encode(image)]), boxes=tf.constant(proposals[None]))
    alone = loaded.signatures["serving_default"](image_bytes=tf.constant([encode(image)]))
    for name in ("detection_boxes", "detection_scores"):
        np.testing.assert_allclose(both[name], alone[name], atol=ATOL)


def test_warmup_requests_hold_images_alone(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    out, _, _ = exported
    requests = [
        prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        for record in tf.data.TFRecordDataset(os.path.join(out, "assets.extra", "tf_serving_warmup_requests"))
    ]
    assert len(requests) == 4
    for request in requests:
        assert request.model_spec.signature_name == "serving_default"
        assert set(request.inputs) == {"image_bytes"}


def _rest_predict(loaded, body):
    """TF Serving's REST predict for the row form (as in test_detector_export), and its
    refusal of a request that lacks one of the signature's inputs."""
    signature = loaded.signatures[body.get("signature_name", "serving_default")]
    instances = body["instances"]
    if isinstance(instances[0], dict) and "b64" not in instances[0]:
        inputs = {name: [i[name] for i in instances] for name in instances[0]}
    else:
        inputs = {"image_bytes": instances}
    missing = sorted(set(signature.structured_input_signature[1]) - set(inputs))
    if missing:
        return 400, {
            "error": f"Failed to process element: 0 of 'instances' list. Error: Invalid argument: "
            f"JSON object: does not have named input: {missing[0]}"
        }
    tensors = {
        name: tf.constant([base64.b64decode(v["b64"]) for v in values])
        if name == "image_bytes"
        else tf.constant(values, tf.float32)
        for name, values in inputs.items()
    }
    out = signature(**tensors)
    out = {
        k: np.vectorize(bytes.decode)(v.numpy()).tolist() if v.dtype == tf.string else v.numpy().tolist()
        for k, v in out.items()
    }
    return 200, {"predictions": [{k: v[i] for k, v in out.items()} for i in range(len(instances))]}


def test_the_client_sends_images_alone(exported, tmp_path, capsys):
    _, keras_detector, loaded = exported
    image = photo(150, 200, 1)
    (tmp_path / "scene.png").write_bytes(encode(image))
    with fake_rest_server(lambda body: _rest_predict(loaded, body)) as url:
        assert client.main(["--rest", url, "--model", "det", str(tmp_path / "scene.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{tmp_path / 'scene.png'}: {len(keras_detector.detect(image)[1])} detections"


def test_images_alone_to_a_detector_without_rpn_name_the_flag(tmp_path, capsys):
    tiny_detector(str(tmp_path / "plain"))
    out = saved_model.export(str(tmp_path / "plain"), "detector", str(tmp_path / "served" / "1"))
    loaded = tf.saved_model.load(out)
    (tmp_path / "scene.png").write_bytes(encode(photo(90, 120, 4)))
    with fake_rest_server(lambda body: _rest_predict(loaded, body)) as url:
        assert client.main(["--rest", url, "--model", "det", str(tmp_path / "scene.png")]) == 1
    err = capsys.readouterr().err
    assert "does not have named input: boxes" in err and "--proposals rpn" in err and "--boxes" in err
