"""Trains SPP-net for detection (the paper's section 4) and evaluates it.

    python -m recipes.train_detector --pretrained outputs/classifier/model.keras \
        [--dataset mnist-detection] [--scales 688 | --scales 480,576,688,864,1200] \
        [--steps 6000] [--out outputs/detector]

The conv layers come from a pretrained SPP classifier (``recipes.train_classifier``)
and stay fixed. Proposals come from selective search (``--proposals selective-search``,
the paper's; cached) or from an RPN trained here on the same frozen conv5
(``--proposals rpn``, Faster R-CNN's; ``history_rpn.csv``, ``curves_rpn.png``, and
the detector then finds its own proposals). Pooled window features are computed
once and cached; fc6, fc7 and a new fc8 are fine-tuned with ``model.fit`` on the
cached features, then box regressors and per-class SVMs are fitted. The held-out
split is evaluated with softmax and SVM scores, with and without box regression
(VOC07 11-point and area AP).

The training is the library's ``keras_spp.detection.pipeline.train_detector``; this
recipe turns the flags into its ``DetectorTrainingConfig`` (a field per flag:
``--max-train-windows`` is ``max_train_windows``) and the library's refusals into
messages that name the flags.

Writes to ``--out``: ``detector/`` (model.keras + detector.json, for
``recipes.detect`` and ``export.saved_model``), ``detector.keras`` (the same
detector as one ``keras_spp.detection.SppNetDetector``, for
``keras.saving.load_model``), ``history.csv``, ``curves.png``,
``detections.png`` (held-out images, ground truth dashed), ``results.json``.
"""

import argparse
import contextlib

from recipes import arguments

# keras_spp.detection.pipeline_config's defaults, repeated so that --help needs no
# TensorFlow installed (keras_spp.detection does); tests/recipes/test_train_detector_config.py
# checks that they agree.
DEFAULT_PRETRAINED = "outputs/classifier/model.keras"
RPN_SCALE = 800


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_arguments(p.add_argument_group("backbone and data"))
    _feature_arguments(p.add_argument_group("window features"))
    _proposal_arguments(p.add_argument_group("proposals"))
    _training_arguments(p.add_argument_group("fine-tuning and output"))
    return p.parse_args(argv)


def _data_arguments(group):
    group.add_argument(
        "--pretrained", default=DEFAULT_PRETRAINED, help="an SPP classifier .keras whose conv layers are used"
    )
    group.add_argument(
        "--feature-stride",
        type=arguments.positive_float,
        default=None,
        help="pixels per conv5 cell (known for the Table 1 backbones)",
    )
    group.add_argument("--dataset", default="mnist-detection", help="mnist-detection, voc:<path>, voc/2007, voc/2012")
    group.add_argument("--data-dir", default=None)
    group.add_argument(
        "--mnist-images",
        default="1000,200",
        help="mnist-detection: trainval,test[,val] image counts (built once, cached); with a val count, "
        "--test-split val evaluates on the validation scenes",
    )
    group.add_argument(
        "--classes",
        default="auto",
        help="voc:<path> only: the class names in label order, comma-separated, or 'infer' (the "
        "object names of --train-split, sorted); auto: the folder's labels.txt, else the 20 VOC "
        "classes when every training object is one, else inferred",
    )
    group.add_argument("--train-split", default="trainval")
    group.add_argument("--test-split", default="test")
    group.add_argument("--max-train", type=arguments.positive_int, default=None, help="use the first N training images")
    group.add_argument(
        "--max-test", type=arguments.positive_int, default=None, help="evaluate on the first N held-out images"
    )


def _feature_arguments(group):
    group.add_argument(
        "--scales", type=arguments.int_list(), default="688", help="shorter sides, e.g. 688 or 480,576,688,864,1200"
    )
    group.add_argument(
        "--window-size",
        type=arguments.positive_int,
        default=224,
        help="each window is pooled at the scale where its area is closest to this squared",
    )
    group.add_argument("--levels", type=arguments.int_list(), default="6,3,2,1", help="pyramid levels, e.g. 6,3,2,1")
    group.add_argument(
        "--context",
        type=float,
        default=0.0,
        help="also pool a square this many times each window's longer side around it, from the same "
        "scale (beyond the paper; 0: off, the paper's)",
    )
    group.add_argument(
        "--max-train-windows",
        type=int,
        default=0,
        help="features of at most this many windows per training image: every ground truth box and "
        "window overlapping an object by IoU >= 0.1, then a seeded sample of the rest (0: all)",
    )


