"""An example TF Serving client for the exported models: REST bodies and gRPC requests.

    python -m export.client --rest http://localhost:8501 --model spp cat.jpg dog.png
    python -m export.client --grpc localhost:8500 --model spp cat.jpg dog.png

Requests carry encoded image files (JPEG or PNG, any size) in the ``image_bytes``
input of ``serving_default``, so images of different sizes share one request.
REST (``POST /v1/models/<model>:predict``) takes two forms, as TF Serving documents:

* row ("instances"): ``{"signature_name": ..., "instances": [{"b64": "..."}, ...]}``,
  one entry per image; the answer is ``{"predictions": [{output: value}, ...]}``.
* columnar ("inputs"): ``{"signature_name": ..., "inputs": {"image_bytes": [{"b64": ...}]}}``;
  the answer is ``{"outputs": {output: [value per image]}}``.

Binary values travel base64-encoded inside ``{"b64": ...}``. gRPC uses
``tensorflow_serving.apis`` PredictRequest / PredictResponse (port 8500).
Both parsers return one dict per image, ``{output: value}``, the same for either
transport and form.
"""

import argparse
import base64
import json
import sys

INPUT = "image_bytes"
SIGNATURE = "serving_default"


def rest_body(images, columnar=False, signature_name=SIGNATURE, input_name=INPUT):
    """A TF Serving REST predict body (a dict: ``json.dumps`` it) for encoded ``images`` (bytes)."""
    encoded = [{"b64": base64.b64encode(_bytes(image)).decode("ascii")} for image in images]
    if columnar:
        return {"signature_name": signature_name, "inputs": {input_name: encoded}}
    # One named input: each instance is that input's value, not an {input: value} dict.
    return {"signature_name": signature_name, "instances": encoded}


def parse_rest_response(response):
    """One ``{output: value}`` per image from a REST predict answer (row or columnar form).

    ``response`` is the decoded JSON (a dict) or its text. A TF Serving error answer
    (``{"error": ...}``) raises ``RuntimeError`` with the server's message.
    """
    if isinstance(response, (str, bytes)):
        response = json.loads(response)
    if not isinstance(response, dict):
        raise ValueError(f"A predict answer is a JSON object; got {type(response).__name__}.")
    if "error" in response:
        raise RuntimeError(f"TF Serving answered with an error: {response['error']}")
    if "predictions" in response:
        rows = response["predictions"]
        # A model with one output answers with bare values instead of {output: value}.
        return [row if isinstance(row, dict) else {"output": row} for row in rows]
    if "outputs" in response:
        outputs = response["outputs"]
        if not isinstance(outputs, dict):
            outputs = {"output": outputs}
        counts = {len(v) for v in outputs.values()}
        if len(counts) > 1:
            lengths = {k: len(v) for k, v in outputs.items()}
            raise ValueError(f"The columnar outputs have different lengths: {lengths}.")
        count = counts.pop() if counts else 0
        return [{name: values[i] for name, values in outputs.items()} for i in range(count)]
    raise ValueError(
        f"A predict answer has 'predictions' (row form) or 'outputs' (columnar); got keys {sorted(response)}.")


def predict_request(images, model_name, signature_name=SIGNATURE, input_name=INPUT, version=None):
    """A gRPC ``PredictRequest`` for encoded ``images`` (bytes), as a string tensor ``[N]``."""
    from tensorflow.core.framework import tensor_pb2
    from tensorflow.core.framework import tensor_shape_pb2
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    images = [_bytes(image) for image in images]
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(images))]),
        string_val=images,
    )
    request.inputs[input_name].CopyFrom(tensor)
    return request


def parse_predict_response(response):
    """One ``{output: value}`` per image from a gRPC ``PredictResponse``.

    Values are numpy arrays; strings come back as ``str`` (UTF-8).
    """
    import numpy as np
    import tensorflow as tf

    arrays = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    counts = {a.shape[0] if a.ndim else 1 for a in arrays.values()}
    if len(counts) > 1:
        raise ValueError(f"The outputs have different batch sizes: { {k: a.shape for k, a in arrays.items()} }.")
    count = counts.pop() if counts else 0
    rows = []
    for i in range(count):
        row = {}
        for name, a in arrays.items():
            value = a[i]
            if a.dtype == object:
                value = np.vectorize(lambda s: s.decode("utf-8", "replace"), otypes=[object])(value)
            row[name] = value
        rows.append(row)
    return rows


def _bytes(image):
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    raise TypeError(
        f"Images are sent as their encoded bytes (a JPEG or PNG file's content); got {type(image).__name__}.")


def send_rest(url, model, images, columnar=False, timeout=30):
    """POST to ``<url>/v1/models/<model>:predict``; the parsed rows."""
    import urllib.error
    import urllib.request

    body = json.dumps(rest_body(images, columnar)).encode()
    request = urllib.request.Request(f"{url.rstrip('/')}/v1/models/{model}:predict", body,
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return parse_rest_response(answer.read())
    except urllib.error.HTTPError as e:  # TF Serving puts its message in the body
        return parse_rest_response(e.read())


def send_grpc(target, model, images, timeout=30):
    """Predict over gRPC at ``host:port``; the parsed rows."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    # Images of several megabytes exceed gRPC's default 4 MB message limit.
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return parse_predict_response(stub.Predict(predict_request(images, model), timeout))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--rest", help="server address, e.g. http://localhost:8501")
    where.add_argument("--grpc", help="server address, e.g. localhost:8500")
    p.add_argument("--model", default="spp", help="the model name the server was started with")
    p.add_argument("--columnar", action="store_true", help="REST: the columnar ('inputs') form")
    p.add_argument("images", nargs="+", help="JPEG or PNG files")
    args = p.parse_args(argv)
    try:
        images = []
        for path in args.images:
            with open(path, "rb") as f:
                images.append(f.read())
        if args.rest:
            rows = send_rest(args.rest, args.model, images, args.columnar)
        else:
            rows = send_grpc(args.grpc, args.model, images)
    except (OSError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # grpc.RpcError and friends: report, do not dump a traceback
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    for path, row in zip(args.images, rows, strict=False):
        pairs = zip(row.get("labels", []), row.get("scores", []), strict=False)
        top = ", ".join(f"{label} {float(score):.3f}" for label, score in pairs)
        print(f"{path}: {top}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
