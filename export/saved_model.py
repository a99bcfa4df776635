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
name TF Serving ignores, then renamed (``keras_spp.folders``); with ``--overwrite``
the old version is renamed aside first and removed only once the new one is in
place. Folders left beside it by an export that was killed are removed by the next.

The network runs under XLA in the serving functions (``--jit auto``, the default:
unless it computes in bfloat16 or float16; ``--jit on|off``, ``--no-jit``).
TF Serving runs XLA programs only when started with ``--xla_cpu_compilation_enabled=true``
(CPU) or ``--xla_gpu_compilation_enabled=true`` (GPU); without the flag such a
model fails at load (its warmup) and ``--no-jit`` exports are the ones to serve.

Kinds: ``KINDS[name]`` is a ``export.kinds.ServingKind``: ``options`` turns the
command line into the kind's ``meta``, and ``KINDS[name](model, meta)`` holds the
serving endpoints of a loaded Keras model, their signatures, the Keras reference
and the verification cases (``export.kinds`` says what each is).
"""

import argparse
import io
import json
import os
import shutil
import sys
import tempfile

from export.classifier import ClassifierKind
from export.detector import DetectorKind
from export.images import MAX_PIXELS, MAX_SIDE
from keras_spp import folders
from keras_spp.tensorflow_only import require_tensorflow
from keras_spp.validation import positive_int

# A new kind is one more entry: a subclass of export.kinds.ServingKind.
KINDS = {kind.name: kind for kind in (ClassifierKind, DetectorKind)}

REFERENCE_DIR = os.path.join("assets.extra", "reference")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def export(
    model_path,
    kind,
    out,
    labels=None,
    top_k=None,
    min_side=None,
    max_side=None,
    max_pixels=MAX_PIXELS,
    jit="auto",
    overwrite=False,
    settings=None,
):
    """Export ``model_path`` (a ``.keras`` file; a detector's folder) as kind ``kind``
    into the version folder ``out``.

    ``top_k`` (default 5) and ``min_side`` are the classifier's; ``max_side`` defaults
    to 2048 for the classifier and to the model's own for the detector; ``settings``:
    the detector's ``{DetectionSettings field: value}`` overriding its ``detector.json``.
    ``jit``: XLA in the serving functions, ``True``, ``False`` or ``"auto"``: XLA
    unless the model computes in bfloat16 or float16 (XLA's kernels round those
    differently from the ones Keras ran, and the served scores would move by up to
    1e-2 from the Keras model's; in float32 they agree to 1e-5). Returns ``out``.
    Raises ``ValueError`` (or ``FileNotFoundError``) saying what was wrong and what is
    accepted; nothing is written then.
    """
    require_tensorflow("export.saved_model (SavedModels for TF Serving)")
    if kind not in KINDS:
        raise ValueError(f"Unknown --kind {kind!r}; known: {', '.join(sorted(KINDS))}.")
    out = os.path.abspath(out)
    _check_out(out, overwrite)
    for name, value in (("--max-side", max_side), ("--max-pixels", max_pixels)):
        if value is not None:
            positive_int(name, value)
    options = {"top_k": top_k, "min_side": min_side, "max_side": max_side, "settings": settings}
    model_path, names, extra = KINDS[kind].options(model_path, labels, options)

    import keras_spp.detection.heads  # noqa: F401  (registers the detectors' window feature layers)
    import keras_spp.layers  # noqa: F401  (registers the custom layers that load_model meets)
    from keras_spp.models.saving import load_keras_model

    model = load_keras_model(model_path, "--model", compile=False)
    if jit == "auto":
        jit = not mixed_precision(model)
    elif not isinstance(jit, bool):
        raise ValueError(f"`jit` must be True, False or 'auto'; got {jit!r}.")
    with tempfile.TemporaryDirectory() as scratch:
        labels_file = os.path.join(scratch, "labels.txt")
        with open(labels_file, "w", encoding="utf-8") as f:
            f.write("".join(f"{name}\n" for name in names))
        meta = {"labels": names, "labels_file": labels_file, "max_pixels": max_pixels, "jit": bool(jit), **extra}
        _write(KINDS[kind](model, meta), model, out)
    return out


def mixed_precision(model):
    """Whether some layer of ``model`` (nested ones included) computes in bfloat16 or float16."""
    return any(
        layer.dtype_policy.compute_dtype in ("bfloat16", "float16")
        for layer in model._flatten_layers(include_self=True, recursive=True)
    )


def _check_out(out, overwrite):
    version = os.path.basename(out)
    if not version.isdigit():
        raise ValueError(
            f"--out must name a version folder, <base>/<integer> (e.g. exported/spp/1); TF Serving loads "
            f"only numbered folders and {version!r} is not a number."
        )
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} exists and is not a folder; give a version folder, <base>/<integer>.")
    if os.path.exists(out) and os.listdir(out) and not overwrite:
        raise ValueError(f"{out} exists and is not empty; export a new version number, or pass --overwrite.")


def _write(serving, model, out):
    """The SavedModel of ``serving`` (a ``ServingKind`` of ``model``) and its reference,
    written beside ``out`` and renamed to it."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    for resource in serving.track:
        archive.track(resource)
    for name, (fn, signature) in serving.endpoints.items():
        archive.add_endpoint(name, fn, signature)
    # Staging names TF Serving skips (not numbers): a server polling <base> never loads
    # a half-written version, and --overwrite serves the old one until the new is in.
    # Any version's leftovers of a killed export go first.
    folders.remove_stale(os.path.dirname(out))
    staging = folders.staging_folder(out)
    try:
        archive.write_out(staging, verbose=False)
        _write_reference(staging, serving)
        folders.replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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

    chelsea = data.chelsea()  # 300 x 451, landscape
    astronaut = resized(data.astronaut(), 160, 160)  # square
    coffee = data.coffee()[40:340, 200:380]  # 300 x 180, portrait
    panorama = resized(data.rocket(), 36, 360)  # 1 : 10
    return [
        ("chelsea-300x451.jpg", encode(chelsea, "JPEG", quality=90)),
        ("astronaut-160x160.png", encode(astronaut, "PNG")),
        ("coffee-300x180.jpg", encode(coffee, "JPEG", quality=90)),
        ("panorama-36x360.png", encode(panorama, "PNG")),
    ]


def _write_reference(root, serving):
    """Reference images, the Keras model's outputs for them and the warmup requests."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from export.client_requests import tensor_request
    from keras_spp.data.voc import decode_image_tf

    folder = os.path.join(root, REFERENCE_DIR)
    os.makedirs(folder)
    files = reference_images()
    decoded = {name: decode_image_tf(encoded).numpy() for name, encoded in files}
    cases, warmup, extra = serving.cases(files, decoded)
    for name, encoded in files + extra:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(encoded)
    reference = {
        "kind": serving.name,
        "format": 1,
        "xla": serving.meta["jit"],
        **serving.about(),
        "assets": ["labels.txt"],
        "signatures": serving.signatures,
        "compare": serving.compare,
        "cases": cases,
    }
    with open(os.path.join(folder, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(reference, f, indent=1)
    with tf.io.TFRecordWriter(os.path.join(root, WARMUP_FILE)) as writer:
        for inputs in warmup:
            request = tensor_request(inputs, model_name="", signature_name=serving.bytes_input[0])
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the .keras file (a detector: its folder, or its model.keras)")
    p.add_argument("--kind", required=True, choices=sorted(KINDS))
    p.add_argument("--out", required=True, help="the version folder, <base>/<integer>")
    p.add_argument(
        "--labels",
        help="class names, one per line (default: results.json next to the model; a detector: its detector.json)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        help="classifier: ids, names and scores returned per image (default 5, at most the classes)",
    )
    p.add_argument("--min-side", type=int, help="classifier: the full-image view's min side (default: the training's)")
    p.add_argument(
        "--max-side",
        type=int,
        help=f"classifier: the view's longer side at most (default {MAX_SIDE}); detector: larger images "
        "are first resized to this longer side (default: the detector's max side, 2000)",
    )
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="larger images are refused before decoding")
    p.add_argument(
        "--jit",
        default="auto",
        choices=["auto", "on", "off"],
        help="XLA in the serving functions; auto: unless the model computes in bfloat16 or float16, whose "
        "XLA kernels round differently from Keras's (served scores would differ by up to 1e-2)",
    )
    p.add_argument("--no-jit", action="store_true", help="the same as --jit off")
    p.add_argument("--scoring", choices=["softmax", "svm"], help="detector: scores (default: detector.json's)")
    p.add_argument("--score-threshold", type=float, help="detector: keep scores above this (default: detector.json's)")
    p.add_argument(
        "--max-detections",
        type=int,
        help="detector: detections per image, the outputs' second dimension (default: detector.json's)",
    )
    p.add_argument("--nms-iou", type=float, help="detector: per-class NMS IoU threshold (default: detector.json's)")
    p.add_argument("--no-box-regression", action="store_true", help="detector: proposals as they are, not regressed")
    p.add_argument(
        "--vote-iou",
        type=float,
        help="detector: box voting after NMS with windows overlapping this much (default: detector.json's)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    args = p.parse_args(argv)
    settings = {
        "scoring": args.scoring,
        "score_threshold": args.score_threshold,
        "max_detections": args.max_detections,
        "nms_iou": args.nms_iou,
        "vote_iou": args.vote_iou,
        "box_regression": False if args.no_box_regression else None,
    }
    settings = {k: v for k, v in settings.items() if v is not None}
    try:
        out = export(
            args.model,
            args.kind,
            args.out,
            labels=args.labels,
            top_k=args.top_k,
            min_side=args.min_side,
            max_side=args.max_side,
            max_pixels=args.max_pixels,
            jit=False if args.no_jit else {"auto": "auto", "on": True, "off": False}[args.jit],
            overwrite=args.overwrite,
            settings=settings,
        )
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} (check it with: python -m export.verify {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
