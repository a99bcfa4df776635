"""Detects objects in images with a trained detector and draws them.

    python -m recipes.detect --detector outputs/detector/detector IMAGE [IMAGE ...] \
        [--scoring softmax|svm] [--min-score 0.5] [--out detections]

Proposals come from the detector's RPN if it has one (``train_detector --proposals
rpn``; then OpenCV is not needed), else from selective search (fast mode), unless
``--proposals-from`` names precomputed ones. For each image, prints the detections and writes
``<out>/<name>.png`` with the boxes, labels and scores drawn.
"""

import argparse
import json
import os

from recipes import arguments


def detector_folder(text):
    """A ``type=`` for ``--detector``: a folder written by train_detector (or its ``model.keras``)."""
    directory = text if os.path.isdir(text) else os.path.dirname(text)
    missing = [name for name in ("detector.json", "model.keras") if not os.path.isfile(os.path.join(directory, name))]
    if missing:
        raise argparse.ArgumentTypeError(
            f"takes a folder written by train_detector (model.keras and detector.json); got {text!r} "
            f"(no {' and no '.join(missing)})"
        )
    return text


def parse_args(argv=None):
    """The flags; numbers are checked here, paths by ``check_paths``."""
    return _parser().parse_args(argv)


def check_paths(args):
    """Exits with one line naming the flag unless every input exists and ``--out`` can be a folder."""
    p = _parser()
    args.images = [arguments.check(p, "images", arguments.existing_file, image) for image in args.images]
    args.detector = arguments.check(p, "--detector", detector_folder, args.detector)
    if args.proposals_from is not None:
        args.proposals_from = arguments.check(p, "--proposals-from", arguments.existing_path, args.proposals_from)
    args.out = arguments.check(p, "--out", arguments.output_dir, args.out)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+")
    p.add_argument(
        "--detector",
        default="outputs/detector/detector",
        help="a folder written by train_detector",
    )
    p.add_argument("--scoring", choices=["softmax", "svm"], default=None, help="default: the detector's own")
    p.add_argument("--no-box-regression", action="store_true")
    # SVM scores are margins: below 0 is a threshold too.
    p.add_argument("--min-score", type=arguments.finite_float, default=None, help="default: 0.5 (softmax) or 0 (svm)")
    p.add_argument("--nms", type=arguments.float_range(0, 1, min_open=True), default=0.3, help="IoU in (0, 1]")
    p.add_argument("--max-detections", type=arguments.positive_int, default=100)
    p.add_argument(
        "--vote-iou",
        type=arguments.probability,
        default=None,
        help="box voting after NMS with windows overlapping this much (default: the detector's setting)",
    )
    p.add_argument("--proposals-from", default=None, help=".npz or folder of <image name>.npy (y1 x1 y2 x2)")
    p.add_argument(
        "--max-proposals",
        type=arguments.positive_int,
        default=None,
        help="default: the detector's training setting, else 2000",
    )
    p.add_argument(
        "--min-proposal-size",
        type=arguments.nonnegative_int,
        default=None,
        help="default: the detector's training setting, else 20",
    )
    p.add_argument(
        "--proposal-max-side",
        type=arguments.nonnegative_int,
        default=None,
        help="search a copy downscaled to this longer side (0: full size); default: the detector's training setting",
    )
    p.add_argument(
        "--proposal-k",
        type=arguments.positive_int,
        default=None,
        help="selective search's first segmentation scale; default: the detector's training setting",
    )
    p.add_argument("--out", default="detections")
    return p


