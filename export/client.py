"""An example TF Serving client for the exported models: REST bodies and gRPC requests.

    python -m export.client --rest http://localhost:8501 --model spp cat.jpg dog.png
    python -m export.client --grpc localhost:8500 --model spp cat.jpg dog.png
    python -m export.client --rest http://localhost:8501 --model spp-detector --selective-search scene.jpg
    python -m export.client --grpc localhost:8500 --model spp-detector --boxes proposals.npz scene.jpg
    python -m export.client --rest http://localhost:8501 --model spp-rpn-detector scene.jpg

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

Detector exports (``export.detector``) take each image's proposals beside it, in
``boxes`` float32 ``[N, R, 4]`` (``[y1, x1, y2, x2]`` pixels): ``detection_rest_body``
and ``detection_request``. TF Serving turns either REST form into dense tensors (row
form: it stacks the instances' values, which must have equal shapes; columnar: the
nested lists must be rectangular), and gRPC carries dense tensors, so images with
different numbers of proposals are sent padded with all-zero rows to the largest
count (``pad_boxes``), which the export ignores. Row form:
``{"instances": [{"image_bytes": {"b64": ...}, "boxes": [[y1, x1, y2, x2], ...]}, ...]}``;
columnar: ``{"inputs": {"image_bytes": [{"b64": ...}, ...], "boxes": [[[...], ...], ...]}}``.
``detections(row)`` turns one image's answer into its list of detections.

A detector with an RPN (``recipes.train_detector --proposals rpn``) takes images
alone in ``serving_default`` (as a classifier does: ``rest_body``, ``predict_request``);
its boxes-in signature is ``with_boxes`` (``--signature with_boxes``). Sending images
alone to a detector without one is refused with a message saying so (``NEEDS_BOXES``).
"""

import argparse
import base64
import json
import sys

INPUT = "image_bytes"
SIGNATURE = "serving_default"
NEEDS_BOXES = (
    "this detector export takes each image's proposals beside it (it has no RPN): pass --boxes or "
    "--selective-search, or export a detector trained with `python -m recipes.train_detector "
    "--proposals rpn`, whose serving_default takes images alone."
)


def rest_body(images, columnar=False, signature_name=SIGNATURE, input_name=INPUT):
    """A TF Serving REST predict body (a dict: ``json.dumps`` it) for encoded ``images`` (bytes)."""
    encoded = [{"b64": base64.b64encode(_bytes(image)).decode("ascii")} for image in images]
    if columnar:
        return {"signature_name": signature_name, "inputs": {input_name: encoded}}
    # One named input: each instance is that input's value, not an {input: value} dict.
    return {"signature_name": signature_name, "instances": encoded}


def pad_boxes(boxes_per_image):
    """float32 ``[N, R, 4]``: each image's ``[R_i, 4]`` proposals, then all-zero rows
    (padding, ignored by the export) up to ``R = max(R_i)``, at least 1 (so that a JSON
    body never holds an empty list whose shape TF Serving would have to guess)."""
    import numpy as np

    arrays = []
    for i, boxes in enumerate(boxes_per_image):
        a = np.asarray(boxes, np.float32)
        if a.size == 0:
            a = a.reshape(0, 4)
        if a.ndim != 2 or a.shape[1] != 4:
            raise ValueError(f"The boxes of image {i} must be [R, 4] as [y1, x1, y2, x2] pixels; got shape {a.shape}.")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"The boxes of image {i} have NaN or infinite coordinates.")
        arrays.append(a)
    out = np.zeros((len(arrays), max([len(a) for a in arrays] + [1]), 4), np.float32)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def detection_rest_body(images, boxes, columnar=False, signature_name=SIGNATURE):
    """A REST predict body for a detector export: encoded ``images`` (bytes) and one
    ``[R_i, 4]`` array of proposals per image, padded (``pad_boxes``) in either form."""
    images = [_bytes(image) for image in images]
    if len(boxes) != len(images):
        raise ValueError(f"One array of boxes per image: {len(images)} images, {len(boxes)} arrays of boxes.")
    encoded = [{"b64": base64.b64encode(image).decode("ascii")} for image in images]
    padded = pad_boxes(boxes).tolist()
    if columnar:
        return {"signature_name": signature_name, "inputs": {"image_bytes": encoded, "boxes": padded}}
    return {
        "signature_name": signature_name,
        "instances": [{"image_bytes": e, "boxes": b} for e, b in zip(encoded, padded, strict=True)],
    }


