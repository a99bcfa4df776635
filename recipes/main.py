"""The README's main job, offline: the any-size demo, then an SPP-net classifier
trained on mnist-windows (digit and background windows of mnist-detection scenes:
real MNIST handwriting on clutter, of many sizes) and evaluated on every view, then
SPP-net detection on mnist-detection (digits pasted into cluttered canvases, VOC
layout) with that classifier's conv layers, evaluated on held-out images and drawn.

    python -m recipes.main [--epochs 12] [--detector-steps 3000] [--out outputs]
"""

import argparse
import os

from recipes import demo
from recipes import train_classifier
from recipes import train_detector

DETECTION_SCALES = "200,288,400,560,800,1100"
DETECTION_WINDOW = "64"
DETECTION_PROPOSALS = ("--min-proposal-size", "4", "--proposal-max-side", "0", "--proposal-k", "100")
DETECTION_CONTEXT = ("--context", "2", "--negative-iou", "0,0.5", "--max-train-windows", "256")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 12 epochs: with the detector's context features the backbone of 12 detects as
    # well as the one of 20 (docs/results.md: 0.9003 against 0.9005 VOC07 mAP with
    # voting), and the training then fits in 15 minutes here (7.0 + 7.2 min).
    p.add_argument("--epochs", type=int, default=12, help="classifier (backbone pretraining) epochs")
    # 3000 minibatches of 128 give what 6000 do (docs/results.md: 0.9001 against
    # 0.9005 with voting, the same features) in half the fc time.
    p.add_argument("--detector-steps", type=int, default=3000, help="fc fine-tuning minibatches")
    p.add_argument("--out", default="outputs")
    args = p.parse_args(argv)
    print("== 1/3: one fixed-length representation for every input size\n", flush=True)
    code = demo.main(["--out", os.path.join(args.out, "demo")])
    if code:
        return code
    # The conv layers are all the detector keeps, so they are pretrained on what it
    # will see: digits and clutter windows of its own kind of scene (docs/results.md:
    # mAP 0.842 against 0.775 from mnist-scenes, the same detector). Single-size: at
    # this budget multi-size training (--sizes 112,90) costs accuracy (14.5% against
    # 9.9% full-image error on mnist-scenes), and the detector inherits these layers.
    # bfloat16 where the CPU computes in it (AVX-512 BF16): a train step 1.2-1.35x faster,
    # the same accuracy (docs/results.md); float32 elsewhere, where it would be emulated.
    # The rate drops 10x for the last quarter of the steps: ReduceLROnPlateau reacted to
    # one noisy epoch in one run (7 of 20 epochs at 3e-5) and never in another; the
    # fixed drop gave 0 to +0.7 points over it, at 14 and at 20 epochs (docs/results.md).
    print("\n== 2/3: ZF-5 + SPP on mnist-windows (windows of any size, evaluated whole)\n", flush=True)
    classifier = os.path.join(args.out, "classifier")
    code = train_classifier.main(
        ["--dataset", "mnist-windows", "--backbone", "zf5", "--head", "spp", "--sizes", "112",
         "--dtype-policy", "auto", "--lr-schedule", "step", "--lr-drop", "0.25",
         "--epochs", str(args.epochs), "--out", classifier, "--verbose", "2"]
    )
    if code:
        return code
    print("\n== 3/3: SPP-net detection on mnist-detection with the classifier's conv layers\n", flush=True)
    # Windows are pooled where they are closest to 64 x 64, the size the classifier
    # saw its digits' ink at (docs/results.md: 0.801 against 0.790 at 112 and 0.752
    # at 48, mnist-scenes backbone). A digit is 1/15 to 1/2.5 of its canvas's shorter
    # side, so six scales 1.4x apart from 200 to 1100 give every digit one where it
    # is near 64 px (0.871 against 0.859 with 240-800 and 0.842 with the paper's five
    # halved, 240-600). Proposals: a handwritten 1's tight box is often narrower than
    # 20 px, and selective search at full size with finer segmentations (k = 100,
    # 200, 300) finds the small digits a downscaled search merges into the clutter:
    # recall@0.5 on the test images 0.993 against 0.972, mAP +1.2 points.
    # Context: each window's features are followed by a square twice its longer side
    # around it, and fc6-fc8 see clutter far from any digit as background too: the 1s'
    # false positives are straight bars cut out of longer lines, which a window alone
    # shows as a 1 (docs/results.md: 0.900 with voting against 0.886). Far-from-digit
    # windows only serve as negatives, so a sample of them (256 windows an image in
    # all) keeps the doubled features' cache small.
    return train_detector.main(
        ["--pretrained", os.path.join(classifier, "model.keras"), "--dataset", "mnist-detection",
         "--scales", DETECTION_SCALES, "--window-size", DETECTION_WINDOW, *DETECTION_PROPOSALS, *DETECTION_CONTEXT,
         "--steps", str(args.detector_steps), "--out", os.path.join(args.out, "detector"), "--verbose", "2"]
    )


if __name__ == "__main__":
    raise SystemExit(main())
