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
import json
import sys

from export.client_answers import detections, parse_predict_response, parse_rest_response
from export.client_requests import (
    INPUT,
    SIGNATURE,
    detection_request,
    detection_rest_body,
    pad_boxes,
    predict_request,
    rest_body,
    tensor_request,
)

# Requests and answers are built and read in modules of their own; this one is the
# client's single import all the same, whichever module defines a name.
__all__ = [
    "INPUT",
    "NEEDS_BOXES",
    "SIGNATURE",
    "detection_request",
    "detection_rest_body",
    "detections",
    "load_boxes",
    "main",
    "pad_boxes",
    "parse_predict_response",
    "parse_rest_response",
    "predict_request",
    "rest_body",
    "selective_search_boxes",
    "send_grpc",
    "send_rest",
    "tensor_request",
]

NEEDS_BOXES = (
    "this detector export takes each image's proposals beside it (it has no RPN): pass --boxes or "
    "--selective-search, or export a detector trained with `python -m recipes.train_detector "
    "--proposals rpn`, whose serving_default takes images alone."
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
