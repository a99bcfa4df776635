"""What multi-size training buys and what it costs: each trained classifier's
validation error with its centre crop resized to other sizes. Prints JSON.

    python -m benchmarks.scale_probe --runs outputs/ablation/zf5 [--sizes 90,112,139] \
        [--out benchmarks/results/ablation-scales-zf5.json]

Every ``<runs>/<run>/`` holding a ``results.json`` and a ``model.keras`` of
``recipes.train_classifier`` with an SPP head (the folders ``recipes.ablation``
writes, ``<variant>-seed<seed>``) is probed with its own settings, read from its
``results.json``: the dataset and seed (mnist-scenes renders its scenes from the
seed), the min side and the crop. Each validation image becomes the run's centre
crop, resized to each of ``--sizes`` the way multi-size training resizes it, and
the error is the share of those misclassified. The crop at its own size is the
run's last validation accuracy again, so it checks the probe. Validation images,
not test: this is for finding why, and the test set stays for the verdicts.

The summary per variant (the folder name without ``-seed<n>``) gives the mean
error at each size and each seed's.
"""

import argparse
import json
import os
import re
import statistics

from benchmarks.report import emit


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="a folder of train_classifier run folders")
    p.add_argument("--sizes", default="90,112,139", help="input sides to resize each centre crop to")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    try:
        args.size_list = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        args.size_list = []
    if not args.size_list or min(args.size_list) < 1:
        p.error(f"--sizes must be comma-separated positive sides in pixels; got {args.sizes!r}")
    if not os.path.isdir(args.runs):
        p.error(f"--runs: {args.runs!r} is not a folder")
    return args


def run_folders(root):
    """``[(variant, folder, results)]``: the finished SPP runs under ``root``, sorted,
    each with its ``results.json``."""
    found = []
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        results = os.path.join(folder, "results.json")
        if not (os.path.isfile(results) and os.path.isfile(os.path.join(folder, "model.keras"))):
            continue
        with open(results) as f:
            results = json.load(f)
        if results["config"].get("head") != "spp":
            continue  # a fixed-size network takes one size only
        found.append((re.sub(r"-seed\d+$", "", name), folder, results))
    return found


def probe_run(folder, results, sizes, batch_size):
    """``{"seed", "crop", "val_accuracy_logged", "error_pct": {size: error}}`` of the run
    in ``folder``, whose ``results.json`` holds ``results``."""
    import keras
    import tensorflow as tf

    import keras_spp  # noqa: F401  (registers the custom layers that load_model meets)
    from keras_spp.data import pipelines
    from keras_spp.data.sources import load_classification

    config = results["config"]
    crop = config.get("crop") or max(config["sizes"])  # runs from before --crop took the largest size
    options = {"manual_dir": config["manual_dir"]} if config.get("manual_dir") else {}
    source, _ = load_classification(
        config["dataset"], "validation", data_dir=config.get("data_dir"), seed=config["seed"], **options
    )
    if config.get("max_eval"):
        source = source.take(config["max_eval"])
    crops = pipelines.center_crop_dataset(source, batch_size, crop=crop, min_side=config["min_side"]).cache()
    model = keras.saving.load_model(os.path.join(folder, "model.keras"))
    predict = tf.function(lambda x: tf.argmax(model(x, training=False), -1), reduce_retracing=True)
    errors = {}
    for size in sizes:
        wrong = seen = 0
        for images, labels in crops:
            if size != crop:
                images = tf.image.resize(images, [size, size], antialias=True)
            wrong += int(tf.reduce_sum(tf.cast(predict(images) != labels, tf.int32)))
            seen += int(tf.shape(labels)[0])
        errors[str(size)] = round(100.0 * wrong / seen, 2) if seen else None
    return {
        "seed": config["seed"],
        "crop": crop,
        "train_sizes": config["sizes"],
        "val_accuracy_logged": float(results["history"][-1]["val_accuracy"]),
        "validation_images": seen,
        "error_pct": errors,
    }


def summarise(probes, sizes):
    """``{variant: {size: {"mean", "by_seed": {seed: error}}}}``."""
    table = {}
    for variant, probe in probes:
        for size in map(str, sizes):
            row = table.setdefault(variant, {}).setdefault(size, {"by_seed": {}})
            row["by_seed"][str(probe["seed"])] = probe["error_pct"][size]
    for row in table.values():
        for cell in row.values():
            values = [v for v in cell["by_seed"].values() if v is not None]
            cell["mean"] = round(statistics.fmean(values), 2) if values else None
    return table


def main(argv=None):
    args = parse_args(argv)
    probes = [
        (variant, probe_run(folder, results, args.size_list, args.batch_size))
        for variant, folder, results in run_folders(args.runs)
    ]
    if not probes:
        raise SystemExit(f"{args.runs} holds no finished SPP runs (folders with results.json and model.keras)")
    report = {
        "benchmark": "scale_probe",
        "runs_folder": args.runs,
        "sizes": args.size_list,
        "summary": summarise(probes, args.size_list),
        "runs": [{"variant": variant, **probe} for variant, probe in probes],
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
