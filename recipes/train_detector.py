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

Writes to ``--out``: ``detector/`` (model.keras + detector.json, for
``recipes.detect`` and ``export.saved_model``), ``detector.keras`` (the same
detector as one ``keras_spp.detection.SppNetDetector``, for
``keras.saving.load_model``), ``history.csv``, ``curves.png``,
``detections.png`` (held-out images, ground truth dashed), ``results.json``.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import time

from recipes import arguments

DEFAULT_PRETRAINED = "outputs/classifier/model.keras"
# The RPN's default scale: on mnist-detection's validation images an anchor of
# 32-256 px matches 99.7% of the digits at IoU >= 0.5 at 800 px, 88% at 400
# (docs/results.md, "Learned proposals").
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


def _negative_iou(text, positive_iou):
    from keras_spp.detection import sampling

    try:
        low, high = (float(v) for v in text.split(","))
        sampling.check_iou_thresholds(positive_iou, (low, high))
    except ValueError as error:
        raise SystemExit(
            f"--negative-iou must be two IoUs 'lo,hi' with 0 <= lo <= hi <= {positive_iou:g} (where positives "
            f"start), e.g. 0.1,0.5; got {text!r}: {error}"
        ) from None
    return low, high


def main(argv=None):
    args = parse_args(argv)
    from keras_spp.tensorflow_only import require_tensorflow

    require_tensorflow("recipes.train_detector")
    from keras_spp.detection.training_checks import NonFiniteLossError
    from keras_spp.memory import peak_rss_bytes, release_free_memory, reset_peak_rss

    checked = check_args(args)
    import keras

    from keras_spp.training.distribute import is_chief, make_strategy

    strategy = None if args.strategy == "default" else make_strategy(args.strategy, args.cpu_devices)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    started = time.perf_counter()
    data = load_data(args)
    with strategy.scope() if strategy else contextlib.nullcontext():
        built = build_detector(args, data["class_names"], checked["context"])
    built["strategy"] = strategy
    built["cache_estimate"] = check_cache_disk(args, data, built)
    seconds = {}
    memory = {"before_training": peak_rss_bytes()}
    try:
        reset_peak_rss()
        proposals, proposer, rpn_report = make_proposals(args, data, built, seconds)
        memory["proposals_and_rpn"] = peak_rss_bytes()
        release_free_memory()
        reset_peak_rss()
        regression_windows, svm_stats = train_heads(args, data, built, proposals, checked, seconds)
        memory["heads"] = peak_rss_bytes()
    except NonFiniteLossError as error:
        raise SystemExit(f"train_detector: {error}") from None
    if strategy is not None and not is_chief(strategy):
        print(f"worker {strategy.cluster_resolver.task_id}: fine-tuning done; the chief writes the detector")
        return 0
    seconds["training_total"] = time.perf_counter() - started
    detector = save_detector(args, data, built, proposer)
    built["peak_rss_bytes"] = memory  # each stage's peak resident memory (reset between stages)
    report(args, data, detector, proposals, seconds, regression_windows, svm_stats, rpn_report, built)
    return 0


def check_cache_disk(args, data, built):
    """The caches' estimated bytes ``{"window_features": b, "rpn_conv5": b}``; exits
    before any work when they will not fit (``--cache-budget`` or the free disk)."""
    from keras_spp.detection.window_cache import check_disk_budget, estimate_cache_bytes

    train, roi = data["train"], built["roi"]
    per_image = args.rpn_train_proposals if args.proposals == "rpn" else args.max_proposals
    if args.max_train_windows:
        per_image = min(per_image, args.max_train_windows)
    channels, stride = roi.backbone.output_shape[-1], built["stride"]
    if args.window_store == "conv5":  # at most a map at every scale
        cells = sum(_cells(e, roi, range(len(roi.scales)), stride) for e in train)
        estimate = {"window_conv5": int(cells * 2 * channels + (per_image + 1) * 16 * len(train))}
    else:
        estimate = {"window_features": estimate_cache_bytes([per_image + len(e.boxes) for e in train], roi.output_dim)}
    if args.proposals == "rpn":
        anchors = len(_floats(args.rpn_anchor_sizes, "--rpn-anchor-sizes")) * len(
            _floats(args.rpn_aspect_ratios, "--rpn-aspect-ratios")
        )
        indices = [built["scales"].index(s) for s in _rpn_scales(args, built["scales"])]
        cells = sum(_cells(e, roi, indices, stride) for e in train)
        estimate["rpn_conv5"] = int(cells * (2 * channels + 17 * anchors))
    root = cache_root(args)
    cached = sum(f.stat().st_size for f in _files_under(root))
    needed = max(sum(estimate.values()) - cached, 0)
    budget = None if args.cache_budget is None else args.cache_budget * 1e9
    try:
        check_disk_budget(needed, root, budget, "the training caches")
    except ValueError as error:
        raise SystemExit(f"train_detector: {error}") from None
    images = max(len(train), 1)
    print(
        f"caches: about {sum(estimate.values()) / 1e9:.2f} GB ({sum(estimate.values()) / images / 1e6:.2f} MB an "
        f"image: {', '.join(f'{k} {v / images / 1e6:.2f}' for k, v in estimate.items())}) in {root}",
        flush=True,
    )
    return estimate


