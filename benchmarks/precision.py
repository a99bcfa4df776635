"""What bfloat16 mixed precision buys on this machine; prints JSON.

For each Keras dtype policy (float32, the baseline, and mixed_bfloat16), in one run:
  * train step: the main job's pretraining model (ZF-5, SPP head, ``--width``,
    ``--fc-units``) trained by ``model.fit`` on in-memory batches of ``--size``
    crops (no decoding, so the model's cost alone is timed), without XLA as
    ``train_classifier --jit auto`` runs it on a CPU;
  * window features: the detector's conv5 at its six scales and the RoI pyramid
    pooling of ``--windows`` random windows on a ``--image`` canvas, as
    ``train_detector`` pools every training image's windows.
The first call of each (tracing) is left out. On a CPU bfloat16 pays where the
CPU has bfloat16 instructions (AVX-512 BF16, AMX); ``machine.bf16`` says what this
one has.

    python -m benchmarks.precision --out benchmarks/results/precision-cpu-2core.json
"""

import argparse
import time

import numpy as np

from benchmarks.report import emit
from keras_spp.data.mnist_windows import CLASS_NAMES as MNIST_WINDOWS_CLASSES
from recipes import main as main_job

DETECTION_SCALES = tuple(int(s) for s in main_job.DETECTION_SCALES.split(","))
DETECTION_WINDOW = int(main_job.DETECTION_WINDOW)

POLICIES = ("float32", "mixed_bfloat16")


def train_step_ms(policy, width, fc_units, batch, size, steps, seed=0):
    import keras

    from recipes import train_classifier

    # The pretraining's own model and optimizer, as train_classifier builds them.
    args = train_classifier.parse_args([
        "--dataset", "mnist-windows", "--sizes", str(size), "--width", str(width), "--fc-units", str(fc_units),
        "--dtype-policy", policy, "--no-jit",
    ])
    keras.utils.set_random_seed(seed)
    model = train_classifier.build_model(args, len(MNIST_WINDOWS_CLASSES), total_steps=steps)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(batch * steps, size, size, 3)).astype(np.float32)
    y = rng.integers(0, len(MNIST_WINDOWS_CLASSES), size=batch * steps)
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # tracing
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return (time.perf_counter() - start) / steps * 1000, model


def window_features_ms(model, windows, image_size, repeats, seed=0):
    import tensorflow as tf

    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.detection.features import backbone_of

    roi = MultiScaleRoiFeatures(backbone_of(model), DETECTION_SCALES, window_size=DETECTION_WINDOW)
    run = tf.function(lambda image, boxes: roi(image, boxes),
                      input_signature=[tf.TensorSpec([1, None, None, 3]), tf.TensorSpec([None, 4])])
    rng = np.random.default_rng(seed)
    height, width = image_size
    image = tf.constant(rng.integers(0, 256, size=(1, height, width, 3)).astype(np.float32))
    # Windows of the digits' sizes (4..150 px a side, at most the canvas) anywhere on it.
    sides = rng.uniform(4, min(150, height, width), size=(windows, 2))
    tops = rng.uniform(0, height - sides[:, 0])
    lefts = rng.uniform(0, width - sides[:, 1])
    boxes = tf.constant(np.stack([tops, lefts, tops + sides[:, 0], lefts + sides[:, 1]], 1).astype(np.float32))
    run(image, boxes).numpy()  # tracing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(image, boxes).numpy()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def bf16_flags():
    from recipes.train_classifier import machine_cpu_flags

    return sorted(f for f in machine_cpu_flags() if "bf16" in f or f.startswith("amx"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--fc-units", type=int, default=512)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=112, help="training crop (the main job's pretraining: 112)")
    p.add_argument("--steps", type=int, default=40, help="timed train steps per policy")
    p.add_argument("--windows", type=int, default=700, help="windows per image (mnist-detection: 678 on average)")
    p.add_argument("--image", default="400,500", help="detection canvas height,width")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out")
    args = p.parse_args(argv)
    image_size = tuple(int(v) for v in args.image.split(","))

    from benchmarks.pooling import machine

    results = {}
    for policy in POLICIES:
        step_ms, model = train_step_ms(policy, args.width, args.fc_units, args.batch, args.size, args.steps)
        features_ms = window_features_ms(model, args.windows, image_size, args.repeats)
        results[policy] = {"train_step_ms": round(step_ms, 1), "window_features_ms_per_image": round(features_ms, 1)}
    base, bf16 = results["float32"], results["mixed_bfloat16"]
    report = {
        "machine": {**machine(), "bf16": bf16_flags()},
        "model": {"backbone": "zf5", "width": args.width, "fc_units": args.fc_units, "head": "spp", "xla": False},
        "train": {"batch": args.batch, "size": args.size, "steps": args.steps},
        "window_features": {"scales": list(DETECTION_SCALES), "windows": args.windows, "image": list(image_size)},
        "policies": results,
        "speedup_over_float32": {
            "train_step": round(base["train_step_ms"] / bf16["train_step_ms"], 2),
            "window_features": round(base["window_features_ms_per_image"] / bf16["window_features_ms_per_image"], 2),
        },
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
