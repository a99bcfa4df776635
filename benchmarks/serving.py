"""Serving latency per image of the exported SavedModel against the Keras model; prints JSON.

``--kind classifier`` (default) or ``--kind detector``. One JPEG at each of three
sizes goes, one image per call, through (classifier):
  * saved_model_session: the export as TF Serving runs it (TF1 session loader, tag
    "serve", the serving_default signature's tensors), with the network under XLA;
  * saved_model_session_no_xla: the same for an export made with --no-jit;
  * saved_model_load: the XLA export through tf.saved_model.load;
  * keras_graph: the Keras model in a tf.function traced once for any size (as
    keras_spp.data.views evaluates full images), decode and view in eager ops;
  * keras_eager: model(x) called eagerly, decode and view as above.
Every path starts from the encoded bytes and ends with the probabilities in numpy
(decode, full-image view at --min-side, network, softmax, top-k for the exports).
The calls of all paths are interleaved, so that drifts of the machine hit all alike;
p50 and p95 are over --repeats calls after one warm-up call, whose time is reported
apart (first_call_ms: tracing, and for XLA the compilation for that view size).
Not measured: TF Serving's RPC and (de)serialisation, which add to every path alike.

Detector: each image comes with --proposals boxes (seeded, in its pixels; proposal
search is outside the graph, so outside the timing too), and the paths are the
three SavedModel paths (serving_default: decode, scaling, conv, RoI pooling, heads,
box regression and per-class NMS) and keras_graph: decode, then the ``Detector``
(its tf.function for the model and ``postprocess`` for NMS). The detection scores
(best first, zero-padded to max_detections) are compared to keras_graph's.

    python -m benchmarks.serving --out benchmarks/results/serving-cpu-2core.json
    python -m benchmarks.serving --kind detector --out benchmarks/results/serving-detector-cpu-2core.json
"""

import argparse
import io
import os
import tempfile
import time

import numpy as np

from benchmarks.report import emit
from keras_spp.data.voc import decode_image_tf

SIZES = ((240, 320), (480, 640), (1080, 1920))


def jpeg(height, width):
    """A photo (scikit-image's astronaut) resized to ``height x width``, as JPEG bytes."""
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((width, height), Image.BILINEAR).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def percentiles(seconds):
    ms = 1000 * np.asarray(seconds)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def paths(model, exports, min_side, max_side):
    """``{name: fn(encoded bytes) -> probabilities [C]}``; ``exports``: ``{"xla": dir, "no_xla": dir}``."""
    import tensorflow as tf

    from keras_spp.data.transforms import resize_min_side

    def view(encoded):
        image = decode_image_tf(encoded)
        return resize_min_side(image, min_side, max_side)[tf.newaxis]

    graph = tf.function(
        lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)]
    )
    result = {}
    for name, export_dir in exports.items():
        result[f"saved_model_session{'' if name == 'xla' else '_' + name}"] = _session_path(export_dir)
    if "xla" in exports:
        signature = tf.saved_model.load(exports["xla"]).signatures["serving_default"]
        result["saved_model_load"] = lambda b: signature(image_bytes=tf.constant([b]))["probabilities"].numpy()[0]
    result["keras_graph"] = lambda b: graph(view(b)).numpy()[0]
    result["keras_eager"] = lambda b: model(view(b), training=False).numpy()[0]
    return result


def _session_path(export_dir, inputs=("image_bytes",), output="probabilities"):
    """fn(encoded bytes, *other inputs of one image) -> the output for that image."""
    import tensorflow as tf

    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
    signature = meta_graph.signature_def["serving_default"]
    feeds = [signature.inputs[name].name for name in inputs]
    fetch = signature.outputs[output].name

    def run(encoded, *others):
        values = [np.array([encoded], dtype=object)] + [np.asarray(v)[None] for v in others]
        return session.run(fetch, dict(zip(feeds, values, strict=True)))[0]

    return run


