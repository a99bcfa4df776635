"""The ops and models under XLA on TensorFlow's GPU, where one is visible; prints JSON.

Four cases, each compiled with ``jit_compile=True`` and timed after its first call:
  * ``spatial_pyramid_pool``: image-level SPP of a batch of conv5 maps;
  * ``roi_pyramid_pool``: RoI SPP of many boxes on one map, forward and
    forward+backward;
  * ``spp_classifier_fit_step``: one training step (``train_on_batch``) of
    ``keras_spp.models.spp_classifier`` on ZF-5, the model compiled with
    ``jit_compile=True``;
  * ``multiscale_roi_features``: ``keras_spp.detection.features.MultiScaleRoiFeatures``
    called on one image with ``jit_compile=True`` (its conv and pooling compile; the
    antialiased resize before them has no XLA kernel and runs outside).

For each: whether XLA compiled it (``"xla_compile": "ok"``, or ``"error"`` with the
error's first line), the first call's time (compile included) and the median and
minimum of ``--repeats`` further calls. Without a GPU the same runs on the CPU and
the JSON says so (``"gpu_found": false`` and ``"note"``). ``--tiny`` shrinks every
size, for tests.

    python -m benchmarks.gpu --out benchmarks/results/gpu-<machine>.json
"""

import argparse
import os
import platform
import time

import numpy as np

from benchmarks.report import emit

NO_GPU = "no GPU found: TensorFlow lists no GPU device, so every case ran on the CPU"
FULL = {
    "spp_batch": 32,
    "spp_map": [13, 13, 256],
    "roi_map": [43, 58, 256],
    "roi_boxes": 2000,
    "fit_batch": 32,
    "fit_image": 224,
    "zf5_width": 1.0,
    "num_classes": 1000,
    "fc_units": 4096,
    "detector_image": [688, 917],
    "detector_scales": [480, 688],
    "detector_boxes": 2000,
}
TINY = {
    "spp_batch": 2,
    "spp_map": [7, 9, 8],
    "roi_map": [9, 11, 8],
    "roi_boxes": 20,
    "fit_batch": 2,
    "fit_image": 64,
    "zf5_width": 0.0625,
    "num_classes": 5,
    "fc_units": 16,
    "detector_image": [80, 96],
    "detector_scales": [64, 80],
    "detector_boxes": 10,
}


def device():
    """``(tf device string, description, gpu_found)``."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "/CPU:0", _cpu_name(), False
    details = tf.config.experimental.get_device_details(gpus[0])
    return "/GPU:0", details.get("device_name", gpus[0].name), True


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or "unknown"
    return f"CPU: {name}, {os.cpu_count()} cores"


def timed(fn, repeats):
    """The first call's milliseconds (the compile included) and the median and min of
    ``repeats`` more; each call's results are copied to the host, so the work is done."""

    def call():
        start = time.perf_counter()
        out = fn()
        _ = [np.asarray(t) for t in (out if isinstance(out, (list, tuple)) else [out])]
        return 1000 * (time.perf_counter() - start)

    first = call()
    times = [call() for _ in range(repeats)]
    return {
        "first_call_ms": round(first, 1),
        "median_ms": round(float(np.median(times)), 1),
        "min_ms": round(min(times), 1),
    }


def run_case(build, repeats):
    """``build()`` gives a function with no arguments; its timings, or the error that
    stopped it (XLA's compile errors surface at the first call)."""
    try:
        return {"xla_compile": "ok", **timed(build(), repeats)}
    except Exception as error:  # noqa: BLE001 - a failed compile is a result to report
        lines = str(error).strip().splitlines() or [""]
        return {"xla_compile": "error", "error": f"{type(error).__name__}: {lines[0][:300]}"}