def _cells(example, roi, scale_indices, stride):
    """conv5 cells of ``example`` at the scales ``scale_indices`` (about: rounded up)."""
    from keras_spp.detection import scales as scales_lib

    factors = scales_lib.scale_factors(example.height, example.width, roi.scales, roi.max_side)
    return sum(
        -(-example.height * float(factors[i]) // stride) * -(-example.width * float(factors[i]) // stride)
        for i in scale_indices
    )


def _files_under(root):
    for folder, _, names in os.walk(root):
        for name in names:
            yield pathlib.Path(folder, name)


def _rpn_scales(args, scales):
    if args.rpn_scales is None:
        return [min(scales, key=lambda s: abs(s - RPN_SCALE))]
    return _ints(args.rpn_scales, "--rpn-scales")


def check_args(args):
    """Flag values the parser cannot check: ``SystemExit`` saying what is accepted."""
    from keras_spp.detection import training
    from keras_spp.detection.features import validate_context

    negative_iou = _negative_iou(args.negative_iou, training.HeadTrainingConfig.positive_iou)
    try:
        context = validate_context(args.context or None)  # the layer's own rule
    except ValueError:
        raise SystemExit(
            f"--context must be 0 (off) or at least 1 (the square's side per window side, e.g. 2); got {args.context:g}"
        ) from None
    if args.max_train_windows < 0:
        raise SystemExit(
            f"--max-train-windows must be 0 (every window) or a positive count; got {args.max_train_windows}"
        )
    if args.strategy != "default" and (
        args.conv_steps or (args.strategy == "multi-worker" and args.proposals == "rpn")
    ):
        raise SystemExit(
            f"--strategy {args.strategy} distributes the fc fine-tuning only: it takes neither --conv-steps nor, "
            "across workers, --proposals rpn (each worker would train its own RPN); got "
            f"--conv-steps {args.conv_steps} --proposals {args.proposals}"
        )
    if os.path.isdir(args.pretrained):
        raise SystemExit(f"--pretrained must be a classifier's .keras file; {args.pretrained} is a folder")
    if not os.path.exists(args.pretrained):
        raise SystemExit(
            f"--pretrained {args.pretrained} not found: train an SPP classifier first "
            "(python -m recipes.train_classifier --out outputs/classifier) or pass its model.keras."
        )
    if args.proposals == "rpn":
        scales = _ints(args.scales, "--scales")
        missing = [s for s in _rpn_scales(args, scales) if s not in scales]
        if missing:
            raise SystemExit(
                f"--rpn-scales must be among --scales {args.scales} (the RPN shares their conv5); got {args.rpn_scales}"
            )
        for flag, value in (
            ("--rpn-steps", args.rpn_steps),
            ("--rpn-proposals", args.rpn_proposals),
            ("--rpn-train-proposals", args.rpn_train_proposals),
            ("--rpn-pre-nms", args.rpn_pre_nms),
        ):
            if value < 1:
                raise SystemExit(f"{flag} must be a positive count; got {value}")
    return {"negative_iou": negative_iou, "context": context}


def load_data(args):
    from keras_spp.data.detection_sources import load_detection

    options = dataset_options(args)
    try:
        train, class_names = load_detection(args.dataset, args.train_split, data_dir=args.data_dir, **options)
        test, _ = load_detection(args.dataset, args.test_split, data_dir=args.data_dir, **options)
    except (ValueError, FileNotFoundError) as error:
        text = str(error).replace("pass `class_names`", "pass --classes a,b,... (or --classes infer)")
        raise SystemExit(f"train_detector: --dataset {args.dataset}: {text}") from None
    train, test = train[: args.max_train], test[: args.max_test]
    print(
        f"{len(train)} training and {len(test)} held-out ({args.test_split}) images, {len(class_names)} classes",
        flush=True,
    )
    return {"train": train, "test": test, "class_names": class_names, "options": options}


def build_detector(args, class_names, context):
    """The pretrained conv layers, the window feature layer and the untrained detector."""
    from keras_spp.detection.features import MultiScaleRoiFeatures, backbone_of, measured_feature_stride
    from keras_spp.detection.heads import spp_detector
    from keras_spp.detection.transfer import transferable_fc_weights
    from keras_spp.models.backbones import TABLE_1, feature_stride
    from keras_spp.models.saving import load_keras_model

    try:
        pretrained = load_keras_model(args.pretrained, "--pretrained")
    except ValueError as error:
        raise SystemExit(str(error)) from None
    conv = backbone_of(pretrained)
    conv.trainable = False
    stride = args.feature_stride or (feature_stride(conv.name) if conv.name in TABLE_1 else None)
    if stride is None:  # any other backbone: a probe image through it tells
        try:
            stride = measured_feature_stride(conv)
        except ValueError as error:
            raise SystemExit(f"{error} (--feature-stride)") from None
        print(f"backbone {conv.name!r}: measured {stride:g} pixels per conv cell (--feature-stride overrides)")
    levels = _ints(args.levels, "--levels")
    scales = _ints(args.scales, "--scales")
    roi = MultiScaleRoiFeatures(conv, scales, levels, stride, args.window_size, context=context, name="roi_features")
    fc_weights = transferable_fc_weights(pretrained, roi.output_dim)
    fc_units = fc_weights["fc6"][0].shape[1] if fc_weights else 4096
    model = spp_detector(roi, len(class_names), fc_units=fc_units, dropout=args.dropout, fc_weights=fc_weights)
    print(
        f"backbone {conv.name} (stride {stride:g}), scales {scales}, levels {levels}: "
        f"{roi.output_dim}-d window features, fc {fc_units}",
        flush=True,
    )
    return {"conv": conv, "roi": roi, "model": model, "stride": stride, "levels": levels, "scales": scales}


def make_proposals(args, data, built, seconds):
    """``(proposals {image id: boxes}, proposer or None, RPN report or None)``."""
    from recipes import detection_common as common

    if args.proposals == "selective-search":
        proposals = common.proposals_for(data["train"] + data["test"], args)
        seconds["proposals"] = proposals.seconds
        return proposals, None, None
    import keras

    from keras_spp.callbacks import TrainingCurves
    from keras_spp.data.voc import load_image
    from keras_spp.detection import rpn, rpn_training, training
    from keras_spp.detection.anchors import AnchorConfig
    from keras_spp.detection.learned_proposals import LearnedProposals, ProposalSettings

    roi = built["roi"]
    anchors = AnchorConfig(
        _floats(args.rpn_anchor_sizes, "--rpn-anchor-sizes"),
        _floats(args.rpn_aspect_ratios, "--rpn-aspect-ratios"),
        built["stride"],
    )
    # The head computes in conv5's precision: bfloat16 when the backbone does.
    head = rpn.rpn_head(roi.backbone.output_shape[-1], anchors.per_cell, dtype=roi.backbone.layers[-1].dtype_policy)
    indices = tuple(built["scales"].index(s) for s in _rpn_scales(args, built["scales"]))
    settings = ProposalSettings(args.rpn_pre_nms, args.rpn_proposals, args.rpn_nms, args.min_proposal_size)
    proposer = LearnedProposals(head, roi, anchors, indices, settings)
    t0 = time.perf_counter()
    records, stats = rpn_training.rpn_records(
        proposer, data["train"], load_image, cache_dir=os.path.join(cache_root(args), "rpn")
    )
    history_csv = os.path.join(args.out, "history_rpn.csv")
    history = rpn_training.train_rpn(
        proposer,
        records,
        rpn_training.RpnTrainingConfig(
            steps=args.rpn_steps,
            learning_rate=args.rpn_lr,
            final_learning_rate=args.rpn_lr / 10,
            seed=args.seed,
        ),
        verbose=args.verbose,
        callbacks=[
            keras.callbacks.CSVLogger(history_csv),
            TrainingCurves(history_csv, os.path.join(args.out, "curves_rpn.png"), title="RPN on frozen conv5"),
        ],
    )
    del records
    seconds["rpn_training"] = time.perf_counter() - t0
    built["proposals_tag"] = f"rpn{args.rpn_train_proposals}-" + training.weights_fingerprint(head)
    t0 = time.perf_counter()
    train_settings = ProposalSettings(args.rpn_pre_nms, args.rpn_train_proposals, args.rpn_nms, args.min_proposal_size)
    proposals, _ = proposer.proposals_for(data["train"], load_image, train_settings, desc="rpn proposals (train)")
    test_proposals, per_image = proposer.proposals_for(data["test"], load_image, desc="rpn proposals (held out)")
    proposals.update(test_proposals)
    seconds["proposals"] = time.perf_counter() - t0
    recall = rpn_training.proposal_recall(test_proposals, data["test"])
    print(
        f"RPN: recall@0.5 on the held-out images {recall}, {per_image * 1000:.0f} ms an image "
        "(conv5 at its scales included)",
        flush=True,
    )
    return (
        proposals,
        proposer,
        {
            "anchor_stats": stats,
            "held_out_recall": recall,
            "seconds_per_image": per_image,
            "final": {k: float(v[-1]) for k, v in history.history.items()},
        },
    )


def train_heads(args, data, built, proposals, checked, seconds):
    """Window features, fc6-fc8 fine-tuning (and conv, with --conv-steps), box
    regressors and SVMs: ``(regression windows per class, SVM statistics)``;
    ``(None, None)`` on a worker that is not the chief."""
    from keras_spp.detection import training
    from keras_spp.detection.svm import SvmConfig
    from keras_spp.training.distribute import is_chief

    model, train, strategy = built["model"], data["train"], built.get("strategy")
    config = training.HeadTrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        final_learning_rate=args.lr / 10,
        optimizer=args.optimizer,
        negative_iou=checked["negative_iou"],
        box_regression_max_windows=args.box_regression_windows,
        svm=SvmConfig(max_hard_negatives=args.svm_cache),
        seed=args.seed,
    )
    t0 = time.perf_counter()
    cache_dir = _feature_cache_dir(args, built)
    records = window_records(args, built, train, proposals, cache_dir)
    seconds["window_features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _fine_tune_fc(args, built, records, train, config, cache_dir)
    seconds["fine_tune"] = time.perf_counter() - t0
    if strategy is not None and not is_chief(strategy):
        return None, None  # the chief fits the regressors and SVMs and writes the detector
    seconds["conv_fine_tune"] = 0.0
    if args.conv_steps > 0:
        t0 = time.perf_counter()
        records = _fine_tune_conv(args, built, train, proposals, records, checked)
        seconds["conv_fine_tune"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    regression_windows = training.fit_box_regression(model, records, train, config)
    svm_stats = training.fit_svms(model, records, train, config, state_dir=os.path.join(cache_dir, "svm"))
    seconds["regression_and_svms"] = time.perf_counter() - t0
    return regression_windows, svm_stats


def window_records(args, built, train, proposals, cache_dir):
    """Every training image's windows, their features cached under ``cache_dir``. Under
    --strategy multi-worker each worker first caches its share of the images, then
    (once all have) reads every shard: the same stream on every worker, as on one
    device."""
    from keras_spp.detection import training

    def window_features(examples, desc="window features"):
        return training.compute_window_features(
            built["roi"],
            examples,
            proposals,
            cache_dir=cache_dir,
            key=os.path.basename(cache_dir),
            store=args.window_store,
            max_windows=args.max_train_windows or None,
            keep_iou=training.NEAR_OBJECT_IOU,
            seed=args.seed,
            desc=desc,
        )

    if args.strategy == "multi-worker":
        from keras_spp.training.distribute import gather_from_workers

        rank, workers = worker_rank(built["strategy"])
        window_features(train[rank::workers], desc=f"window features (worker {rank} of {workers})")
        gather_from_workers(built["strategy"], [rank])  # a barrier: every share is cached
    return window_features(train)


def _fine_tune_fc(args, built, records, train, config, cache_dir):
    import keras

    from keras_spp.callbacks import TrainingCurves
    from keras_spp.detection import training

    strategy, logs = built.get("strategy"), args.out
    if args.strategy == "multi-worker" and worker_rank(strategy)[0]:
        logs = os.path.join(args.out, f"worker-{worker_rank(strategy)[0]}")
        os.makedirs(logs, exist_ok=True)
    history_csv = os.path.join(logs, "history.csv")
    if os.path.exists(history_csv):
        os.remove(history_csv)
    return training.fine_tune(
        built["model"],
        records,
        train,
        config,
        verbose=args.verbose,
        backup_dir=os.path.join(cache_dir, "fine_tune_backup"),
        strategy=strategy,
        callbacks=[
            keras.callbacks.CSVLogger(history_csv),
            TrainingCurves(history_csv, os.path.join(logs, "curves.png"), title="fc6-fc8 fine-tuning"),
        ],
    )


def worker_rank(strategy):
    """``(rank, workers)`` of this process in a multi-worker cluster (the chief first)."""
    resolver = strategy.cluster_resolver
    tasks = resolver.cluster_spec().as_dict()
    chiefs, workers = len(tasks.get("chief", [])), len(tasks.get("worker", []))
    rank = 0 if resolver.task_type == "chief" else chiefs + resolver.task_id
    return rank, chiefs + workers


def _feature_cache_dir(args, built):
    """A folder named by everything the cached window features depend on."""
    from keras_spp.detection import training
    from recipes import detection_common as common

    parts = [
        training.weights_fingerprint(built["conv"]),
        "s" + "_".join(map(str, built["scales"])),
        "l" + "_".join(map(str, built["levels"])),
        f"w{args.window_size}",
        built.get("proposals_tag") or common.proposals_tag(args),
        *([f"c{args.context:g}"] if args.context else []),
        *([f"n{args.max_train_windows}"] if args.max_train_windows else []),
        *(["conv5"] if args.window_store == "conv5" else []),
    ]
    return os.path.join(cache_root(args), "-".join(parts))


def cache_root(args):
    return args.cache_dir or os.path.join(args.out, "cache")


def _fine_tune_conv(args, built, train, proposals, records, checked):
    """Fast R-CNN's conv fine-tuning through the RoI op; returns the window features
    recomputed with the tuned conv layers, which the regressors and SVMs learn from."""
    import keras

    from keras_spp.detection import conv_fine_tuning, training

    config = conv_fine_tuning.ConvFineTuningConfig(
        steps=args.conv_steps,
        windows_per_image=args.conv_windows,
        learning_rate=args.conv_lr,
        final_learning_rate=args.conv_lr / 10,
        negative_iou=checked["negative_iou"],
        seed=args.seed,
    )
    history = keras.callbacks.CSVLogger(os.path.join(args.out, "history_conv.csv"))
    conv_fine_tuning.fine_tune_end_to_end(
        built["model"], records, train, config, verbose=args.verbose, callbacks=[history]
    )
    tuned = os.path.join(cache_root(args), "conv-" + training.weights_fingerprint(built["conv"]))
    return training.compute_window_features(
        built["roi"],
        train,
        proposals,
        cache_dir=tuned,
        key=os.path.basename(tuned),
        desc="features (tuned conv)",
    )


def save_detector(args, data, built, proposer):
    from keras_spp.detection.detector import Detector
    from keras_spp.detection.spp_net_detector import SppNetDetector

    if args.proposals == "rpn":
        proposal_meta = {"method": "rpn", "train_proposals": args.rpn_train_proposals}
    else:
        proposal_meta = {
            "method": "selective-search",
            "max": args.max_proposals,
            "min_size": args.min_proposal_size,
            "max_side": args.proposal_max_side or None,
            "base_k": args.proposal_k,
        }
    detector = Detector(
        built["model"],
        data["class_names"],
        metadata={
            "dataset": args.dataset,
            "dataset_options": data["options"],
            "pretrained": os.path.abspath(args.pretrained),
            "scales": list(built["scales"]),
            "levels": list(built["levels"]),
            "window_size": args.window_size,
            "feature_stride": built["stride"],
            "proposals": proposal_meta,
            "steps": args.steps,
            "conv_steps": args.conv_steps,
        },
        proposer=proposer,
    )
    detector.save(os.path.join(args.out, "detector"))
    # The same detector as one Keras model file, for keras.saving.load_model.
    SppNetDetector.from_detector(detector).save(os.path.join(args.out, "detector.keras"))
    return detector


def report(args, data, detector, proposals, seconds, regression_windows, svm_stats, rpn_report, built=None):
    import numpy as np

    from keras_spp.detection.evaluation_settings import evaluation_summary, format_evaluation
    from keras_spp.memory import peak_rss_bytes, release_free_memory, reset_peak_rss
    from keras_spp.visualization import draw_examples

    out, test = args.out, data["test"]
    release_free_memory()
    reset_peak_rss()
    evaluation = evaluation_summary(detector, test, proposals)
    draw_examples(detector, test, proposals, os.path.join(out, "detections.png"))
    if built and built.get("peak_rss_bytes") is not None:
        built["peak_rss_bytes"]["evaluation"] = peak_rss_bytes()
    results = {
        "config": vars(args),
        "class_names": list(data["class_names"]),
        "images": {"train": len(data["train"]), "test": len(test)},
        "held_out_split": args.test_split,
        "seconds": seconds,
        "box_regression_windows": np.asarray(regression_windows).tolist(),
        "svm": svm_stats,
        "cache_bytes_estimate": (built or {}).get("cache_estimate"),
        "peak_rss_bytes": (built or {}).get("peak_rss_bytes"),
        # The replicas the fc fine-tuning's global batches were split between.
        "replicas_in_sync": getattr((built or {}).get("strategy"), "num_replicas_in_sync", 1),
        "evaluation": evaluation,
    }
    if rpn_report is not None:
        results["rpn"] = rpn_report
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=_json_default)
    print(format_evaluation(evaluation))
    print(
        f"training took {seconds['training_total'] / 60:.1f} min; wrote {out}/detector, results.json, curves.png, "
        "detections.png"
    )


def _ints(text, flag):
    if isinstance(text, (tuple, list)):  # parsed by the flag's type already
        return tuple(text)
    try:
        values = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise SystemExit(f"{flag} must be comma-separated integers, e.g. 400 or 200,400; got {text!r}") from None
    return values


def _floats(text, flag):
    if isinstance(text, (tuple, list)):  # parsed by the flag's type already
        return tuple(text)
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise SystemExit(f"{flag} must be comma-separated numbers, e.g. 32,64,128; got {text!r}") from None
    if any(not v > 0 or v == float("inf") for v in values):
        raise SystemExit(f"{flag} must hold positive finite numbers; got {text!r}")
    return values


def dataset_options(args):
    if args.dataset.startswith("voc:"):
        names = voc_class_names(args.dataset[len("voc:") :], args.classes, args.train_split)
        return {} if names is None else {"class_names": names}
    if args.classes != "auto":
        raise SystemExit(f"--classes applies to voc:<path> datasets; {args.dataset} names its own classes")
    if args.dataset != "mnist-detection":
        return {}
    try:
        counts = [int(v) for v in args.mnist_images.split(",")]
        if len(counts) not in (2, 3) or min(counts) < 0:
            raise ValueError
    except ValueError:
        raise SystemExit(
            f"--mnist-images must be two or three counts, trainval,test[,val], like 400,100 or "
            f"1000,200,200; got {args.mnist_images!r}"
        ) from None
    options = {"num_trainval": counts[0], "num_test": counts[1]}
    if len(counts) == 3 and counts[2]:
        options["num_val"] = counts[2]
    return options


def voc_class_names(root, classes, train_split):
    """The class names a VOC-layout folder is read with: a list from ``--classes``,
    ``None`` for the library's default (``labels.txt`` or the 20 VOC classes), or the
    training split's object names when neither fits."""
    from keras_spp.data import voc

    if classes not in ("auto", "infer"):
        names = [name.strip() for name in classes.split(",")]
        if not all(names) or len(set(names)) != len(names):
            raise SystemExit(f"--classes must be distinct, non-empty names separated by commas; got {classes!r}")
        return names
    if classes == "auto" and os.path.isfile(os.path.join(os.path.expanduser(root), voc.LABELS_FILE)):
        return None
    try:
        found = voc.object_names(root, train_split)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"--classes {classes}: {error}") from None
    if classes == "auto" and set(found) <= set(voc.VOC_CLASSES):
        return None
    if not found:
        raise SystemExit(f"--classes {classes}: split {train_split!r} of {root} has no objects to name classes from")
    print(f"classes inferred from {train_split!r}: {', '.join(found)} (--classes a,b,... fixes their order)")
    return list(found)


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON serializable: {type(value)}")


if __name__ == "__main__":
    raise SystemExit(main())