def detector_paths(detector, exports):
    """``{name: fn(encoded bytes, boxes [R, 4] px) -> detection scores [max_detections]}``."""
    import tensorflow as tf

    count = int(detector.settings.max_detections)
    result = {}
    for name, export_dir in exports.items():
        result[f"saved_model_session{'' if name == 'xla' else '_' + name}"] = _session_path(
            export_dir, inputs=("image_bytes", "boxes"), output="detection_scores"
        )
    if "xla" in exports:
        signature = tf.saved_model.load(exports["xla"]).signatures["serving_default"]
        result["saved_model_load"] = lambda b, boxes: signature(
            image_bytes=tf.constant([b]), boxes=tf.constant(boxes[None])
        )["detection_scores"].numpy()[0]

    def keras_graph(encoded, boxes):
        image = decode_image_tf(encoded).numpy()
        _, scores, _ = detector.detect(image, boxes)
        return np.pad(scores, (0, count - len(scores)))

    result["keras_graph"] = keras_graph
    return result


def random_proposals(height, width, count, seed=0, min_size=20):
    """``count`` boxes ``[y1, x1, y2, x2]`` inside the image, sides log-uniform in
    ``[min_size, side]``, as selective search's spread of sizes (float32)."""
    rng = np.random.default_rng(seed)
    boxes = np.zeros((count, 4), np.float32)
    for axis, extent in ((0, height), (1, width)):
        low = min(min_size, extent)
        side = np.exp(rng.uniform(np.log(low), np.log(extent), count))
        start = rng.uniform(0, extent - side)
        boxes[:, axis], boxes[:, axis + 2] = start, start + side
    return boxes


def random_detector(folder, width, fc_units, classes, scales, seed=0):
    """A ZF-5 SPP detector with random weights (latency does not depend on them,
    except through how many boxes pass the score threshold into NMS), saved to ``folder``."""
    import keras

    from keras_spp.detection.detector import Detector
    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.detection.heads import spp_detector
    from keras_spp.models import backbone

    keras.utils.set_random_seed(seed)
    roi = MultiScaleRoiFeatures(backbone("zf5", width=width), scales=scales, name="roi_features")
    detector = Detector(spp_detector(roi, classes, fc_units=fc_units), [str(c) for c in range(classes)])
    detector.save(folder)
    return detector


