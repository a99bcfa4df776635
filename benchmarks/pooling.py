"""Pooling benchmarks; prints JSON (and writes it with --out).

RoI pyramid pooling: one ZF-5 conv5 map of a 688x917 image (43x58x256), 2000 random
boxes, levels (6, 3, 2, 1). keras_spp's op (under XLA and as a plain graph) against
two baselines measured in the same run:
  * segment_max: the straightforward exact method, every cell of every bin gathered
    and reduced with unsorted_segment_max (in chunks of boxes to bound memory);
  * crop_and_resize: the TF Object Detection API's approximation (bilinear crops to
    12x12, then max pools), which is not exact and has no XLA kernel.
Each configuration runs in a fresh subprocess so that its peak memory (max RSS less
the RSS before the first call) is its own.

``keras_spp_xla_static``: the op under XLA traced with the problem's shapes known
(no ``None`` in the signature), as ``jax.jit`` and a plain ``tf.function`` trace it.
``--torchvision-python``: ``torchvision.ops.roi_pool`` at the four levels, in a
child process with that interpreter, side by side with ``keras_spp_xla`` and the
time to write the op's output bytes (``output_write_bound``), in turn for
``--rounds`` rounds.

Keras backends (the op is written with ``keras.ops``): ``keras_spp_jax_jit`` (the op
under ``jax.jit``, its gradient by ``jax.grad``), ``keras_spp_torch`` (PyTorch eager,
autograd) and ``keras_spp_torch_compile``, each in a child with its KERAS_BACKEND;
``tf_only_xla``, the TensorFlow-only op this port replaced (``--baseline-commit``,
read from git into a scratch package), under XLA in the same run.

Image level: ZF-5 conv1-5 at 224x224, batch 32, with the SPP head against the
no-SPP pool5 head (3x3 max pool, stride 2, to 6x6), forward, interleaved repeats.

    python -m benchmarks.pooling --out benchmarks/results/pooling-cpu.json
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

from benchmarks.report import emit

LEVELS = (6, 3, 2, 1)


def machine():
    import tensorflow as tf

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpus": [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus],
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "TF_CPU_ALLOCATOR_USE_BFC": os.environ.get("TF_CPU_ALLOCATOR_USE_BFC", "unset"),
    }


def timed(fn, *args, repeats):
    """Median and min milliseconds of ``fn(*args)`` after one warm-up call."""
    out = fn(*args)
    _ = [np.asarray(t) for t in _flatten(out)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        _ = [np.asarray(t) for t in _flatten(out)]
        times.append(time.perf_counter() - start)
    return {"median_ms": round(1000 * float(np.median(times)), 1), "min_ms": round(1000 * min(times), 1)}


def _flatten(x):
    return x if isinstance(x, (list, tuple)) else [x]


def roi_problem(boxes, height, width, channels, seed=0):
    rng = np.random.default_rng(seed)
    features = np.maximum(rng.normal(size=(1, height, width, channels)), 0).astype(np.float32)
    h_img, w_img = height * 16, width * 16
    ys = np.sort(rng.uniform(0, h_img, size=(boxes, 2)), axis=1)
    xs = np.sort(rng.uniform(0, w_img, size=(boxes, 2)), axis=1)
    b = np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], axis=1).astype(np.float32)
    return features, b, np.zeros(boxes, np.int32)


def segment_max_baseline(features, boxes, chunk=100):
    """Exact, straightforward: every cell of every bin gathered, then
    unsorted_segment_max. The cell lists are built once (outside the timing); the
    returned function pools in chunks of boxes to bound memory."""
    import keras
    import tensorflow as tf

    from keras_spp.ops import boxes_to_cells
    from tests.ops.pooling_reference import adaptive_bins

    _, h, w, c = features.shape
    cells = keras.ops.convert_to_numpy(boxes_to_cells(boxes, 1 / 16, h, w, "spp"))
    chunks = []
    for lo in range(0, len(cells), chunk):
        ids, segments = [], []
        for n in LEVELS:
            for y1, x1, y2, x2 in cells[lo : lo + chunk]:
                for ys, ye in adaptive_bins(y2 - y1 + 1, n):
                    for xs, xe in adaptive_bins(x2 - x1 + 1, n):
                        yy, xx = np.mgrid[y1 + ys : y1 + ye, x1 + xs : x1 + xe]
                        ids.append((yy * w + xx).ravel())
                        segments.append(np.full(yy.size, len(segments)))
        chunks.append((len(cells[lo : lo + chunk]), np.concatenate(ids), np.concatenate(segments), len(segments)))

    def pool(features):
        flat = tf.reshape(features, [-1, c])
        outputs = []
        for count, ids, segments, total in chunks:
            pooled = tf.math.unsorted_segment_max(tf.gather(flat, ids), segments, total)
            parts, start = [], 0
            for n in LEVELS:  # segments are level-major, then box, then bin
                parts.append(tf.reshape(pooled[start : start + count * n * n], [count, n * n * c]))
                start += count * n * n
            outputs.append(tf.concat(parts, axis=1))
        return tf.concat(outputs, axis=0)

    return pool


def crop_and_resize_baseline(features, boxes, indices):
    """TF OD API style: bilinear 12x12 crops, then max pools; approximate."""
    import tensorflow as tf

    from keras_spp.ops.spatial_pyramid_pool import merge_bins

    h_img = tf.cast(tf.shape(features)[1] * 16, tf.float32)
    w_img = tf.cast(tf.shape(features)[2] * 16, tf.float32)
    normalized = boxes / tf.stack([h_img, w_img, h_img, w_img])
    crops = tf.image.crop_and_resize(features, normalized, indices, [12, 12])
    six = tf.nn.max_pool2d(crops, 2, 2, "VALID")
    levels = [six, merge_bins(six, 3), merge_bins(six, 2), merge_bins(six, 1)]
    return tf.concat([tf.reshape(p, [tf.shape(boxes)[0], -1]) for p in levels], axis=1)


# The last commit whose keras_spp.ops were TensorFlow-only: the port's baseline.
BASELINE_COMMIT = "1936d19"
BACKEND_OF = {"keras_spp_jax_jit": "jax", "keras_spp_torch": "torch", "keras_spp_torch_compile": "torch"}
_BASELINE_MODULES = ("bins", "block_max_table", "box_cells", "spatial_pyramid_pool", "roi_pyramid_pool")


def baseline_op(commit=BASELINE_COMMIT):
    """``roi_pyramid_pool`` as it was at ``commit``, read from git into a scratch package."""
    import importlib
    import tempfile

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = tempfile.mkdtemp(prefix="keras_spp-baseline-")
    package = os.path.join(root, "tf_only_ops")
    os.makedirs(package)
    open(os.path.join(package, "__init__.py"), "w").close()
    for module in _BASELINE_MODULES:
        shown = subprocess.run(
            ["git", "show", f"{commit}:keras_spp/ops/{module}.py"], cwd=repo, capture_output=True, text=True
        )
        if shown.returncode:
            raise SystemExit(f"--baseline-commit {commit}: git cannot show keras_spp/ops/{module}.py: {shown.stderr}")
        text = shown.stdout.replace("from keras_spp.ops.", "from tf_only_ops.").replace(
            "from keras_spp.ops import", "from tf_only_ops import"
        )
        with open(os.path.join(package, f"{module}.py"), "w") as f:
            f.write(text)
    sys.path.insert(0, root)
    return importlib.import_module("tf_only_ops.roi_pyramid_pool").roi_pyramid_pool


def run_backend_config(name, boxes, height, width, channels, repeats):
    """A configuration on JAX or PyTorch (KERAS_BACKEND set by the parent)."""
    from keras_spp.ops import roi_pyramid_pool

    features, b, idx = roi_problem(boxes, height, width, channels)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if name == "keras_spp_jax_jit":
        import jax
        import jax.numpy as jnp

        args = (jnp.asarray(features), jnp.asarray(b), jnp.asarray(idx))
        forward = jax.jit(roi_pyramid_pool)
        backward = jax.jit(jax.grad(lambda f, bx, ix: jnp.sum(roi_pyramid_pool(f, bx, ix))))
    else:
        import torch

        args = (torch.tensor(features), torch.tensor(b), torch.tensor(idx))
        op = torch.compile(roi_pyramid_pool) if name == "keras_spp_torch_compile" else roi_pyramid_pool
        forward = op

        def backward(f, bx, ix):
            f = f.clone().requires_grad_(True)
            op(f, bx, ix).sum().backward()
            return f.grad

    result = {"forward": timed(forward, *args, repeats=repeats)}
    result["forward_backward"] = timed(backward, *args, repeats=repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["peak_memory_mb"] = round((peak - rss_before) / 1024, 1)
    exact = segment_max_reference(features, b)
    result["max_abs_diff_vs_exact"] = float(np.abs(np.asarray(_numpy(forward(*args))) - exact).max())
    return result


def _numpy(x):
    return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)


def segment_max_reference(features, boxes):
    """The independent exact baseline's output as numpy (TensorFlow, run in this process)."""
    import tensorflow as tf

    return segment_max_baseline(features, boxes)(tf.constant(features)).numpy()


