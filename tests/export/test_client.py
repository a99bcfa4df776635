import base64
import json

import numpy as np
import pytest
import tensorflow as tf

from export import client
from tests.export.conftest import CLASSES, encode, fake_rest_server, photo

JPEG = encode(photo(60, 90, 11), "JPEG")
PNG = encode(photo(120, 80, 12), "PNG")


def test_rest_bodies_in_row_and_columnar_form():
    row = client.rest_body([JPEG, PNG])
    assert row == {
        "signature_name": "serving_default",
        "instances": [{"b64": base64.b64encode(JPEG).decode()}, {"b64": base64.b64encode(PNG).decode()}],
    }
    columnar = client.rest_body([JPEG], columnar=True)
    assert columnar == {
        "signature_name": "serving_default",
        "inputs": {"image_bytes": [{"b64": base64.b64encode(JPEG).decode()}]},
    }
    json.dumps(row), json.dumps(columnar)  # what is sent
    assert client.rest_body([]) == {"signature_name": "serving_default", "instances": []}
    with pytest.raises(TypeError, match="encoded bytes"):
        client.rest_body([np.zeros((2, 2, 3))])


def test_rest_answers_in_both_forms_parse_to_one_dict_per_image():
    row = {
        "predictions": [
            {"classes": [2, 0], "labels": ["bird", "cat"], "scores": [0.6, 0.3]},
            {"classes": [1, 2], "labels": ["dog", "bird"], "scores": [0.5, 0.4]},
        ]
    }
    columnar = {
        "outputs": {
            "classes": [[2, 0], [1, 2]],
            "labels": [["bird", "cat"], ["dog", "bird"]],
            "scores": [[0.6, 0.3], [0.5, 0.4]],
        }
    }
    assert client.parse_rest_response(row) == client.parse_rest_response(json.dumps(columnar)) == row["predictions"]
    assert client.parse_rest_response({"predictions": []}) == []
    assert client.parse_rest_response({"outputs": {"classes": [], "scores": []}}) == []
    with pytest.raises(RuntimeError, match="not JPEG or PNG data"):
        client.parse_rest_response({"error": "assertion failed: [image_bytes: ... not JPEG or PNG data ...] [0]"})
    with pytest.raises(ValueError, match="'predictions'.*'outputs'"):
        client.parse_rest_response({"result": 1})


def test_grpc_request_and_response_round_trip_through_the_saved_model(exported):
    from tensorflow_serving.apis import predict_pb2

    _, _, loaded = exported
    request = client.predict_request([JPEG, PNG], "spp", version=1)
    wire = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert wire.model_spec.name == "spp" and wire.model_spec.signature_name == "serving_default"
    assert wire.model_spec.version.value == 1
    tensor = wire.inputs["image_bytes"]
    assert tensor.dtype == tf.string.as_datatype_enum and [d.size for d in tensor.tensor_shape.dim] == [2]
    # What TF Serving does with it: the signature on the tensor, outputs back as TensorProtos.
    outputs = loaded.signatures["serving_default"](image_bytes=tf.constant(tf.make_ndarray(tensor)))
    response = predict_pb2.PredictResponse()
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    rows = client.parse_predict_response(predict_pb2.PredictResponse.FromString(response.SerializeToString()))
    assert len(rows) == 2
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(row["classes"], outputs["classes"][i].numpy())
        assert list(row["labels"]) == [CLASSES[c] for c in row["classes"]]
        np.testing.assert_allclose(row["scores"], np.sort(row["probabilities"])[::-1][:5])
    assert client.parse_predict_response(predict_pb2.PredictResponse()) == []


def _rest_predict(loaded, body):
    """TF Serving's REST predict, as documented: b64 objects decoded, row or columnar answers."""
    columnar = "inputs" in body
    values = body["inputs"]["image_bytes"] if columnar else body["instances"]
    images = [base64.b64decode(v["b64"]) for v in values]
    try:
        out = loaded.signatures[body["signature_name"]](image_bytes=tf.constant(images, tf.string))
    except tf.errors.InvalidArgumentError as e:
        return 400, {"error": e.message}
    out = {
        k: [[s.decode() for s in r] if v.dtype == tf.string else r for r in v.numpy().tolist()] for k, v in out.items()
    }
    if columnar:
        return 200, {"outputs": out}
    return 200, {"predictions": [{k: v[i] for k, v in out.items()} for i in range(len(images))]}


def test_the_command_line_client_over_rest(exported, tmp_path, capsys):
    _, _, loaded = exported
    with fake_rest_server(lambda body: _rest_predict(loaded, body)) as url:
        (tmp_path / "a.jpg").write_bytes(JPEG)
        (tmp_path / "b.txt").write_bytes(b"not an image")
        row = client.send_rest(url, "spp", [JPEG, PNG])
        assert client.send_rest(url, "spp", [JPEG, PNG], columnar=True) == row
        assert [len(r["labels"]) for r in row] == [5, 5]
        assert client.main(["--rest", url, str(tmp_path / "a.jpg")]) == 0
        assert capsys.readouterr().out.startswith(f"{tmp_path / 'a.jpg'}: ")
        assert client.main(["--rest", url, str(tmp_path / "b.txt")]) == 1
        assert "not JPEG or PNG data" in capsys.readouterr().err
