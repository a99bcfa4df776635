"""The README's main job, offline: the any-size demo, then an SPP-net classifier
trained on mnist-windows (digit and background windows of mnist-detection scenes:
real MNIST handwriting on clutter, of many sizes) and evaluated on every view, then
SPP-net detection on mnist-detection (digits pasted into cluttered canvases, VOC
layout) with that classifier's conv layers, evaluated on held-out images and drawn.

    python -m recipes.main [--epochs 12] [--detector-steps 3000] [--out outputs]
"""

import argparse
import os
import subprocess
import sys

from recipes import demo, train_classifier, train_detector

# Six scales 1.4x apart: every digit (1/15 to 1/2.5 of its canvas) has one where it is near 64 px.
DETECTION_SCALES = "200,288,400,560,800,1100"
# The size the classifier saw its digits' ink at.
DETECTION_WINDOW = "64"
# Selective search at full size with finer segmentations finds the narrow 1s.
DETECTION_PROPOSALS = (
    "--proposals",
    "selective-search",
    "--min-proposal-size",
    "4",
    "--proposal-max-side",
    "0",
    "--proposal-k",
    "100",
)
# An RPN at the scale nearest 800 px, 300 proposals an image: as good on the validation images, 10x faster.
DETECTION_RPN = ("--proposals", "rpn", "--min-proposal-size", "4")
# A context square twice each window's side tells a 1 from a piece of a straight line.
DETECTION_CONTEXT = ("--context", "2", "--negative-iou", "0,0.5", "--max-train-windows", "256")
PROPOSALS = "rpn"


def run_stage(recipe, argv):
    """``recipe.main(argv)`` in a child process of its own; returns its exit code.

    A stage's memory (TensorFlow's allocator pools, its data) goes back to the system
    when its process ends, so the job peaks at its largest stage rather than at what
    the stages leave behind together: in one process the main job peaked at 4.4 GB,
    its detector stage alone at 2.6 GB."""
    return subprocess.run([sys.executable, "-m", recipe.__name__, *argv], check=False).returncode


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Why each default: docs/training.md ("The main job") and docs/results.md.
    p.add_argument("--epochs", type=int, default=12, help="classifier (backbone pretraining) epochs")
    p.add_argument("--detector-steps", type=int, default=3000, help="fc fine-tuning minibatches")
    p.add_argument(
        "--proposals",
        default=PROPOSALS,
        choices=["rpn", "selective-search"],
        help="the detector's proposals: an RPN on its conv5 (default) or the paper's selective search",
    )
    p.add_argument("--out", default="outputs")
    args = p.parse_args(argv)
    from keras_spp.tensorflow_only import require_tensorflow

    require_tensorflow("recipes.main (its detector)")  # before 20 minutes of pretraining, not after
    print("== 1/3: one fixed-length representation for every input size\n", flush=True)
    code = run_stage(demo, ["--out", os.path.join(args.out, "demo")])
    if code:
        return code
    print("\n== 2/3: ZF-5 + SPP on mnist-windows (windows of any size, evaluated whole)\n", flush=True)
    classifier = os.path.join(args.out, "classifier")
    code = run_stage(
        train_classifier,
        # The detector's own kind of windows (+7 points mAP over mnist-scenes); one size;
        # bfloat16 where the CPU computes in it; the rate 10x lower for the last quarter.
        [
            "--dataset",
            "mnist-windows",
            "--backbone",
            "zf5",
            "--head",
            "spp",
            "--sizes",
            "112",
            "--dtype-policy",
            "auto",
            "--lr-schedule",
            "step",
            "--lr-drop",
            "0.25",
            "--epochs",
            str(args.epochs),
            "--out",
            classifier,
            "--verbose",
            "2",
        ],
    )
    if code:
        return code
    print("\n== 3/3: SPP-net detection on mnist-detection with the classifier's conv layers\n", flush=True)
    proposals = DETECTION_RPN if args.proposals == "rpn" else DETECTION_PROPOSALS
    return run_stage(
        train_detector,
        [
            "--pretrained",
            os.path.join(classifier, "model.keras"),
            "--dataset",
            "mnist-detection",
            "--scales",
            DETECTION_SCALES,
            "--window-size",
            DETECTION_WINDOW,
            *proposals,
            *DETECTION_CONTEXT,
            "--steps",
            str(args.detector_steps),
            "--out",
            os.path.join(args.out, "detector"),
            "--verbose",
            "2",
        ],
    )


if __name__ == "__main__":
    raise SystemExit(main())