def detections(row, height=None, width=None):
    """One image's answer (a dict of a parser's list) as ``[{"label", "class", "score",
    "box"}]``, best first: the first ``num_detections``; ``class`` 1-based as served;
    ``box`` ``[ymin, xmin, ymax, xmax]`` normalized, or in pixels given the image's
    ``height`` and ``width``."""
    import numpy as np

    n = int(round(float(np.asarray(row["num_detections"]))))
    boxes = np.asarray(row["detection_boxes"], np.float64).reshape(-1, 4)[:n]
    if height is not None and width is not None:
        boxes = boxes * np.array([height, width, height, width], np.float64)
    labels = list(row.get("detection_labels", [""] * n))[:n]
    held = {
        "detection_boxes": len(boxes),
        "detection_labels": len(labels),
        **{k: len(np.asarray(row[k]).reshape(-1)) for k in ("detection_classes", "detection_scores")},
    }
    short = {k: v for k, v in held.items() if v < n}
    if n < 0 or short:
        raise ValueError(f"An answer with num_detections {n} holds fewer detections: {short or held}.")
    return [
        {
            "label": str(label.decode() if isinstance(label, bytes) else label),
            "class": int(c),
            "score": float(s),
            "box": [float(v) for v in box],
        }
        for label, c, s, box in zip(
            labels,
            np.asarray(row["detection_classes"])[:n],
            np.asarray(row["detection_scores"])[:n],
            boxes,
            strict=True,
        )
    ]


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
        f"A predict answer has 'predictions' (row form) or 'outputs' (columnar); got keys {sorted(response)}."
    )


def predict_request(images, model_name, signature_name=SIGNATURE, input_name=INPUT, version=None):
    """A gRPC ``PredictRequest`` for encoded ``images`` (bytes), as a string tensor ``[N]``."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
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


def tensor_request(inputs, model_name, signature_name=SIGNATURE, version=None):
    """A gRPC ``PredictRequest`` from ``{input: numpy array}`` (``bytes`` objects for strings)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def detection_request(images, boxes, model_name, signature_name=SIGNATURE, version=None):
    """A gRPC ``PredictRequest`` for a detector export: ``image_bytes`` string ``[N]`` and
    ``boxes`` float32 ``[N, R, 4]``, the proposals padded (``pad_boxes``)."""
    import tensorflow as tf

    images = [_bytes(image) for image in images]
    if len(boxes) != len(images):
        raise ValueError(f"One array of boxes per image: {len(images)} images, {len(boxes)} arrays of boxes.")
    request = predict_request(images, model_name, signature_name, "image_bytes", version)
    request.inputs["boxes"].CopyFrom(tf.make_tensor_proto(pad_boxes(boxes), dtype=tf.float32))
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
        f"Images are sent as their encoded bytes (a JPEG or PNG file's content); got {type(image).__name__}."
    )