def run_torchvision(boxes, height, width, channels, repeats):
    """``torchvision.ops.roi_pool`` at the four levels (``coordinate_rule="roi_pool"``'s
    method), concatenated as keras_spp lays them out: forward timings, in this process
    (an interpreter with torch and torchvision, e.g. ``--torchvision-python``)."""
    import torch
    import torchvision

    features, b, _ = roi_problem(boxes, height, width, channels)
    maps = torch.tensor(features).permute(0, 3, 1, 2).contiguous()
    rois = torch.tensor(np.concatenate([np.zeros((boxes, 1), np.float32), b[:, [1, 0, 3, 2]]], axis=1))

    def forward():
        with torch.no_grad():
            pooled = [torchvision.ops.roi_pool(maps, rois, n, 1 / 16) for n in LEVELS]
            return torch.cat([p.permute(0, 2, 3, 1).reshape(boxes, -1) for p in pooled], dim=1)

    result = {"forward": timed(forward, repeats=repeats)}
    result.update(torch=torch.__version__, torchvision=torchvision.__version__, threads=torch.get_num_threads())
    return result


def run_write_bound(boxes, channels, repeats):
    """The time to write the op's output bytes (``[R, C * 50]`` float32) here: an XLA
    program that computes each output value from an index and a scalar and writes it."""
    import tensorflow as tf

    dim = channels * sum(n * n for n in LEVELS)
    write = tf.function(
        lambda x: x + tf.cast(tf.range(dim), tf.float32)[None, :] + tf.zeros([boxes, 1]),
        jit_compile=True,
    )
    result = {"forward": timed(write, tf.constant(1.0), repeats=repeats)}
    result["bytes"] = boxes * dim * 4
    result["gb_per_s"] = round(result["bytes"] / result["forward"]["median_ms"] / 1e6, 2)
    return result


