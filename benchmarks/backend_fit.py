"""The same short mnist-scenes ``model.fit`` on TensorFlow, JAX and PyTorch: does each
backend reach TensorFlow's validation accuracy within noise? Prints JSON.

    python -m benchmarks.backend_fit [--backends tensorflow,jax,torch] [--seeds 0,1] \
        [--epochs 15] [--max-train 3000] [--runs outputs/backend-fit] \
        [--out benchmarks/results/backend-fit-cpu-2core.json]

Each run is ``recipes.train_classifier`` in a child process with ``KERAS_BACKEND``
set (ZF-5 at width 0.25 with SPP, 112 px, Adam at 3e-4, 10x lower for the last
quarter of the epochs, float32), writing ``<runs>/<backend>-seed<seed>``; a run whose
``results.json`` is there with the same settings is read, not trained again, so the
command finishes over several sittings. Seeds fix the initial weights and the data
order per backend, but the backends' random generators differ, so the same seed is
not the same network on two backends: the comparison is between seed spreads.

``within_noise`` per backend: ``|mean - mean_tensorflow| <= 2 * sqrt(v_b / n_b + v_tf / n_tf)``,
each ``v`` the larger of the seeds' sample variance and the binomial variance of an
accuracy over the validation images, ``p (1 - p) / images``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks.report import emit

VALIDATION_IMAGES = 1000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="tensorflow,jax,torch")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--max-train", type=int, default=3000)
    p.add_argument("--sizes", default="112")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--runs", default="outputs/backend-fit", help="folder of the runs' outputs")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    args.backend_list = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(args.backend_list) - {"tensorflow", "jax", "torch"})
    if unknown or "tensorflow" not in args.backend_list:
        p.error(f"--backends must list tensorflow (the reference) and any of jax, torch; got {args.backends!r}")
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers; got {args.seeds!r}")
    return args


def train_command(args, seed, out):
    return [
        sys.executable,
        "-m",
        "recipes.train_classifier",
        "--dataset",
        "mnist-scenes",
        "--backbone",
        "zf5",
        "--width",
        str(args.width),
        "--head",
        "spp",
        "--sizes",
        args.sizes,
        "--epochs",
        str(args.epochs),
        "--lr-schedule",
        "step",
        "--lr-drop",
        "0.25",
        "--max-train",
        str(args.max_train),
        "--views",
        "center",
        "--seed",
        str(seed),
        "--dtype-policy",
        "float32",
        "--out",
        out,
        "--verbose",
        "2",
    ]


def matches(config, args, seed):
    """Whether a finished run's ``results.json`` config is this command's."""
    wanted = {
        "dataset": "mnist-scenes",
        "width": args.width,
        "sizes": [int(s) for s in args.sizes.split(",")],
        "epochs": args.epochs,
        "max_train": args.max_train,
        "seed": seed,
        "lr_schedule": "step",
        "dtype_policy": "float32",
    }
    return all(config.get(k) == v for k, v in wanted.items())


def run_once(args, backend, seed):
    """The entry of one run, trained here unless its results are already there."""
    out = os.path.join(args.runs, f"{backend}-seed{seed}")
    path = os.path.join(out, "results.json")
    results = _read(path)
    if results is None or not matches(results["config"], args, seed):
        print(f"== {backend}, seed {seed}", file=sys.stderr, flush=True)
        subprocess.run(train_command(args, seed, out), check=True, env={**os.environ, "KERAS_BACKEND": backend})
        results = _read(path)
    return entry(results)


def entry(results):
    history = results["history"]
    return {
        "final_val_accuracy": float(history[-1]["val_accuracy"]),
        "best_val_accuracy": max(float(row["val_accuracy"]) for row in history),
        "val_accuracy_curve": [round(float(row["val_accuracy"]), 4) for row in history],
        "center_top1_error_pct": results["evaluation"]["center"]["top1_error_pct"],
        "train_seconds": results["train_seconds"],
        "seconds_per_epoch": results["train_seconds"] / max(len(history), 1),
    }


def summarise(runs, images=VALIDATION_IMAGES):
    """``{backend: {mean, std, seeds, ...}}`` of the final validation accuracies, each
    with its difference from TensorFlow's and whether that is within noise."""

    def spread(values):
        mean = statistics.fmean(values)
        seed_var = statistics.variance(values) if len(values) > 1 else 0.0
        return mean, max(seed_var, mean * (1 - mean) / images)

    by_backend = {b: [r["final_val_accuracy"] for r in seeds.values()] for b, seeds in runs.items()}
    tf_mean, tf_var = spread(by_backend["tensorflow"])
    out = {}
    for backend, values in by_backend.items():
        mean, var = spread(values)
        noise = 2 * (var / len(values) + tf_var / len(by_backend["tensorflow"])) ** 0.5
        out[backend] = {
            "final_val_accuracy_mean": mean,
            "final_val_accuracy_std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "difference_from_tensorflow": mean - tf_mean,
            "noise": noise,
            "within_noise": abs(mean - tf_mean) <= noise,
            "seconds_per_epoch_mean": statistics.fmean(r["seconds_per_epoch"] for r in runs[backend].values()),
        }
    return out


def main(argv=None):
    args = parse_args(argv)
    from benchmarks.pooling import machine

    runs = {b: {str(s): run_once(args, b, s) for s in args.seed_list} for b in args.backend_list}
    report = {
        "benchmark": "backend_fit",
        "machine": machine(),
        "settings": {k: getattr(args, k) for k in ("epochs", "max_train", "sizes", "width", "seed_list")},
        "runs": runs,
        "summary": summarise(runs),
    }
    emit(report, args.out)
    return 0


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
