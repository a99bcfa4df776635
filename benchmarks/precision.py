"""What bfloat16 mixed precision buys on this machine; prints JSON.

For each Keras dtype policy (float32, the baseline, and mixed_bfloat16), in one run:
  * train step: the main job's pretraining model (ZF-5, SPP head, ``--width``,
    ``--fc-units``) trained by ``model.fit`` on in-memory batches of ``--size``
    crops (no decoding, so the model's cost alone is timed), without XLA as
    ``train_classifier --jit auto`` runs it on a CPU;
  * window features: the detector's conv5 at its six scales and the RoI pyramid
    pooling of ``--windows`` random windows on a ``--image`` canvas, as
    ``train_detector`` pools every training image's windows.
The first call of each (tracing) is left out; the policies then take turns for
``--rounds`` rounds and the medians are compared. On a CPU bfloat16 pays where the
CPU has bfloat16 instructions (AVX-512 BF16, AMX); ``machine.bf16`` says what this
one has.

    python -m benchmarks.precision --out benchmarks/results/precision-cpu-2core.json
"""

import argparse
import time

import numpy as np

from benchmarks.report import emit
from keras_spp.data.mnist_windows import CLASS_NAMES as MNIST_WINDOWS_CLASSES

# The main job's (recipes/main.py and train_classifier's mnist-windows defaults;
# tests/benchmarks/test_precision_benchmark.py checks that they agree).
DETECTION_SCALES = (200, 288, 400, 560, 800, 1100)
DETECTION_WINDOW = 64
PRETRAINING = {
    "backbone": "zf5",
    "head": "spp",
    "levels": (6, 3, 2, 1),
    "dropout": 0.5,
    "optimizer": "adam",
    "learning_rate": 3e-4,
    "momentum": 0.9,
    "weight_decay": 5e-4,
}

POLICIES = ("float32", "mixed_bfloat16")


def train_step_timer(policy, width, fc_units, batch, size, steps, seed=0):
    """``(time, model)``: ``time()`` fits ``steps`` steps and returns ms per step."""
    import keras

    keras.utils.set_random_seed(seed)
    model = pretraining_model(policy, width, fc_units, size)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(batch * steps, size, size, 3)).astype(np.float32)
    y = rng.integers(0, len(MNIST_WINDOWS_CLASSES), size=batch * steps)
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # tracing

    def time_it():
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        return (time.perf_counter() - start) / steps * 1000

    return time_it, model


def pretraining_model(policy, width, fc_units, size):
    """The main job's pretraining model and optimizer, as train_classifier builds them
    for mnist-windows, without XLA (``--jit auto`` on a CPU)."""
    from keras_spp.training.classifier import build_classifier

    return build_classifier(
        num_classes=len(MNIST_WINDOWS_CLASSES),
        width=width,
        fc_units=fc_units,
        image_size=size,
        dtype_policy=policy,
        jit_compile=False,
        **PRETRAINING,
    )


def window_features_timer(model, windows, image_size, seed=0):
    """``time()``: ms for one image's windows through the detector's feature layer."""
    import tensorflow as tf

    from keras_spp.detection.features import MultiScaleRoiFeatures, backbone_of

    roi = MultiScaleRoiFeatures(backbone_of(model), DETECTION_SCALES, window_size=DETECTION_WINDOW)
    run = tf.function(
        lambda image, boxes: roi(image, boxes),
        input_signature=[tf.TensorSpec([1, None, None, 3]), tf.TensorSpec([None, 4])],
    )
    rng = np.random.default_rng(seed)
    height, width = image_size
    image = tf.constant(rng.integers(0, 256, size=(1, height, width, 3)).astype(np.float32))
    # Windows of the digits' sizes (4..150 px a side, at most the canvas) anywhere on it.
    sides = rng.uniform(4, min(150, height, width), size=(windows, 2))
    tops = rng.uniform(0, height - sides[:, 0])
    lefts = rng.uniform(0, width - sides[:, 1])
    boxes = tf.constant(np.stack([tops, lefts, tops + sides[:, 0], lefts + sides[:, 1]], 1).astype(np.float32))
    run(image, boxes).numpy()  # tracing

    def time_it():
        start = time.perf_counter()
        run(image, boxes).numpy()
        return (time.perf_counter() - start) * 1000

    return time_it


def summary(samples):
    return {"median": round(float(np.median(samples)), 1), "min": round(min(samples), 1), "max": round(max(samples), 1)}


def bf16_flags():
    from keras_spp.training.precision import machine_cpu_flags

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
    p.add_argument("--repeats", type=int, default=3, help="window-feature timings per policy and round")
    p.add_argument("--rounds", type=int, default=5, help="turns each policy takes, alternating (medians reported)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    image_size = tuple(int(v) for v in args.image.split(","))

    from benchmarks.pooling import machine

    timers = {}
    for policy in POLICIES:
        train, model = train_step_timer(policy, args.width, args.fc_units, args.batch, args.size, args.steps)
        timers[policy] = (train, window_features_timer(model, args.windows, image_size))
    # The policies take turns, round after round: this machine's speed drifts over
    # minutes (one float32 step measured 77 ms in one run and 142 ms in another), and
    # a drift then falls on both alike instead of on whichever ran second.
    samples = {policy: {"train_step_ms": [], "window_features_ms_per_image": []} for policy in POLICIES}
    for _ in range(args.rounds):
        for policy, (train, features) in timers.items():
            samples[policy]["train_step_ms"].append(train())
            samples[policy]["window_features_ms_per_image"].extend(features() for _ in range(args.repeats))
    results = {
        policy: {name: summary(values) for name, values in timings.items()} for policy, timings in samples.items()
    }
    base, bf16 = results["float32"], results["mixed_bfloat16"]
    report = {
        "machine": {**machine(), "bf16": bf16_flags()},
        "model": {"backbone": "zf5", "width": args.width, "fc_units": args.fc_units, "head": "spp", "xla": False},
        "train": {"batch": args.batch, "size": args.size, "steps": args.steps, "rounds": args.rounds},
        "window_features": {
            "scales": list(DETECTION_SCALES),
            "windows": args.windows,
            "image": list(image_size),
            "repeats_per_round": args.repeats,
        },
        "policies": results,
        "speedup_over_float32": {
            name: round(base[name]["median"] / bf16[name]["median"], 2)
            for name in ("train_step_ms", "window_features_ms_per_image")
        },
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