def _proposal_arguments(group):
    group.add_argument(
        "--proposals",
        default="selective-search",
        choices=["selective-search", "rpn"],
        help="selective search (the paper's) or an RPN trained on the frozen conv5 (Faster R-CNN's)",
    )
    group.add_argument(
        "--max-proposals", type=arguments.positive_int, default=2000, help="selective search boxes kept per image"
    )
    group.add_argument("--min-proposal-size", type=arguments.nonnegative_int, default=20)
    group.add_argument(
        "--proposal-max-side",
        type=arguments.nonnegative_int,
        default=0,
        help="selective search runs on a copy downscaled to this longer side (0: full size, the "
        "paper's); faster, but small objects merge into their surroundings (offline default: "
        "recall@0.5 0.972 at 400 against 0.982 at full size)",
    )
    group.add_argument(
        "--proposal-k",
        type=arguments.positive_int,
        default=None,
        help="selective search's first segmentation scale k (then 2k, 3k); smaller finds smaller "
        "objects (default: OpenCV's 150)",
    )
    group.add_argument(
        "--rpn-scales",
        type=arguments.int_list(),
        default=None,
        help=f"--proposals rpn: the detection scales it looks at (default: the one of --scales nearest {RPN_SCALE} px)",
    )
    # Seven sizes 1.4x apart and three shapes (chosen on the validation images: VOC07 mAP
    # 0.902 against 0.874 with Faster R-CNN's 32-256 x (1, 2, 3); docs/results.md).
    group.add_argument(
        "--rpn-anchor-sizes",
        type=arguments.float_list(0, min_open=True),
        default="32,45,64,90,128,180,256",
        help="anchor sides, pixels at the RPN's scale",
    )
    group.add_argument(
        "--rpn-aspect-ratios",
        type=arguments.float_list(0, min_open=True),
        default="1,2,3.5",
        help="anchor height / width",
    )
    group.add_argument(
        "--rpn-steps",
        type=arguments.positive_int,
        default=6000,
        help="images the RPN trains on, one a step (a small data set is seen many times, a large one once)",
    )
    group.add_argument(
        "--rpn-lr", type=arguments.positive_float, default=1e-3, help="Adam; 10x lower for the last quarter"
    )
    group.add_argument(
        "--rpn-proposals",
        type=arguments.positive_int,
        default=300,
        help="RPN proposals kept per held-out image (after NMS)",
    )
    # Nearly every RPN proposal overlaps a digit, so --max-train-windows, which keeps
    # all windows near objects, does not thin them: 2000 an image ran out of 24 GiB.
    group.add_argument(
        "--rpn-train-proposals",
        type=arguments.positive_int,
        default=300,
        help="RPN proposals per training image that the heads learn from",
    )
    group.add_argument(
        "--rpn-pre-nms",
        type=arguments.positive_int,
        default=2000,
        help="best-scored boxes NMS sees (Faster R-CNN: 6000; on mnist-detection's validation images 2000 "
        "kept the same recall, 1000 lost some)",
    )
    group.add_argument("--rpn-nms", type=arguments.float_range(0, 1, min_open=True), default=0.7)
    group.add_argument("--proposals-from", default=None, help="precomputed proposals (.npz or folder of .npy)")