def run_roi_config(name, boxes, height, width, channels, repeats, forward_only=False):
    """One configuration, in this process: forward and forward+backward timings (only
    the forward ones, unchecked, with ``forward_only``)."""
    if name == "torchvision_roi_pool":
        return run_torchvision(boxes, height, width, channels, repeats)
    if name == "output_write_bound":
        return run_write_bound(boxes, channels, repeats)
    if name in BACKEND_OF:
        return run_backend_config(name, boxes, height, width, channels, repeats)
    import tensorflow as tf

    from keras_spp.ops import roi_pyramid_pool

    features, b, idx = roi_problem(boxes, height, width, channels)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sig = [
        tf.TensorSpec([None, None, None, channels]),
        tf.TensorSpec([None, 4]),
        tf.TensorSpec([None], tf.int32),
    ]
    if name.startswith("keras_spp"):
        op = roi_pyramid_pool
    elif name == "tf_only_xla":
        op = baseline_op(os.environ.get("KERAS_SPP_BASELINE_COMMIT", BASELINE_COMMIT))
    elif name == "segment_max":
        pool = segment_max_baseline(features, b)
        op = lambda f, bx, ix: pool(f)  # noqa: E731
    else:
        op = crop_and_resize_baseline
    jit = name.endswith(("xla", "xla_static"))
    if name.endswith("_static"):  # shapes known when traced: the op's static-shape path
        sig = None
    forward = op if name == "segment_max" else tf.function(op, input_signature=sig, jit_compile=jit)

    def both(f, bx, ix):
        with tf.GradientTape() as tape:
            tape.watch(f)
            loss = tf.reduce_sum(op(f, bx, ix))
        return tape.gradient(loss, f)

    backward = both if name == "segment_max" else tf.function(both, input_signature=sig, jit_compile=jit)
    args = (tf.constant(features), tf.constant(b), tf.constant(idx))
    result = {"forward": timed(forward, *args, repeats=repeats)}
    if forward_only:
        return result
    result["forward_backward"] = timed(backward, *args, repeats=repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["peak_memory_mb"] = round((peak - rss_before) / 1024, 1)
    if name != "segment_max":
        exact = roi_pyramid_pool(*args).numpy()
        if name.startswith("keras_spp") or name == "tf_only_xla":  # exact against the independent baseline
            exact = segment_max_baseline(features, b)(args[0]).numpy()
        result["max_abs_diff_vs_exact"] = float(np.abs(forward(*args).numpy() - exact).max())
    return result


def _vm_hwm_mb():
    """This process's peak resident memory so far (VmHWM), in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def eager_memory(boxes, height, width, channels, chunk, levels=LEVELS):
    """In this (fresh) process: the peak memory of one eager ``RoiPyramidPooling`` call
    over the memory after a 10-box warm-up call, with ``max_boxes_per_chunk`` ``chunk``
    (``"none"``: all boxes at once, the behaviour before chunking; ``"auto"``)."""
    from keras_spp.layers import RoiPyramidPooling

    features, b, idx = roi_problem(boxes, height, width, channels)
    size = {"none": boxes, "auto": None}.get(chunk, chunk)
    layer = RoiPyramidPooling(levels=levels, max_boxes_per_chunk=None if size is None else int(size))
    layer(features, b[:10], idx[:10])
    before = _vm_hwm_mb()
    out = layer(features, b, idx)
    return {
        "max_boxes_per_chunk": chunk,
        "levels": list(levels),
        "peak_over_warm_up_mb": round(_vm_hwm_mb() - before, 1),
        "output_mb": round(int(np.prod(out.shape)) * 4 / 2**20, 1),
        "feature_map_mb": round(features.nbytes / 2**20, 2),
    }


def image_level(repeats, batch=32, size=224, width=1.0):
    import keras
    import tensorflow as tf

    from keras_spp.layers import SpatialPyramidPooling
    from keras_spp.models import backbone

    conv = backbone("zf5", width=width)
    x = tf.constant(np.random.default_rng(0).uniform(size=(batch, size, size, 3)).astype(np.float32))
    heads = {
        "pool5_6x6": keras.Sequential([keras.layers.MaxPooling2D(3, 2), keras.layers.Flatten()]),
        "spp_6_3_2_1": SpatialPyramidPooling(LEVELS),
    }
    results = {}
    for jit in (False, True):
        fns = {k: tf.function(lambda t, h=h: h(conv(t)), jit_compile=jit) for k, h in heads.items()}
        times = {k: [] for k in fns}
        for fn in fns.values():
            fn(x).numpy()
        for _ in range(repeats):  # interleaved, so drifts in machine speed hit both
            for k, fn in fns.items():
                start = time.perf_counter()
                fn(x).numpy()
                times[k].append(time.perf_counter() - start)
        medians = {k: 1000 * float(np.median(v)) for k, v in times.items()}
        results["xla" if jit else "graph"] = {
            **{f"{k}_ms": round(v, 1) for k, v in medians.items()},
            "spp_overhead": round(medians["spp_6_3_2_1"] / medians["pool5_6x6"] - 1, 4),
        }
    return {"batch": batch, "size": size, "zf5_width": width, **results}


DEFAULT_CONFIGS = (
    "keras_spp_xla,tf_only_xla,keras_spp_graph,keras_spp_jax_jit,keras_spp_torch,segment_max,crop_and_resize"
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, default=2000)
    parser.add_argument("--map", default="43,58,256", help="height,width,channels of the conv5 map")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--image-batch", type=int, default=32)
    parser.add_argument("--zf5-width", type=float, default=1.0)
    parser.add_argument(
        "--configs", default=DEFAULT_CONFIGS, help="also: keras_spp_torch_compile (compiles for minutes here)"
    )
    parser.add_argument("--baseline-commit", default=BASELINE_COMMIT, help="tf_only_xla: the op at this commit")
    parser.add_argument("--image-level", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--memory-boxes",
        type=int,
        default=0,
        help="also: peak memory of one eager RoiPyramidPooling call with this many boxes, unchunked and chunked",
    )
    parser.add_argument(
        "--torchvision-python",
        help="an interpreter with torch and torchvision: time torchvision.ops.roi_pool side by side with "
        "keras_spp_xla and the output-write bound, --rounds times in turn",
    )
    parser.add_argument("--rounds", type=int, default=5, help="side-by-side rounds (default 5)")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--_memory", help=argparse.SUPPRESS)
    parser.add_argument("--_forward-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_one", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    height, width, channels = (int(v) for v in args.map.split(","))

    if args._memory:  # child process: one eager memory measurement, "chunk:levels"
        chunk, levels = args._memory.split(":")
        levels = tuple(int(n) for n in levels.split("-"))
        print(json.dumps(eager_memory(args.boxes, height, width, channels, chunk, levels)))
        return 0
    if args._one:  # child process: one RoI configuration
        config = run_roi_config(args._one, args.boxes, height, width, channels, args.repeats, args._forward_only)
        print(json.dumps(config))
        return 0

    report = {"machine": machine(), "roi_pyramid_pool": {}, "image_level": None}
    report["roi_pyramid_pool"]["problem"] = {
        "map": [height, width, channels],
        "boxes": args.boxes,
        "levels": list(LEVELS),
        "coordinate_rule": "spp",
    }
    report["machine"]["load_average_before"] = list(os.getloadavg())
    if args.torchvision_python:
        report["side_by_side"] = _side_by_side(args)
    for name in [c for c in args.configs.split(",") if c]:
        report["roi_pyramid_pool"][name] = _run_child(name, args)
        print(f"{name}: {report['roi_pyramid_pool'][name]}", file=sys.stderr)
    _speedups(report["roi_pyramid_pool"])
    if args.memory_boxes:
        report["eager_memory"] = _memory_children(args)
    if args.image_level:
        report["image_level"] = image_level(args.repeats, batch=args.image_batch, width=args.zf5_width)
    report["machine"]["load_average_after"] = list(os.getloadavg())
    emit(report, args.out)
    return 0


SIDE_BY_SIDE = ("keras_spp_xla", "torchvision_roi_pool", "output_write_bound")


def _side_by_side(args):
    """keras_spp under XLA, torchvision's roi_pool and the output-write bound, each in a
    fresh process, in turn for ``args.rounds`` rounds, so that the machine's load hits
    all three alike; forward medians per round, their ratios, and the ratios' medians."""
    rounds = []
    for _ in range(args.rounds):
        medians = {}
        for name in SIDE_BY_SIDE:
            python = args.torchvision_python if name == "torchvision_roi_pool" else sys.executable
            result = _run_child(name, args, python=python, forward_only=True)
            if "forward" not in result:
                return {"error": {name: result}}
            medians[name] = result["forward"]["median_ms"]
            if name == "torchvision_roi_pool":
                versions = {k: result[k] for k in ("torch", "torchvision", "threads")}
        rounds.append(medians)
        print(f"side by side: {medians}", file=sys.stderr)
    speedups = [r["torchvision_roi_pool"] / r["keras_spp_xla"] for r in rounds]
    over_bound = [r["keras_spp_xla"] / r["output_write_bound"] for r in rounds]
    return {
        "forward_median_ms_per_round": rounds,
        "torchvision_over_keras_spp_xla": [round(v, 2) for v in speedups],
        "median_torchvision_over_keras_spp_xla": round(float(np.median(speedups)), 2),
        "keras_spp_xla_over_write_bound": [round(v, 2) for v in over_bound],
        "median_keras_spp_xla_over_write_bound": round(float(np.median(over_bound)), 2),
        "torchvision": versions,
    }


def _run_child(name, args, python=None, forward_only=False):
    """One RoI configuration in a fresh process on its backend: its result, or its error."""
    cmd = [python or sys.executable, "-m", "benchmarks.pooling", "--_one", name, "--boxes", str(args.boxes)]
    cmd += ["--map", args.map, "--repeats", str(args.repeats if name != "segment_max" else max(1, args.repeats // 5))]
    cmd += ["--_forward-only"] if forward_only else []
    env = {
        **os.environ,
        "KERAS_BACKEND": BACKEND_OF.get(name, "tensorflow"),
        "KERAS_SPP_BASELINE_COMMIT": args.baseline_commit,
    }
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _memory_children(args):
    """Each eager memory measurement in a fresh process (peak memory is per process)."""
    results = []
    for spec in ("none:6-3-2-1", "auto:6-3-2-1", "none:1", "auto:1"):
        cmd = [sys.executable, "-m", "benchmarks.pooling", "--_memory", spec, "--map", args.map]
        cmd += ["--boxes", str(args.memory_boxes)]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
        results.append(json.loads(done.stdout.strip().splitlines()[-1]) if not done.returncode else {"error": spec})
    return results


def _speedups(roi):
    """``speedup_xla_vs``: each configuration's median over keras_spp_xla's (above 1:
    keras_spp under XLA is faster); ``keras_ops_port_over_tf_only``: the port's XLA
    median over the TF-only op's (the target: at most 1.1); ``jax_jit_over_tf_xla``."""

    def median(name, part):
        return roi[name][part]["median_ms"] if "forward" in roi.get(name, {}) else None

    if median("keras_spp_xla", "forward") is None:
        return
    roi["speedup_xla_vs"] = {
        k: {p: round(median(k, p) / median("keras_spp_xla", p), 2) for p in ("forward", "forward_backward")}
        for k in ("segment_max", "crop_and_resize", "keras_spp_graph", "tf_only_xla", "keras_spp_jax_jit")
        if median(k, "forward") is not None
    }
    if median("tf_only_xla", "forward") is not None:
        roi["keras_ops_port_over_tf_only"] = {
            p: round(median("keras_spp_xla", p) / median("tf_only_xla", p), 3) for p in ("forward", "forward_backward")
        }
    if median("keras_spp_jax_jit", "forward") is not None:
        roi["jax_jit_over_tf_xla"] = {
            p: round(median("keras_spp_jax_jit", p) / median("keras_spp_xla", p), 3)
            for p in ("forward", "forward_backward")
        }


if __name__ == "__main__":
    raise SystemExit(main())
