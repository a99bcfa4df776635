"""Detects objects in images with a trained detector and draws them.

    python -m recipes.detect --detector outputs/detector/detector IMAGE [IMAGE ...] \
        [--scoring softmax|svm] [--min-score 0.5] [--out detections]

Proposals come from the detector's RPN if it has one (``train_detector --proposals
rpn``; then OpenCV is not needed), else from selective search (fast mode), unless
``--proposals-from`` names precomputed ones. For each image, prints the detections and writes
``<out>/<name>.png`` with the boxes, labels and scores drawn.
"""

import argparse
import os


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+")
    p.add_argument("--detector", default="outputs/detector/detector", help="a folder written by train_detector")
    p.add_argument("--scoring", choices=["softmax", "svm"], default=None, help="default: the detector's own")
    p.add_argument("--no-box-regression", action="store_true")
    p.add_argument("--min-score", type=float, default=None, help="default: 0.5 (softmax) or 0 (svm)")
    p.add_argument("--nms", type=float, default=0.3)
    p.add_argument("--max-detections", type=int, default=100)
    p.add_argument(
        "--vote-iou",
        type=float,
        default=None,
        help="box voting after NMS with windows overlapping this much (default: the detector's setting)",
    )
    p.add_argument("--proposals-from", default=None, help=".npz or folder of <image name>.npy (y1 x1 y2 x2)")
    p.add_argument(
        "--max-proposals", type=int, default=None, help="default: the detector's training setting, else 2000"
    )
    p.add_argument(
        "--min-proposal-size", type=int, default=None, help="default: the detector's training setting, else 20"
    )
    p.add_argument(
        "--proposal-max-side",
        type=int,
        default=None,
        help="search a copy downscaled to this longer side (0: full size); default: the detector's training setting",
    )
    p.add_argument(
        "--proposal-k",
        type=int,
        default=None,
        help="selective search's first segmentation scale; default: the detector's training setting",
    )
    p.add_argument("--out", default="detections")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from keras_spp.tensorflow_only import require_tensorflow

    require_tensorflow("recipes.detect")
    from tqdm.auto import tqdm

    from keras_spp.data.voc import load_image
    from keras_spp.detection.detector import DetectionSettings, Detector
    from keras_spp.detection.proposals import load_precomputed_proposals
    from keras_spp.visualization import draw_detections

    detector = Detector.load(args.detector)
    scoring = args.scoring or detector.settings.scoring
    threshold = args.min_score if args.min_score is not None else (0.5 if scoring == "softmax" else 0.0)
    vote_iou = args.vote_iou if args.vote_iou is not None else detector.settings.vote_iou
    settings = DetectionSettings(
        scoring,
        box_regression=not args.no_box_regression,
        nms_iou=args.nms,
        score_threshold=threshold,
        max_detections=args.max_detections,
        vote_iou=vote_iou,
    )
    os.makedirs(args.out, exist_ok=True)
    names = [os.path.splitext(os.path.basename(p))[0] for p in args.images]
    precomputed = load_precomputed_proposals(args.proposals_from, names) if args.proposals_from else None
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
