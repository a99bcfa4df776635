"""``SppNetDetector``'s call, image to detections, on TensorFlow, JAX and PyTorch: the
same ``.keras`` file, image and boxes on each. Prints JSON.

    python -m benchmarks.detector_backends [--backends tensorflow,jax,torch] [--repeats 5] \
        [--out benchmarks/results/detector-backends-cpu-2core.json]

A child process on TensorFlow builds one detector (ZF-5 at a quarter of its width,
one 224 px scale, the paper's pyramid, fc 512, 20 classes, an RPN) and saves it;
then each backend runs in its own child process (``KERAS_BACKEND`` is fixed per
process) and times, on one 240 x 320 image, the call with 300 given boxes and the
call without boxes (the RPN's 300 proposals from its 1000 best anchors):

* TensorFlow: ``model(images, boxes)`` as users call it, eagerly, which runs its
  ``tf.function`` (one trace per input kind): the baseline, every ratio is against it;
* JAX: eagerly (op by op; the NMS loops are ``lax.fori_loop``) and under
  ``jax.jit`` (compiled once for the image size and box count; the warm-up call
  compiles, and its time is reported apart);
* PyTorch: eagerly (``torch.compile`` unrolls the NMS loop of ``max_detections``
  steps: not timed).

``network_boxes``: ``raw_outputs(images, boxes)`` alone (conv5, pooling, heads), so
that the post-processing's share (decode, clip, per-class NMS: TensorFlow's op on
TensorFlow, ``nms_ops`` elsewhere) is the difference.

Each child also checks its detections against TensorFlow's (largest absolute
difference, and whether the detection counts and classes are equal). Times are
medians in ms after one warm-up call. The results file is written beside its place,
then renamed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.report import emit

HEIGHT, WIDTH, BOXES, CLASSES = 240, 320, 300, 20
MACHINE_NOTE = (
    "2-core AMD EPYC CPU shared with other work (another long benchmark and other jobs ran at the same time): "
    "absolute times are noisy; the ratios compare backends run one after another in the same run"
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="tensorflow,jax,torch")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None)
    p.add_argument("--child", choices=("build", "time"), help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def inputs(seed=0):
    """The image ``[1, H, W, 3]`` and ``BOXES`` boxes ``[y1, x1, y2, x2]`` every backend gets."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 255, (1, HEIGHT, WIDTH, 3)).astype(np.float32)
    corner = rng.uniform(0, [HEIGHT - 20, WIDTH - 20], (BOXES, 2))
    size = rng.uniform(16, 160, (BOXES, 2))
    boxes = np.concatenate([corner, np.minimum(corner + size, [HEIGHT, WIDTH])], axis=1)
    return image, boxes.astype(np.float32)


def build(folder):
    """Saves the detector as ``detector.keras`` in ``folder`` (on TensorFlow)."""
    import keras

    from keras_spp.detection.anchors import AnchorConfig
    from keras_spp.detection.detector import DetectionSettings
    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.detection.heads import spp_detector
    from keras_spp.detection.learned_proposals import LearnedProposals, ProposalSettings
    from keras_spp.detection.rpn import rpn_head
    from keras_spp.detection.spp_net_detector import SppNetDetector
    from keras_spp.models import backbone

    keras.utils.set_random_seed(0)
    roi = MultiScaleRoiFeatures(backbone("zf5", width=0.25), scales=(224,), name="roi_features")
    heads = spp_detector(roi, CLASSES, fc_units=512)
    rng = np.random.default_rng(1)
    for name, scale in (("fc8", 0.1), ("bbox", 0.05)):  # spread-out scores, moving boxes
        layer = heads.get_layer(name)
        layer.set_weights([rng.normal(0, scale, w.shape).astype("float32") for w in layer.get_weights()])
    anchors = AnchorConfig()
    head = rpn_head(roi.backbone.output_shape[-1], anchors.per_cell, hidden=64)
    proposer = LearnedProposals(head, roi, anchors, (0,), ProposalSettings(1000, BOXES, 0.7, 4.0))
    model = SppNetDetector(heads, [f"c{i}" for i in range(CLASSES)], head, proposer.to_dict(), DetectionSettings())
    model.save(os.path.join(folder, "detector.keras"))


def timed(fn, args, repeats):
    """``(median ms, first call ms)``: the first call warms up (traces, compiles)."""
    import keras

    def once():
        start = time.perf_counter()
        _ = [keras.ops.convert_to_numpy(v) for v in keras.tree.flatten(fn(*args))]
        return 1000 * (time.perf_counter() - start)

    first = once()
    return round(float(np.median([once() for _ in range(repeats)])), 2), round(first, 2)


