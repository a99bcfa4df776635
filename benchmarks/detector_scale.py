"""How the detector's training grows with the number of training images: peak
memory, disk and seconds of every stage, at N = 250, 500, 1000, 2000 (and 4000)
mnist-detection images, and the fitted growth exponents.

    python -m benchmarks.detector_scale [--sizes 250,500,1000,2000,4000] \
        [--out benchmarks/results/detector-scale-cpu-2core.json]

Each N trains in a child process of its own (its peak RSS is the child's, from
``wait4``), with the paper's feature width: full-width ZF-5, conv5 256 channels,
levels 6,3,2,1: 12800-d windows, at one scale. Accuracy does not matter here, so
the backbone keeps its seeded random initialisation (no pretraining), and each
image's ~2000 proposals are seeded random boxes with selective search's spread of
sizes plus jittered copies of its objects (selective search itself takes 1-1.6 s an
image here, which would be most of the run). Stages, in order: proposals, RPN
(conv5 cached, head trained for ``--rpn-steps``), window features (at most
``--windows`` an image cached), fine-tuning (``--steps``), box regression, SVMs.
Per stage: seconds, CPU seconds (user + system of every thread: what the stage
costs whatever else shares the machine), peak RSS (``VmHWM``, reset before the stage through
``/proc/self/clear_refs``, after the last stage's freed memory is returned to the
system as ``train_detector`` does) and the disk its caches take.

Resumable: each finished N is written to ``--out`` at once (aside, then renamed),
and a rerun with the same settings skips it. Stages with a fixed number of steps
(RPN, fine-tuning) do not grow with N; the exponents are fitted on the whole run.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

SETTINGS = ("windows", "proposals", "scale", "steps", "rpn_steps", "fc_units", "seed", "store")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="250,500,1000,2000,4000", help="training image counts, in order")
    p.add_argument(
        "--windows", type=int, default=256, help="windows cached per image (all ground truth and near ones first)"
    )
    p.add_argument("--proposals", type=int, default=2000, help="proposals per image")
    p.add_argument("--scale", type=int, default=480, help="the one detection (and RPN) scale")
    p.add_argument("--steps", type=int, default=300, help="fine-tuning minibatches")
    p.add_argument("--rpn-steps", type=int, default=300)
    p.add_argument("--fc-units", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", default="features", choices=["features", "conv5"], help="what the window cache holds")
    p.add_argument("--work", default=None, help="folder for the caches (default: a temporary one, removed)")
    p.add_argument("--out", default="benchmarks/results/detector-scale-cpu-2core.json")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child is not None:
        print("RESULT " + json.dumps(run_one(args, args.child)), flush=True)
        return 0
    sizes = [int(v) for v in args.sizes.split(",")]
    report = _load(args)
    done = {run["n_images"] for run in report["runs"]}
    for n in sizes:
        if n in done:
            print(f"N={n}: recorded, skipped", file=sys.stderr, flush=True)
            continue
        run = _child(args, n)
        report["runs"] = sorted([*report["runs"], run], key=lambda r: r["n_images"])
        report["growth"] = growth(report["runs"])
        _save(args.out, report)
        print(f"N={n}: {json.dumps(_brief(run))}", file=sys.stderr, flush=True)
    report["growth"] = growth(report["runs"])
    print(json.dumps(report, indent=1))
    return 0


def _load(args):
    settings = {name: getattr(args, name) for name in SETTINGS}
    if args.out and os.path.exists(args.out):
        with open(args.out) as f:
            report = json.load(f)
        report.get("settings", {}).setdefault("store", "features")  # recorded before --store existed
        if report.get("settings") != settings:
            raise SystemExit(
                f"{args.out} was measured with other settings ({report.get('settings')}); pass another --out "
                "or the same settings to resume it"
            )
        return report
    from benchmarks.pooling import machine

    return {"benchmark": "detector_scale", "machine": machine(), "settings": settings, "runs": []}


def _save(path, report):
    if not path:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    os.replace(temporary, path)


def _child(args, n):
    """Runs one N in a fresh process; its result with the process's peak RSS."""
    command = [sys.executable, "-m", "benchmarks.detector_scale", "--child", str(n)]
    for name in SETTINGS:
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.work:
        command += ["--work", args.work]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"the N={n} run failed (exit {os.waitstatus_to_exitcode(status)}); its output:\n{output[-3000:]}"
        )
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    run = json.loads(line[len("RESULT ") :])
    # The stages reset the high-water mark (clear_refs), which wait4's maximum follows:
    # the run's peak is the largest of theirs.
    stage_peaks = [stage["peak_rss_bytes"] for stage in run["stages"].values()]
    run["peak_rss_bytes"] = max([usage.ru_maxrss * 1024, *stage_peaks])
    run["process_seconds"] = time.perf_counter() - started
    return run


def growth(runs):
    """Exponents ``b`` of ``y = a * N ** b`` fitted (least squares in log-log) to the
    runs' seconds, peak RSS and disk; and the largest N's peak RSS over the smallest's."""
    if len(runs) < 2:
        return {}
    n = np.log([r["n_images"] for r in runs])
    fitted = {}
    for key in ("seconds", "cpu_seconds", "peak_rss_bytes", "disk_bytes"):
        fitted[f"{key}_exponent"] = round(float(np.polyfit(n, np.log([max(r[key], 1) for r in runs]), 1)[0]), 3)
    fitted["peak_rss_largest_over_smallest"] = round(runs[-1]["peak_rss_bytes"] / runs[0]["peak_rss_bytes"], 3)
    return fitted