def send_rest(url, model, images, columnar=False, timeout=30, boxes=None, signature_name=SIGNATURE):
    """POST to ``<url>/v1/models/<model>:predict``; the parsed rows, one per image. With
    ``boxes`` (one ``[R, 4]`` array per image) the request is a detector's.

    Raises ``ConnectionError`` naming the URL when no server answers there,
    ``RuntimeError`` with the HTTP status and the start of the body for an answer that
    is an error or not a predict answer, and ``ValueError`` for one with a row count
    other than the images'."""
    import urllib.error
    import urllib.request

    body = (
        rest_body(images, columnar, signature_name)
        if boxes is None
        else detection_rest_body(images, boxes, columnar, signature_name)
    )
    body = json.dumps(body).encode()
    endpoint = f"{url.rstrip('/')}/v1/models/{model}:predict"
    request = urllib.request.Request(endpoint, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, text = answer.status, answer.read()
    except urllib.error.HTTPError as e:  # TF Serving puts its message in the body
        status, text = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:  # refused, unknown host, timed out
        reason = getattr(e, "reason", e)
        raise ConnectionError(
            f"No answer from TF Serving at {endpoint}: {reason} (is the server running, with its REST API "
            "on that port: tensorflow_model_server --rest_api_port?)"
        ) from e
    return _check_count(_parse_http_answer(endpoint, status, text), len(images), endpoint)


def _parse_http_answer(endpoint, status, text):
    """The rows of an HTTP answer; its status and start in the error if it is not a predict answer."""
    said = f"{endpoint} answered HTTP {status}"
    try:
        parsed = json.loads(text)
    except ValueError:  # also UnicodeDecodeError: an HTML error page, a proxy's, another server
        start = text[:200].decode("utf-8", "replace") if isinstance(text, bytes) else str(text)[:200]
        raise RuntimeError(f"{said}, not a TF Serving predict answer (JSON); it begins: {start!r}") from None
    if isinstance(parsed, dict) and "error" in parsed:
        raise RuntimeError(f"{said}: TF Serving answered with an error: {parsed['error']}")
    if status != 200:
        raise RuntimeError(f"{said}: {json.dumps(parsed)[:200]}")
    try:
        return parse_rest_response(parsed)
    except ValueError as e:
        raise RuntimeError(f"{said}, not a predict answer: {e}") from e


def _check_count(rows, count, where):
    if len(rows) != count:
        raise ValueError(f"{where} answered {len(rows)} rows for {count} images; expected one row per image.")
    return rows


def send_grpc(target, model, images, timeout=30, boxes=None, signature_name=SIGNATURE):
    """Predict over gRPC at ``host:port``; the parsed rows (``boxes``: as ``send_rest``).

    A failed call raises ``RuntimeError`` naming ``target``, the status code and the
    server's message; an answer with a row count other than the images' ``ValueError``."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    # Images of several megabytes exceed gRPC's default 4 MB message limit.
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    request = (
        predict_request(images, model, signature_name)
        if boxes is None
        else detection_request(images, boxes, model, signature_name)
    )
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout)
        except grpc.RpcError as e:
            code = e.code().name if e.code() is not None else "UNKNOWN"
            hint = " (is the server running, with gRPC on that port: --port?)" if code == "UNAVAILABLE" else ""
            raise RuntimeError(f"gRPC Predict at {target} failed with {code}: {e.details()}{hint}") from None
    return _check_count(parse_predict_response(response), len(images), f"gRPC Predict at {target}")


def load_boxes(path, image_paths):
    """Proposals for ``--boxes``: a ``.npy`` ``[R, 4]`` (one image) or a ``.npz`` with one
    ``[R, 4]`` array per image, keyed by the image's file name or its stem."""
    import os
    import zipfile

    import numpy as np

    try:
        stored = np.load(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # missing, cut short, pickled, another format
        raise ValueError(f"--boxes {path}: not a readable .npy or .npz of NumPy arrays ({e}).") from e
    if isinstance(stored, np.ndarray):
        if len(image_paths) != 1:
            raise ValueError(f"A .npy holds the boxes of one image; give a .npz for {len(image_paths)} images.")
        return [stored]
    with stored:
        out = []
        for image_path in image_paths:
            name = os.path.basename(image_path)
            for key in (name, os.path.splitext(name)[0]):
                if key in stored:
                    out.append(stored[key])
                    break
            else:
                raise ValueError(f"{path} has no boxes for {name} (keys: {sorted(stored)[:5]}...).")
        return out


def selective_search_boxes(images):
    """Selective search proposals (fast mode, 2000 at most) of encoded images (needs keras_spp and OpenCV)."""
    from keras_spp.data.voc import decode_image_bytes
    from keras_spp.detection.proposals import selective_search

    # The detector's own decoder: Pillow's convert("RGB") would clip 16-bit images.
    return [selective_search(decode_image_bytes(image)) for image in images]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--rest", help="server address, e.g. http://localhost:8501")
    where.add_argument("--grpc", help="server address, e.g. localhost:8500")
    p.add_argument("--model", default="spp", help="the model name the server was started with")
    p.add_argument("--columnar", action="store_true", help="REST: the columnar ('inputs') form")
    proposals = p.add_mutually_exclusive_group()
    proposals.add_argument("--boxes", help="detector: proposals, a .npy (one image) or .npz keyed by file name")
    proposals.add_argument(
        "--selective-search", action="store_true", help="detector: compute the proposals here (keras_spp, OpenCV)"
    )
    p.add_argument(
        "--signature", default=SIGNATURE, help="the signature to call (an RPN detector's boxes-in one: with_boxes)"
    )
    p.add_argument("images", nargs="+", help="JPEG or PNG files")
    args = p.parse_args(argv)
    if args.rest and not args.rest.startswith(("http://", "https://")):
        p.error(f"--rest takes the server's URL, e.g. http://localhost:8501; got {args.rest!r}")
    boxes = None
    try:
        images = []
        for path in args.images:
            with open(path, "rb") as f:
                images.append(f.read())
        if args.boxes:
            boxes = load_boxes(args.boxes, args.images)
        elif args.selective_search:
            boxes = selective_search_boxes(images)
        if args.rest:
            rows = send_rest(args.rest, args.model, images, args.columnar, boxes=boxes, signature_name=args.signature)
        else:
            rows = send_grpc(args.grpc, args.model, images, boxes=boxes, signature_name=args.signature)
        lines = _answer_lines(args.images, rows)
    except (OSError, RuntimeError, ValueError) as e:
        print(f"error: {e}{_hint(e, boxes)}", file=sys.stderr)
        return 1
    except Exception as e:  # whatever else a transport raises: report, do not dump a traceback
        print(f"error: {type(e).__name__}: {e}{_hint(e, boxes)}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def _answer_lines(paths, rows):
    """What the command line prints for each image's row (a ``ValueError`` for rows it cannot read)."""
    lines = []
    for path, row in zip(paths, rows, strict=True):
        if "num_detections" in row:
            found = detections(row)
            lines.append(f"{path}: {len(found)} detections")
            for d in found:
                y1, x1, y2, x2 = d["box"]
                lines.append(
                    f"  {d['label']:>12} {d['score']:6.3f}  ymin={y1:.3f} xmin={x1:.3f} ymax={y2:.3f} xmax={x2:.3f}"
                )
            continue
        labels, scores = list(row.get("labels", [])), list(row.get("scores", []))
        if len(labels) != len(scores):
            raise ValueError(f"The answer for {path} has {len(labels)} labels but {len(scores)} scores.")
        lines.append(
            f"{path}: " + ", ".join(f"{label} {float(score):.3f}" for label, score in zip(labels, scores, strict=True))
        )
    return lines


def _hint(error, boxes):
    """``NEEDS_BOXES`` after a server's refusal of images alone that names the missing boxes."""
    return f"\n{NEEDS_BOXES}" if boxes is None and "boxes" in str(error) else ""


if __name__ == "__main__":
    raise SystemExit(main())