def candidates(model, backend):
    """``{name: (with_boxes(images, boxes), without(images), network)}`` for
    ``backend``; ``network(images, boxes)``: ``raw_outputs``, the call without its
    post-processing (decode, clip, NMS, outputs)."""
    found = {
        "eager" if backend != "tensorflow" else "call": (
            lambda i, b: model(i, b),
            lambda i: model(i),
            lambda i, b: model.raw_outputs(i, b),
        )
    }
    if backend == "jax":
        import jax

        found["jax_jit"] = tuple(jax.jit(fn) for fn in found["eager"])
    return found


def time_backend(folder, repeats):
    """One backend's row: each candidate's times and its outputs against TensorFlow's
    (``reference.npz``, written by the TensorFlow child)."""
    from keras import backend, ops

    from keras_spp.detection.spp_net_detector import load_spp_net_detector

    name = backend.backend()
    model = load_spp_net_detector(os.path.join(folder, "detector.keras"))
    image, boxes = inputs()
    native = (ops.convert_to_tensor(image), ops.convert_to_tensor(boxes))
    reference = os.path.join(folder, "reference.npz")
    row = {"backend": name}
    for label, (with_boxes, without, network) in candidates(model, name).items():
        row[f"{label}_network_boxes_ms"], _ = timed(network, native, repeats)
        for kind, fn, args in (("boxes", with_boxes, native), ("rpn", without, native[:1])):
            row[f"{label}_{kind}_ms"], row[f"{label}_{kind}_first_call_ms"] = timed(fn, args, repeats)
            got = {k: ops.convert_to_numpy(v) for k, v in fn(*args).items()}
            if name == "tensorflow":
                np.savez(reference.replace(".npz", f"-{kind}.npz"), **got)
            want = dict(np.load(reference.replace(".npz", f"-{kind}.npz")))
            row[f"{label}_{kind}_detections"] = int(got["num_detections"][0])
            row[f"{label}_{kind}_same_classes_as_tf"] = bool(
                np.array_equal(got["detection_classes"], want["detection_classes"])
            )
            row[f"{label}_{kind}_max_abs_difference_from_tf"] = float(
                max(np.max(np.abs(got[k] - want[k])) for k in ("detection_boxes", "detection_scores"))
            )
    print(json.dumps(row))


def run_child(mode, folder, repeats, backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "benchmarks.detector_backends", "--child", mode, "--folder", folder]
    out = subprocess.run(command + ["--repeats", str(repeats)], env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def with_ratios(rows):
    """Each time divided by TensorFlow's for the same input kind (``<name>_vs_tf``)."""
    base = next(r for r in rows if r["backend"] == "tensorflow")
    for row in rows:
        for key in [k for k in row if k.endswith("_ms") and "first_call" not in k]:
            kind = "boxes" if "_boxes_" in key else "rpn"
            base_key = "call_network_boxes_ms" if "_network_" in key else f"call_{kind}_ms"
            row[key[:-3] + "_vs_tf"] = round(row[key] / base[base_key], 2)
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.child == "build":
        return build(args.folder)
    if args.child == "time":
        return time_backend(args.folder, args.repeats)
    from benchmarks.pooling import machine

    backends = args.backends.split(",")
    if backends[0] != "tensorflow":
        backends = ["tensorflow"] + [b for b in backends if b != "tensorflow"]  # the baseline first
    with tempfile.TemporaryDirectory() as folder:
        run_child("build", folder, args.repeats, "tensorflow")
        rows = [json.loads(run_child("time", folder, args.repeats, backend)) for backend in backends]
    report = {
        "benchmark": "detector_backends",
        "machine": {**machine(), "note": MACHINE_NOTE},
        "problem": {
            "image": [HEIGHT, WIDTH],
            "boxes": BOXES,
            "classes": CLASSES,
            "detector": "zf5 width 0.25, scale 224, levels (6, 3, 2, 1), fc 512, softmax scoring, NMS 0.3, "
            "score threshold 0.05, 100 detections; RPN 12 anchors a cell, 1000 best anchors to NMS 0.7, 300 kept",
        },
        "baseline": "call_<kind>_ms: model(images[, boxes]) on TensorFlow (its tf.function), same run; "
        "call_network_boxes_ms: model.raw_outputs(images, boxes) there",
        "ratio": "<candidate>_vs_tf: candidate ms / TensorFlow's ms for the same input kind (above 1: slower)",
        "backends": with_ratios(rows),
    }
    emit(report)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        staging = f"{args.out}.partial"
        with open(staging, "w") as f:
            f.write(json.dumps(report, indent=1) + "\n")
        os.replace(staging, args.out)


if __name__ == "__main__":
    main()
