"""Export a Keras model as a SavedModel in TF Serving's versioned layout.

    python -m export.saved_model --model outputs/classifier/model.keras \\
        --kind classifier --out exported/spp/1
    python -m export.saved_model --model outputs/detector/detector \\
        --kind detector --out exported/spp-detector/1 [--scoring svm] [--score-threshold 0.05] \\
        [--max-detections 100] [--nms-iou 0.3] [--no-box-regression]

Writes ``<out>`` (the version folder TF Serving loads, ``<base>/<integer>``):

* ``saved_model.pb``, ``variables/``: written by Keras 3's ``ExportArchive``, one
  endpoint per signature of the kind (``export.classifier`` for "classifier").
* ``assets/labels.txt``: the label map, one class name per line in class-id order,
  read by the graph at load time. Taken from ``--labels FILE`` or else from the
  ``classes`` of the ``results.json`` that ``recipes.train_classifier`` writes next
  to the model (a detector: the ``class_names`` of its ``detector.json``).
* ``assets.extra/``: ``tf_serving_warmup_requests`` (TF Serving replays them at load,
  which also compiles the XLA programs of their image sizes), and ``reference/``:
  images of several sizes, ``reference.json`` with the Keras model's outputs for them
  and the expected signatures, which ``python -m export.verify <out>`` checks without
  keras_spp.

The full-image view's min side is ``--min-side`` or the training's (``config.min_side``
in ``results.json``); ``--max-side`` and ``--max-pixels`` as in ``export.images``.

The detector (``export.detector``): ``--model`` is the folder that
``recipes.train_detector`` writes (``model.keras`` and ``detector.json``) or its
``model.keras``. The test-time settings (``DetectionSettings``) are the
``detector.json``'s, each replaceable by its flag (``--scoring``,
``--score-threshold``, ``--max-detections``, ``--nms-iou``, ``--no-box-regression``, ``--vote-iou``);
they are fixed in the graph. ``--max-side`` defaults to the detector's own max side
(2000); ``--min-side`` and ``--top-k`` are the classifier's and refused here.
The folder appears whole or not at all: it is written beside ``<out>`` under a
name TF Serving ignores, then renamed.

The network runs under XLA in the serving functions (``--no-jit`` to leave it out).
TF Serving runs XLA programs only when started with ``--xla_cpu_compilation_enabled=true``
(CPU) or ``--xla_gpu_compilation_enabled=true`` (GPU); without the flag such a
model fails at load (its warmup) and ``--no-jit`` exports are the ones to serve.

Kinds: ``KINDS[name](model, meta) -> spec`` builds the serving endpoints of a loaded
Keras model. ``meta``: ``labels`` (names in id order), ``labels_file`` (them, one per
line: track a table on it and it becomes ``assets/labels.txt``), ``min_side``,
``max_side``, ``max_pixels``, ``top_k``, ``jit`` (the detector: ``settings``, a
``DetectionSettings``, no ``min_side`` nor ``top_k``; it may set ``max_side`` and
``jit`` to what it applied). ``spec``:

* ``endpoints``: ``{signature: (fn, [tf.TensorSpec(shape, dtype, name=input)])}``, one
  of them ``serving_default``; each ``fn`` returns a dict of output tensors.
* ``track``: what the endpoints use beside the model's variables (lookup tables).
* ``signatures``: ``{signature: {"inputs": {name: [dtype, shape]}, "outputs": ...}}``
  with dtypes as ``DT_FLOAT`` and -1 for unknown dims: what ``saved_model_cli`` must show.
* ``bytes_input``, ``float_input``: ``(signature, input)`` of the encoded-image input
  and of the pixel input, which the reference cases feed.
* ``reference``: ``fn([uint8 [H, W, 3], ...]) -> {output: numpy [N, ...]}``, the Keras
  model's answer for decoded images, the expectation of both inputs.
* ``compare``: ``{output: {"atol": x}}`` for floats, ``{output: {"ties_by": other}}``
  for values compared exactly except between near-tied neighbours of ``other``.
* ``smallest_side``: pixels per side the network needs (an error case uses it).
* optional ``cases``: ``fn(files, decoded) -> (cases, warmup, extra files)``, the
  kind's own reference cases (as ``reference.json`` stores them; inputs beside the
  images given as ``{"dtype", "shape", "values"}``), warmup inputs (``[{input: numpy
  array}]`` for ``serving_default``) and ``[(name, bytes)]`` more files for the
  reference folder, for kinds whose inputs are more than images; and
  ``about``, a dict stored in ``reference.json`` under the kind's name.
"""