def latencies(fns, images, repeats, min_side=None, max_side=None, reference="keras_eager"):
    """Per image size: p50/p95 and first-call ms of every path, and their largest
    difference from the ``reference`` path's output (and the view's size, given the view).
    ``images``: ``{label: encoded}`` or ``{label: (encoded, extra argument of every fn)}``."""
    report = {}
    for label, encoded in images.items():
        encoded, args = encoded if isinstance(encoded, tuple) else (encoded, ())
        args = args if isinstance(args, tuple) else (args,)
        view = {}
        if min_side is not None:
            from keras_spp.data.transforms import resize_min_side

            image = decode_image_tf(encoded)
            view = {"view": list(resize_min_side(image, min_side, max_side).shape[:2])}
        first, times, outputs = {}, {name: [] for name in fns}, {}
        for name, fn in fns.items():
            start = time.perf_counter()
            outputs[name] = fn(encoded, *args)
            first[name] = round(1000 * (time.perf_counter() - start), 1)
        for _ in range(repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(encoded, *args)
                times[name].append(time.perf_counter() - start)
        expected = outputs.get(reference)
        report[label] = {
            "jpeg_kb": round(len(encoded) / 1024, 1),
            **view,
            **{
                name: {
                    **percentiles(times[name]),
                    "first_call_ms": first[name],
                    **(
                        {"max_abs_diff_vs_keras": float(np.max(np.abs(outputs[name] - expected)))}
                        if expected is not None
                        else {}
                    ),
                }
                for name in fns
            },
        }
    return report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=("classifier", "detector"), default="classifier")
    p.add_argument(
        "--model",
        help="a .keras classifier, or a detector's folder (default: ZF-5 with random weights, --width, --fc-units)",
    )
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--fc-units", type=int, default=512)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--min-side", type=int, default=256, help="the classifier's full-image view")
    p.add_argument("--scales", default="688", help="the random detector's scales")
    p.add_argument("--proposals", type=int, default=300, help="boxes sent with each image (detector)")
    p.add_argument("--max-side", type=int, default=2048)
    p.add_argument("--sizes", default=",".join(f"{h}x{w}" for h, w in SIZES), help="HxW,HxW,... of the JPEGs")
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s]
    if args.kind == "detector":
        return _detector_main(args, sizes)

    import keras

    import keras_spp.layers  # noqa: F401  (custom layers for load_model)
    from benchmarks.pooling import machine
    from export.saved_model import export
    from keras_spp.models import zf5

    with tempfile.TemporaryDirectory() as scratch:
        if args.model:
            model_path = args.model
            model = keras.saving.load_model(model_path, compile=False)
            described = {"model": os.path.abspath(model_path)}
        else:
            keras.utils.set_random_seed(0)
            model = zf5(args.classes, width=args.width, fc_units=args.fc_units)
            model_path = os.path.join(scratch, "model", "model.keras")
            os.makedirs(os.path.dirname(model_path))
            model.save(model_path)
            described = {
                "backbone": "zf5",
                "head": "spp",
                "width": args.width,
                "fc_units": args.fc_units,
                "classes": args.classes,
                "weights": "random (latency does not depend on them)",
            }
        labels = os.path.join(scratch, "labels.txt")
        with open(labels, "w") as f:
            f.write("".join(f"class {i}\n" for i in range(model.outputs[0].shape[-1])))
        exports = {}
        for name, jit in (("xla", True), ("no_xla", False)):
            exports[name] = export(
                model_path,
                "classifier",
                os.path.join(scratch, name, "1"),
                labels=labels,
                min_side=args.min_side,
                max_side=args.max_side,
                jit=jit,
            )
        fns = paths(model, exports, args.min_side, args.max_side)
        images = {f"{h}x{w}": jpeg(h, w) for h, w in sizes}
        report = {
            "machine": machine(),
            "model": described,
            "view": {"min_side": args.min_side, "max_side": args.max_side},
            "repeats": args.repeats,
            "batch": 1,
            "latency_per_image": latencies(fns, images, args.repeats, args.min_side, args.max_side),
        }
    emit(report, args.out)
    return 0


def _detector_main(args, sizes):
    from benchmarks.pooling import machine
    from export.saved_model import export
    from keras_spp.detection.detector import Detector

    with tempfile.TemporaryDirectory() as scratch:
        if args.model:
            folder = args.model
            detector = Detector.load(folder)
            described = {"model": os.path.abspath(folder)}
        else:
            folder = os.path.join(scratch, "detector")
            scales = tuple(int(v) for v in args.scales.split(","))
            detector = random_detector(folder, args.width, args.fc_units, args.classes, scales)
            described = {
                "backbone": "zf5",
                "head": "spp_detector",
                "width": args.width,
                "fc_units": args.fc_units,
                "classes": args.classes,
                "scales": list(scales),
                "weights": "random (near-uniform softmax: every window passes the score threshold)",
            }
        exports = {}
        for name, jit in (("xla", True), ("no_xla", False)):
            exports[name] = export(folder, "detector", os.path.join(scratch, name, "1"), jit=jit)
        fns = detector_paths(detector, exports)
        images = {f"{h}x{w}": (jpeg(h, w), random_proposals(h, w, args.proposals, seed=h)) for h, w in sizes}
        report = {
            "machine": machine(),
            "kind": "detector",
            "model": described,
            "settings": {
                k: getattr(detector.settings, k)
                for k in ("scoring", "box_regression", "nms_iou", "score_threshold", "max_detections")
            },
            "proposals_per_image": args.proposals,
            "repeats": args.repeats,
            "batch": 1,
            "latency_per_image": latencies(fns, images, args.repeats, reference="keras_graph"),
        }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