def main(argv=None):
    args = parse_args(argv)
    from keras_spp.tensorflow_only import require_tensorflow

    require_tensorflow("recipes.detect")
    check_paths(args)
    from tqdm.auto import tqdm

    from keras_spp.data.voc import load_image
    from keras_spp.detection.detector import Detector
    from keras_spp.visualization import draw_detections

    names = [os.path.splitext(os.path.basename(p))[0] for p in args.images]
    # Both before the detector loads: a missing OpenCV or a proposal file without these
    # images would otherwise show only after it.
    precomputed = _precomputed(args, names)
    if precomputed is None and _has_rpn(args.detector) is False:
        require_selective_search(args.detector)
    try:
        detector = Detector.load(args.detector)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"--detector {args.detector}: {error}") from None
    settings = _settings(args, detector)
    os.makedirs(args.out, exist_ok=True)
    search = _search_params(args, detector.metadata.get("proposals") or {})
    failures = 0
    for path, name in tqdm(list(zip(args.images, names)), desc="detect", unit="img"):
        try:
            image = load_image(path)
        except (ValueError, FileNotFoundError) as error:
            print(f"{path}: skipped: {error}")
            failures += 1
            continue
        if precomputed:
            proposals = precomputed[name]
        elif detector.proposer is not None:
            proposals = None  # the detector's RPN; no OpenCV needed
        else:
            from keras_spp.detection.proposals import selective_search

            proposals = selective_search(image, **search)
        boxes, scores, classes = detector.detect(image, proposals, settings)
        source = "RPN proposals" if proposals is None else f"{len(proposals)} proposals"
        print(f"{path}: {source}, {len(boxes)} detections")
        for box, score, cls in zip(boxes, scores, classes):
            y1, x1, y2, x2 = box
            print(f"  {detector.class_names[cls]:>12} {score:6.3f}  y1={y1:.0f} x1={x1:.0f} y2={y2:.0f} x2={x2:.0f}")
        picture = draw_detections(image, boxes, scores, classes, detector.class_names)
        picture.save(os.path.join(args.out, f"{name}.png"))
    print(f"wrote {len(args.images) - failures} pictures to {args.out}/")
    return 1 if failures == len(args.images) else 0


def _settings(args, detector):
    from keras_spp.detection.detector import DetectionSettings

    scoring = args.scoring or detector.settings.scoring
    threshold = args.min_score if args.min_score is not None else (0.5 if scoring == "softmax" else 0.0)
    vote_iou = args.vote_iou if args.vote_iou is not None else detector.settings.vote_iou
    return DetectionSettings(
        scoring,
        box_regression=not args.no_box_regression,
        nms_iou=args.nms,
        score_threshold=threshold,
        max_detections=args.max_detections,
        vote_iou=vote_iou,
    )


def _precomputed(args, names):
    """``--proposals-from``'s boxes of each image, or ``None`` without it."""
    if not args.proposals_from:
        return None
    from keras_spp.detection.proposals import load_precomputed_proposals

    try:
        return load_precomputed_proposals(args.proposals_from, names)
    except (KeyError, ValueError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise SystemExit(f"--proposals-from {args.proposals_from}: {message}") from None


def _has_rpn(detector):
    """Whether the folder's ``detector.json`` names an RPN (read without loading the
    model); ``None`` where it cannot be read, which ``Detector.load`` then names."""
    directory = detector if os.path.isdir(detector) else os.path.dirname(detector)
    try:
        with open(os.path.join(directory, "detector.json")) as f:
            return json.load(f).get("rpn") is not None
    except (ValueError, AttributeError):
        return None


def require_selective_search(detector):
    """Exits with one line unless OpenCV's selective search can run."""
    try:
        import cv2

        cv2.ximgproc.segmentation  # noqa: B018  (the contrib module that selective search needs)
    except (ImportError, AttributeError):
        raise SystemExit(
            f"recipes.detect: the detector {detector} has no RPN, so its proposals come from selective "
            "search, which needs OpenCV with its contrib modules (pip install opencv-contrib-python-headless); "
            "or pass --proposals-from precomputed proposals, or train the detector with --proposals rpn."
        ) from None


def _search_params(args, trained):
    """Selective search as the detector was trained with it, unless the command line says otherwise.

    Proposals unlike the training ones (another minimum size, another search
    resolution) change which windows exist, and with them the detections.
    """
    from keras_spp.detection.proposal_cache import trained_search_params

    params = trained_search_params(trained)
    given = {
        "min_size": args.min_proposal_size,
        "max_proposals": args.max_proposals,
        "max_side": args.proposal_max_side,
        "base_k": args.proposal_k,
    }
    params.update({name: value for name, value in given.items() if value is not None})
    params["max_side"] = params["max_side"] or None  # 0: full size
    return params


if __name__ == "__main__":
    raise SystemExit(main())