import argparse
import io
import json
import os
import shutil
import sys
import tempfile

from export import classifier as classifier_kind
from export import detector as detector_kind
from export.encoding import b64
from export.encoding import jsonable
from export.encoding import png_bytes
from export.images import MAX_PIXELS
from export.images import MAX_SIDE
from keras_spp.validation import positive_int

# A new kind is one more entry; the module docstring says what it returns.
KINDS = {"classifier": classifier_kind.classifier, "detector": detector_kind.detector}

REFERENCE_DIR = os.path.join("assets.extra", "reference")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def export(model_path, kind, out, labels=None, top_k=None, min_side=None, max_side=None,
           max_pixels=MAX_PIXELS, jit=True, overwrite=False, settings=None):
    """Export ``model_path`` (a ``.keras`` file; a detector's folder) as kind ``kind``
    into the version folder ``out``.

    ``top_k`` (default 5) and ``min_side`` are the classifier's; ``max_side`` defaults
    to 2048 for the classifier and to the model's own for the detector; ``settings``:
    the detector's ``{DetectionSettings field: value}`` overriding its ``detector.json``.
    Returns ``out``. Raises ``ValueError`` (or ``FileNotFoundError``) saying what was
    wrong and what is accepted; nothing is written then.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown --kind {kind!r}; known: {', '.join(sorted(KINDS))}.")
    out = os.path.abspath(out)
    version = os.path.basename(out)
    if not version.isdigit():
        raise ValueError(
            f"--out must name a version folder, <base>/<integer> (e.g. exported/spp/1); TF Serving loads "
            f"only numbered folders and {version!r} is not a number."
        )
    if os.path.exists(out) and os.listdir(out) and not overwrite:
        raise ValueError(f"{out} exists and is not empty; export a new version number, or pass --overwrite.")
    for name, value in (("--max-side", max_side), ("--max-pixels", max_pixels)):
        if value is not None:
            positive_int(name, value)
    if kind == "detector":
        given = [flag for flag, value in (("--top-k", top_k), ("--min-side", min_side)) if value is not None]
        if given:
            raise ValueError(f"{' and '.join(given)} are classifier options: a detector's image scales are in its "
                             "model, and it returns up to --max-detections detections per image.")
        model_path, detector_json = detector_kind.resolve(model_path)
        stored_names, stored_settings, _ = detector_kind.read_detector_json(detector_json)
        found = {"classes": stored_names} if stored_names is not None else None
        names = _labels(labels, found, model_path, "a detector.json with 'class_names'")
        detection_settings = detector_kind.settings_from(stored_settings, settings or {})
        extra = {"settings": detection_settings, "min_side": None, "top_k": None}
    else:
        if settings and any(v is not None for v in settings.values()):
            raise ValueError(f"Detection settings ({', '.join(detector_kind.SETTING_FLAGS[k] for k in settings)}) "
                             "are options of --kind detector.")
        top_k = 5 if top_k is None else top_k
        max_side = MAX_SIDE if max_side is None else max_side
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"No model file at {model_path} (a .keras file saved by Keras 3).")
        positive_int("--top-k", top_k)
        results = _results_next_to(model_path)
        names = _labels(labels, results, model_path)
        min_side = _min_side(min_side, results, model_path)
        if max_side < min_side:
            raise ValueError(f"--max-side ({max_side}) must be at least the min side ({min_side}).")
        extra = {"min_side": min_side, "top_k": top_k}

    import keras
    import tensorflow as tf

    import keras_spp.detection.heads  # noqa: F401  (registers the detectors' window feature layers)
    import keras_spp.layers  # noqa: F401  (registers the custom layers that load_model meets)
    from keras_spp.models.saving import load_keras_model

    model = load_keras_model(model_path, "--model", compile=False)
    parent = os.path.dirname(out)
    with tempfile.TemporaryDirectory() as scratch:
        labels_file = os.path.join(scratch, "labels.txt")
        with open(labels_file, "w", encoding="utf-8") as f:
            f.write("".join(f"{name}\n" for name in names))
        meta = {"labels": names, "labels_file": labels_file, "max_side": max_side, "max_pixels": max_pixels,
                "jit": bool(jit), **extra}
        if kind == "detector":
            meta["proposer"] = detector_kind.read_proposer(detector_json, model)
        spec = KINDS[kind](model, meta)
        archive = keras.export.ExportArchive()
        archive.track(model)
        for resource in spec["track"]:
            archive.track(resource)
        for name, (fn, signature) in spec["endpoints"].items():
            archive.add_endpoint(name, fn, signature)
        # A name TF Serving skips (not a number), so that a server polling <base> never
        # loads a half-written version.
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{version}.partial-", dir=parent)
        try:
            archive.write_out(staging, verbose=False)
            _write_reference(staging, spec, kind, meta, tf)
            if os.path.exists(out):
                shutil.rmtree(out)
            os.replace(staging, out)
        finally:
            if os.path.exists(staging):
                shutil.rmtree(staging)
    return out


def _results_next_to(model_path):
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "results.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not readable JSON ({e}); fix it or pass --labels and --min-side.") from e


def _labels(labels, results, model_path, wanted="a results.json with 'classes'"):
    if labels is not None:
        with open(labels, encoding="utf-8") as f:
            names = [line.rstrip("\r\n") for line in f]
        while names and names[-1] == "":  # a trailing blank line is not a class
            names.pop()
        source = labels
    elif results is not None and "classes" in results:
        names, source = [str(c) for c in results["classes"]], "results.json"
    else:
        raise ValueError(
            f"No label map: there is no {wanted} next to {model_path}; "
            "pass --labels FILE, one class name per line in class-id order."
        )
    if not names:
        raise ValueError(f"The label map from {source} is empty; give one name per class.")
    bad = [n for n in names if "\n" in n or "\r" in n]
    if bad:
        raise ValueError(f"Class names must be single lines (they are stored one per line); got {bad[:3]}.")
    return names


def _min_side(min_side, results, model_path):
    if min_side is None and results is not None:
        min_side = results.get("config", {}).get("min_side")
    if min_side is None:
        raise ValueError(
            f"No min side for the full-image view: results.json next to {model_path} has no config.min_side; "
            "pass --min-side (the training's, e.g. 256 for ImageNet-like data, 128 for mnist-scenes)."
        )
    if not isinstance(min_side, int) or min_side < 1:
        raise ValueError(f"The min side must be a positive integer; got {min_side!r}.")
    return min_side


def reference_images():
    """``[(file name, encoded bytes)]``: photos that ship with scikit-image, at sizes
    and aspect ratios that give three different view shapes, and a 1 : 10 panorama
    that the max side caps (at min sides above ``max_side / 10``: 205 px and up at
    the default max side)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    def encode(array, fmt, **options):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, fmt, **options)
        return buffer.getvalue()

    def resized(array, height, width):
        return np.asarray(Image.fromarray(array).resize((width, height), Image.BILINEAR))

    chelsea = data.chelsea()                       # 300 x 451, landscape
    astronaut = resized(data.astronaut(), 160, 160)  # square
    coffee = data.coffee()[40:340, 200:380]         # 300 x 180, portrait
    panorama = resized(data.rocket(), 36, 360)      # 1 : 10
    return [
        ("chelsea-300x451.jpg", encode(chelsea, "JPEG", quality=90)),
        ("astronaut-160x160.png", encode(astronaut, "PNG")),
        ("coffee-300x180.jpg", encode(coffee, "JPEG", quality=90)),
        ("panorama-36x360.png", encode(panorama, "PNG")),
    ]