def spp_case(sizes, rng):
    import tensorflow as tf

    from keras_spp.ops import spatial_pyramid_pool

    x = tf.constant(rng.normal(size=(sizes["spp_batch"], *sizes["spp_map"])).astype(np.float32))
    fn = tf.function(spatial_pyramid_pool, jit_compile=True)
    return lambda: fn(x)


def roi_problem(sizes, rng):
    height, width, channels = sizes["roi_map"]
    features = np.maximum(rng.normal(size=(1, height, width, channels)), 0).astype(np.float32)
    ys = np.sort(rng.uniform(0, height * 16, size=(sizes["roi_boxes"], 2)), axis=1)
    xs = np.sort(rng.uniform(0, width * 16, size=(sizes["roi_boxes"], 2)), axis=1)
    boxes = np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], axis=1).astype(np.float32)
    return features, boxes, np.zeros(len(boxes), np.int32)


def roi_cases(sizes, rng):
    import tensorflow as tf

    from keras_spp.ops import roi_pyramid_pool

    args = [tf.constant(a) for a in roi_problem(sizes, rng)]
    forward = tf.function(roi_pyramid_pool, jit_compile=True)

    @tf.function(jit_compile=True)
    def backward(features, boxes, indices):
        with tf.GradientTape() as tape:
            tape.watch(features)
            loss = tf.reduce_sum(roi_pyramid_pool(features, boxes, indices))
        return tape.gradient(loss, features)

    return (lambda: forward(*args)), (lambda: backward(*args))


def fit_case(sizes, rng):
    import keras

    from keras_spp.models import backbone, spp_classifier

    net = spp_classifier(backbone("zf5", width=sizes["zf5_width"]), sizes["num_classes"], fc_units=sizes["fc_units"])
    net.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy", jit_compile=True
    )
    side = sizes["fit_image"]
    x = rng.uniform(0, 255, size=(sizes["fit_batch"], side, side, 3)).astype(np.float32)
    y = rng.integers(0, sizes["num_classes"], size=sizes["fit_batch"])
    return lambda: net.train_on_batch(x, y)


def detector_case(sizes, rng):
    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.models import backbone

    height, width = sizes["detector_image"]
    layer = MultiScaleRoiFeatures(
        backbone("zf5", width=sizes["zf5_width"]), scales=tuple(sizes["detector_scales"]), jit_compile=True
    )
    image = rng.uniform(0, 255, size=(1, height, width, 3)).astype(np.float32)
    ys = np.sort(rng.uniform(0, height, size=(sizes["detector_boxes"], 2)), axis=1)
    xs = np.sort(rng.uniform(0, width, size=(sizes["detector_boxes"], 2)), axis=1)
    boxes = np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], axis=1).astype(np.float32)
    return lambda: layer(image, boxes)


def run(sizes, repeats):
    import tensorflow as tf

    name, description, gpu_found = device()
    rng = np.random.default_rng(0)
    report = {
        "device": description,
        "tf_device": name,
        "gpu_found": gpu_found,
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "sizes": sizes,
        "repeats": repeats,
    }
    if not gpu_found:
        report["note"] = NO_GPU
    timings = {}
    with tf.device(name):
        timings["spatial_pyramid_pool"] = run_case(lambda: spp_case(sizes, rng), repeats)
        roi = {}
        timings["roi_pyramid_pool"] = run_case(lambda: roi.setdefault("fns", roi_cases(sizes, rng))[0], repeats)
        timings["roi_pyramid_pool_backward"] = run_case(
            lambda: roi.setdefault("fns", roi_cases(sizes, rng))[1], repeats
        )
        timings["spp_classifier_fit_step"] = run_case(lambda: fit_case(sizes, rng), repeats)
        timings["multiscale_roi_features"] = run_case(lambda: detector_case(sizes, rng), repeats)
    report["timings"] = timings
    return report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the first (default 5)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be at least 1; got {args.repeats}.")
    return args


def main(argv=None):
    args = parse_args(argv)
    emit(run(TINY if args.tiny else FULL, args.repeats), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