def _training_arguments(group):
    group.add_argument("--steps", type=arguments.positive_int, default=6000, help="fine-tuning minibatches")
    group.add_argument("--batch-size", type=arguments.int_range(2), default=128)
    group.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    group.add_argument(
        "--lr", type=arguments.positive_float, default=3e-4, help="then 10x lower for the last sixth of the steps"
    )
    group.add_argument("--dropout", type=arguments.float_range(0, 1, max_open=True), default=0.5)
    group.add_argument(
        "--negative-iou",
        default="0.1,0.5",
        help="IoU range [lo, hi) of fine-tuning's background windows (the paper: 0.1,0.5)",
    )
    group.add_argument(
        "--conv-steps",
        type=arguments.nonnegative_int,
        default=0,
        help="then train the conv layers with fc6-fc8 through the RoI op for this many images "
        "(Fast R-CNN's fine-tuning, beyond the paper; 0: conv layers stay as pretrained)",
    )
    group.add_argument(
        "--conv-lr",
        type=arguments.positive_float,
        default=1e-4,
        help="then 10x lower for the last sixth of --conv-steps",
    )
    group.add_argument(
        "--conv-windows", type=arguments.positive_int, default=64, help="windows per image in --conv-steps"
    )
    group.add_argument(
        "--svm-cache",
        type=arguments.positive_int,
        default=20000,
        help="hard negatives cached per class while mining (memory: 2 x this x classes x fc7 units x 4 bytes)",
    )
    group.add_argument(
        "--box-regression-windows",
        type=arguments.positive_int,
        default=5000,
        help="windows each class's regressor is fitted on, at most",
    )
    group.add_argument(
        "--window-store",
        default="features",
        choices=["features", "conv5"],
        help="cache each window's features, or each image's conv5 maps and pool the windows when read (less disk "
        "for many windows an image; docs/detection.md, 'Training at scale')",
    )
    group.add_argument(
        "--cache-dir",
        type=arguments.output_dir,
        default=None,
        help="where window features and RPN conv5 are cached (default: OUT/cache)",
    )
    group.add_argument(
        "--cache-budget",
        type=arguments.positive_float,
        default=None,
        help="GB the caches may take; a run whose estimate is larger is refused before any work (default: free disk)",
    )
    group.add_argument(
        "--strategy",
        default="default",
        choices=["default", "mirrored", "multi-worker"],
        help="tf.distribute strategy of the fc fine-tuning (multi-worker: TF_CONFIG's cluster; each worker caches "
        "its share of the images' windows, the chief fits the rest and writes the detector)",
    )
    group.add_argument(
        "--cpu-devices",
        type=arguments.nonnegative_int,
        default=0,
        help="split the CPU into this many devices (to try --strategy mirrored)",
    )
    group.add_argument("--seed", type=arguments.seed, default=0)
    group.add_argument("--out", type=arguments.output_dir, default="outputs/detector")
    group.add_argument("--verbose", type=arguments.int_range(0, 2), default=1)


def flag(field):
    """The command-line flag of a ``DetectorTrainingConfig`` field."""
    return "--" + field.replace("_", "-")


def make_config(args):
    """``parse_args``'s namespace as the library's ``DetectorTrainingConfig``."""
    from keras_spp.detection.pipeline_config import DetectorTrainingConfig

    with refusals():
        return DetectorTrainingConfig(**vars(args))


@contextlib.contextmanager
def refusals():
    """The library's ``SettingError`` as ``SystemExit`` with the message naming flags."""
    from keras_spp.detection.pipeline_config import SettingError

    try:
        yield
    except SettingError as error:
        prefix = "train_detector: " if error.during_run else ""
        raise SystemExit(prefix + error.named(flag)) from None


def main(argv=None):
    args = parse_args(argv)
    from keras_spp.tensorflow_only import require_tensorflow

    require_tensorflow("recipes.train_detector")
    from keras_spp.detection.pipeline import train_detector
    from keras_spp.detection.training_checks import NonFiniteLossError

    config = make_config(args)
    try:
        with refusals():
            train_detector(config)
    except NonFiniteLossError as error:
        raise SystemExit(f"train_detector: {error}") from None
    return 0


def dataset_options(args):
    """``load_detection``'s keyword arguments for the flags' dataset."""
    from keras_spp.detection import pipeline

    config = make_config(args)
    with refusals():
        return pipeline.dataset_options(config)


def load_data(args):
    """The flags' training and held-out examples: a ``TrainingState`` with them."""
    from keras_spp.detection import pipeline

    config, state = make_config(args), pipeline.TrainingState()
    with refusals():
        pipeline.load_data(config, state)
    return state


if __name__ == "__main__":
    raise SystemExit(main())