def _write_reference(root, spec, kind, meta, tf):
    """Reference images, the Keras model's outputs for them and the warmup requests."""
    from export.client import predict_request
    from export.client import tensor_request

    folder = os.path.join(root, REFERENCE_DIR)
    os.makedirs(folder)
    files = reference_images()
    for name, encoded in files:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(encoded)
    names = [name for name, _ in files]
    decoded = {name: tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()
               for name, encoded in files}
    bytes_signature, bytes_input = spec["bytes_input"]
    if "cases" in spec:
        cases, warmup, extra = spec["cases"](files, decoded)
        for name, encoded in extra:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(encoded)
    else:
        cases, warmup = _classifier_cases(files, decoded, spec, names, names[0]), None
    reference = {
        "kind": kind,
        "format": 1,
        "xla": meta["jit"],
        **({kind: spec["about"]} if "about" in spec else {
            "view": {"min_side": meta["min_side"], "max_side": meta["max_side"], "max_pixels": meta["max_pixels"],
                     "smallest_side": spec["smallest_side"]}}),
        "assets": ["labels.txt"],
        "signatures": spec["signatures"],
        "compare": spec["compare"],
        "cases": cases,
    }
    with open(os.path.join(folder, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(reference, f, indent=1)

    from tensorflow_serving.apis import prediction_log_pb2

    with tf.io.TFRecordWriter(os.path.join(root, WARMUP_FILE)) as writer:
        if warmup is None:  # one request per size: each compiles its own XLA program
            requests = [predict_request([encoded], model_name="", signature_name=bytes_signature,
                                        input_name=bytes_input) for _, encoded in files]
        else:
            requests = [tensor_request(inputs, model_name="", signature_name=bytes_signature) for inputs in warmup]
        for request in requests:
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _classifier_cases(files, decoded, spec, names, first):
    import numpy as np

    bytes_signature, bytes_input = spec["bytes_input"]
    float_signature, float_input = spec["float_input"]
    cases = [
        {"name": "images of several sizes, JPEG and PNG, in one batch", "signature": bytes_signature,
         "inputs": {bytes_input: {"files": names}},
         "outputs": jsonable(spec["reference"]([decoded[n] for n in names]))},
        {"name": "float pixels, a batch of two", "signature": float_signature,
         "inputs": {float_input: {"decoded_files": [first, first]}},
         "outputs": jsonable(spec["reference"]([decoded[first], decoded[first]]))},
        {"name": "empty batch", "signature": bytes_signature, "inputs": {bytes_input: {"b64": []}},
         "outputs": jsonable(spec["reference"]([]))},
        {"name": "bytes that are no image", "signature": bytes_signature,
         "inputs": {bytes_input: {"b64": [b64(files[0][1]), b64(b"<html>not an image</html>")]}},
         "error": {"type": "InvalidArgumentError", "contains": "not JPEG or PNG data"}},
        {"name": "truncated JPEG", "signature": bytes_signature,
         "inputs": {bytes_input: {"b64": [b64(files[0][1][: len(files[0][1]) // 3])]}},
         "error": {"type": "InvalidArgumentError", "contains": ""}},
    ]
    if spec["smallest_side"] > 1:  # 1 x 2000 px: its view is about 1 px high at any max side up to 2000
        line = np.zeros((1, 2000, 3), np.uint8)
        cases.append({"name": "an image too elongated for the network", "signature": bytes_signature,
                      "inputs": {bytes_input: {"b64": [b64(png_bytes(line))]}},
                      "error": {"type": "InvalidArgumentError", "contains": "too elongated"}})
    return cases


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the .keras file (a detector: its folder, or its model.keras)")
    p.add_argument("--kind", required=True, choices=sorted(KINDS))
    p.add_argument("--out", required=True, help="the version folder, <base>/<integer>")
    p.add_argument("--labels", help="class names, one per line (default: results.json next to the model; "
                                    "a detector: its detector.json)")
    p.add_argument("--top-k", type=int,
                   help="classifier: ids, names and scores returned per image (default 5, at most the classes)")
    p.add_argument("--min-side", type=int, help="classifier: the full-image view's min side (default: the training's)")
    p.add_argument("--max-side", type=int,
                   help=f"classifier: the view's longer side at most (default {MAX_SIDE}); detector: larger images "
                        "are first resized to this longer side (default: the detector's max side, 2000)")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="larger images are refused before decoding")
    p.add_argument("--no-jit", action="store_true", help="no XLA in the serving functions")
    p.add_argument("--scoring", choices=["softmax", "svm"], help="detector: scores (default: detector.json's)")
    p.add_argument("--score-threshold", type=float, help="detector: keep scores above this (default: detector.json's)")
    p.add_argument("--max-detections", type=int,
                   help="detector: detections per image, the outputs' second dimension (default: detector.json's)")
    p.add_argument("--nms-iou", type=float, help="detector: per-class NMS IoU threshold (default: detector.json's)")
    p.add_argument("--no-box-regression", action="store_true", help="detector: proposals as they are, not regressed")
    p.add_argument("--vote-iou", type=float,
                   help="detector: box voting after NMS with windows overlapping this much (default: detector.json's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    args = p.parse_args(argv)
    settings = {"scoring": args.scoring, "score_threshold": args.score_threshold,
                "max_detections": args.max_detections, "nms_iou": args.nms_iou, "vote_iou": args.vote_iou,
                "box_regression": False if args.no_box_regression else None}
    settings = {k: v for k, v in settings.items() if v is not None}
    try:
        out = export(args.model, args.kind, args.out, labels=args.labels, top_k=args.top_k, min_side=args.min_side,
                     max_side=args.max_side, max_pixels=args.max_pixels, jit=not args.no_jit, overwrite=args.overwrite,
                     settings=settings)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} (check it with: python -m export.verify {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
