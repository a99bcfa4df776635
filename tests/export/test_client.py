import base64
import contextlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

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


def closed_port():
    """A local port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def error_page_server(status):
    """A real local HTTP server that answers every POST with an HTML error page."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_error(status)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_no_server_at_the_url_is_a_clear_error_naming_it(tmp_path, capsys):
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(ConnectionError, match=rf"No answer from TF Serving at {re.escape(url)}/v1/models/spp:predict"):
        client.send_rest(url, "spp", [PNG])
    (tmp_path / "a.png").write_bytes(PNG)
    assert client.main(["--rest", url, str(tmp_path / "a.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: No answer from TF Serving at {url}/") and "refused" in err
    assert client.main(["--rest", url, str(tmp_path / "missing.png")]) == 1  # no UnboundLocalError
    assert "No such file or directory" in capsys.readouterr().err
    target = f"127.0.0.1:{closed_port()}"
    with pytest.raises(RuntimeError, match=rf"gRPC Predict at {target} failed with UNAVAILABLE.*running"):
        client.send_grpc(target, "spp", [PNG], timeout=10)
    with pytest.raises(SystemExit):
        client.main(["--rest", "localhost:8501", str(tmp_path / "a.png")])
    assert "--rest takes the server's URL" in capsys.readouterr().err


def test_an_answer_that_is_no_predict_answer_reports_the_http_status_and_its_start(tmp_path, capsys):
    with error_page_server(404) as url:
        with pytest.raises(RuntimeError, match=r"spp:predict answered HTTP 404, not a TF Serving.*begins: '<!DOCTYPE"):
            client.send_rest(url, "spp", [PNG])
    with fake_rest_server(lambda body: (503, {"status": "overloaded"})) as url:
        with pytest.raises(RuntimeError, match=r"answered HTTP 503: \{\"status\": \"overloaded\"\}"):
            client.send_rest(url, "spp", [PNG])
    with fake_rest_server(lambda body: (400, {"error": "boxes: NaN"})) as url:
        with pytest.raises(RuntimeError, match="HTTP 400: TF Serving answered with an error: boxes: NaN"):
            client.send_rest(url, "spp", [PNG])


def test_an_answer_with_fewer_rows_than_images_is_refused(tmp_path, capsys):
    one_row = {"predictions": [{"labels": ["cat"], "scores": [0.9]}]}
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.png").write_bytes(PNG)
    with fake_rest_server(lambda body: (200, one_row)) as url:
        with pytest.raises(ValueError, match="answered 1 rows for 2 images"):
            client.send_rest(url, "spp", [PNG, PNG])
        assert client.main(["--rest", url, str(tmp_path / "a.png"), str(tmp_path / "b.png")]) == 1
        assert "answered 1 rows for 2 images" in capsys.readouterr().err
    short = {"num_detections": 2, "detection_boxes": [[0, 0, 1, 1]], "detection_scores": [0.9, 0.8]}
    with pytest.raises(ValueError, match=r"num_detections 2 holds fewer.*detection_boxes': 1"):
        client.detections({**short, "detection_classes": [1, 2]})
    with pytest.raises(ValueError, match="--boxes .*not a readable .npy or .npz"):
        (tmp_path / "boxes.npz").write_bytes(b"PK\x03\x04 cut short")
        client.load_boxes(str(tmp_path / "boxes.npz"), ["a.png"])
