"""Per-class NMS at the detector's shape: TensorFlow's op path
(``keras_spp.detection.nms``, what the detector runs) against the ``keras.ops``
version (``keras_spp.detection.nms_ops``) on TensorFlow, JAX and PyTorch. Prints JSON.

    python -m benchmarks.nms_backends [--backends tensorflow,jax,torch] [--repeats 15] \
        [--out benchmarks/results/nms-backends-cpu-2core.json]

Each backend runs in a child process with ``KERAS_BACKEND`` set, and times there both
the TF op path in ``tf.function`` (the baseline: every ratio is against it, measured in
the same process) and the ``keras.ops`` version: eagerly, in ``tf.function`` with and
without XLA on TensorFlow, under ``jax.jit`` on JAX, eagerly on PyTorch
(``torch.compile`` unrolls the ``max_detections``-step loop: not timed). Inputs are
per-class boxes ``[R, 20, 4]`` after box regression and the detector's defaults (IoU
0.3, score threshold 0.05, 100 detections): ``softmax`` scores are a 21-way softmax
without the background column (what the detector scores), ``uniform`` ones put every
candidate above the threshold (the worst case for both). Times are medians in ms.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.report import emit

PROBLEMS = (("softmax", 2000), ("softmax", 300), ("uniform", 2000))
SETTINGS = {"iou_threshold": 0.3, "score_threshold": 0.05, "max_detections": 100}
CLASSES = 20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="tensorflow,jax,torch")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def problem(kind, rows, seed=0):
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(0, 500, (rows, CLASSES, 4)).astype(np.float32)
    boxes[..., 2:] = boxes[..., :2] + rng.uniform(10, 200, (rows, CLASSES, 2)).astype(np.float32)
    if kind == "uniform":
        return boxes, rng.uniform(0.06, 1.0, (rows, CLASSES)).astype(np.float32)
    logits = rng.normal(scale=2.0, size=(rows, CLASSES + 1))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return boxes, probabilities[:, 1:].astype(np.float32)


def timed(fn, args, repeats):
    """Median ms of ``fn(*args)`` after one warm-up (compiling) call; fewer repeats for
    slow candidates, at least 3."""
    from keras import ops

    def once():
        start = time.perf_counter()
        _ = [ops.convert_to_numpy(t) for t in fn(*args)]
        return time.perf_counter() - start

    first = once()
    runs = max(3, min(repeats, int(5.0 / max(first, 1e-6))))
    return round(1000 * float(np.median([once() for _ in range(runs)])), 2)


def candidates(backend):
    """``{name: fn(boxes, scores)}`` of the ``keras.ops`` version on ``backend``."""
    from keras_spp.detection import nms_ops

    def padded(b, s):
        return nms_ops.per_class_nms(b, s, padded=True, **SETTINGS)[:3]

    found = {"keras_ops_eager": lambda b, s: nms_ops.per_class_nms(b, s, **SETTINGS)}
    if backend == "tensorflow":
        import tensorflow as tf

        found["keras_ops_tf_function"] = tf.function(padded)
        found["keras_ops_tf_function_xla"] = tf.function(padded, jit_compile=True)
    elif backend == "jax":
        import jax

        found["keras_ops_jax_jit"] = jax.jit(padded)
    return found


def child(repeats):
    import tensorflow as tf
    from keras import backend, ops

    from keras_spp.detection import nms

    name = backend.backend()
    baseline = tf.function(lambda b, s: nms.per_class_nms(b, s, **SETTINGS))
    rows = []
    for kind, num_rows in PROBLEMS:
        boxes, scores = problem(kind, num_rows)
        expected = [t.numpy() for t in baseline(boxes, scores)]
        count = len(expected[1])
        row = {"scores": kind, "rows": num_rows, "classes": CLASSES, "detections": count}
        row["candidates_above_threshold"] = int((scores > SETTINGS["score_threshold"]).sum())
        row["tf_op_tf_function_ms"] = timed(baseline, (tf.constant(boxes), tf.constant(scores)), repeats)
        if name == "tensorflow":
            row["tf_op_eager_ms"] = timed(lambda b, s: nms.per_class_nms(b, s, **SETTINGS), (boxes, scores), repeats)
        native = (ops.convert_to_tensor(boxes), ops.convert_to_tensor(scores))
        for label, fn in candidates(name).items():
            got = [ops.convert_to_numpy(t)[:count] for t in fn(*native)]
            row[f"{label}_equal_to_tf_op"] = all(np.array_equal(g, e) for g, e in zip(got, expected))
            row[f"{label}_ms"] = timed(fn, native, repeats)
        for key in [k for k in row if k.endswith("_ms") and k != "tf_op_tf_function_ms"]:
            row[key[:-3] + "_vs_tf_op"] = round(row[key] / row["tf_op_tf_function_ms"], 2)
        rows.append(row)
    print(json.dumps({"backend": name, "rows": rows}))


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child(args.repeats)
    from benchmarks.pooling import machine

    results = []
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        command = [sys.executable, "-m", "benchmarks.nms_backends", "--child", "--repeats", str(args.repeats)]
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    report = {
        "benchmark": "nms_backends",
        "machine": machine(),
        "settings": SETTINGS,
        "baseline": "tf_op_tf_function_ms: keras_spp.detection.nms.per_class_nms in tf.function, same process",
        "ratio": "candidate ms / baseline ms (above 1: slower than the TF op)",
        "backends": results,
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