def _brief(run):
    return {k: run[k] for k in ("n_images", "seconds", "peak_rss_bytes", "disk_bytes")}


def run_one(args, n):
    """The child: every stage on ``n`` images, with its seconds, peak RSS and disk."""
    import keras

    from keras_spp.data.detection_sources import load_detection
    from keras_spp.memory import peak_rss_bytes, release_free_memory, reset_peak_rss

    keras.utils.set_random_seed(args.seed)
    train, class_names = load_detection("mnist-detection", "trainval", num_trainval=n, num_test=10, seed=args.seed)
    work = args.work or tempfile.mkdtemp(prefix="keras_spp-scale-")
    work = os.path.join(work, f"n{n}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        stages, started, cpu_started = {}, time.perf_counter(), _cpu()
        state = _build(args, len(class_names))
        for name, stage in STAGES:
            release_free_memory()
            reset_peak_rss()
            t0, c0 = time.perf_counter(), _cpu()
            stage(args, state, train, work)
            stages[name] = {
                "seconds": round(time.perf_counter() - t0, 2),
                "cpu_seconds": round(_cpu() - c0, 2),
                "peak_rss_bytes": peak_rss_bytes(),
                "disk_bytes": _disk(work),
            }
        return {
            "n_images": n,
            "seconds": round(time.perf_counter() - started, 2),
            "cpu_seconds": round(_cpu() - cpu_started, 2),
            "disk_bytes": _disk(work),
            "disk_bytes_per_image": _disk(work) // max(n, 1),
            "feature_dim": state["roi"].output_dim,
            "stages": stages,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build(args, num_classes):
    from keras_spp.detection.features import MultiScaleRoiFeatures
    from keras_spp.detection.heads import spp_detector
    from keras_spp.models import backbone

    conv = backbone("zf5")
    conv.trainable = False
    roi = MultiScaleRoiFeatures(conv, (args.scale,), (6, 3, 2, 1), 16, 224, name="roi_features")
    model = spp_detector(roi, num_classes, fc_units=args.fc_units)
    return {"roi": roi, "model": model}


def _proposals(args, state, train, work):
    from benchmarks.serving import random_proposals

    rng = np.random.default_rng(args.seed)
    proposals = {}
    for i, example in enumerate(train):
        near = np.repeat(example.boxes, 20, axis=0) + rng.normal(0, 4, (20 * len(example.boxes), 4))
        count = max(args.proposals - len(near), 0)
        proposals[example.image_id] = np.concatenate(
            [near, random_proposals(example.height, example.width, count, seed=args.seed + i)]
        ).astype(np.float32)
    state["proposals"] = proposals


def _rpn(args, state, train, work):
    from keras_spp.data.voc import load_image
    from keras_spp.detection import rpn, rpn_training
    from keras_spp.detection.anchors import AnchorConfig
    from keras_spp.detection.learned_proposals import LearnedProposals

    roi = state["roi"]
    anchors = AnchorConfig(stride=16)
    head = rpn.rpn_head(roi.backbone.output_shape[-1], anchors.per_cell)
    learned = LearnedProposals(head, roi, anchors, (0,))
    records, _ = rpn_training.rpn_records(learned, train, load_image, cache_dir=os.path.join(work, "rpn"))
    rpn_training.train_rpn(learned, records, rpn_training.RpnTrainingConfig(steps=args.rpn_steps), verbose=0)


def _features(args, state, train, work):
    from keras_spp.detection import training

    state["records"] = training.compute_window_features(
        state["roi"],
        train,
        state["proposals"],
        cache_dir=os.path.join(work, "windows"),
        max_windows=args.windows,
        keep_iou=training.NEAR_OBJECT_IOU,
        seed=args.seed,
        store=args.store,
    )


def _config(args):
    from keras_spp.detection.training import HeadTrainingConfig

    return HeadTrainingConfig(steps=args.steps, negative_iou=(0.0, 0.5), seed=args.seed)


def _fine_tune(args, state, train, work):
    from keras_spp.detection import training

    training.fine_tune(state["model"], state["records"], train, _config(args), verbose=0)


def _box_regression(args, state, train, work):
    from keras_spp.detection import training

    training.fit_box_regression(state["model"], state["records"], train, _config(args))


def _svms(args, state, train, work):
    from keras_spp.detection import training

    training.fit_svms(state["model"], state["records"], train, _config(args), state_dir=os.path.join(work, "svm"))


STAGES = (
    ("proposals", _proposals),
    ("rpn", _rpn),
    ("features", _features),
    ("fine_tuning", _fine_tune),
    ("box_regression", _box_regression),
    ("svms", _svms),
)


def _cpu():
    """CPU seconds of this process's threads, user and system: less sensitive than
    wall time to other work on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _disk(folder):
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


if __name__ == "__main__":
    raise SystemExit(main())
