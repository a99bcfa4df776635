"""Pieces shared by the detection recipes and the detection benchmark."""

import dataclasses
import os
import time

import numpy as np

from keras_spp.detection.detector import DetectionSettings

# The paper's four test-time variants: softmax or SVM scores, with or without the
# bounding-box regressors; then box voting on top of the regressors (beyond the paper).
# Low thresholds: mAP needs the whole precision-recall curve. Voting's IoU is the
# positives' 0.5, the overlap at which a window counts as the object's.
VOTE_IOU = 0.5
EVALUATION_SETTINGS = {
    "softmax": DetectionSettings("softmax", box_regression=False, score_threshold=0.001),
    "softmax+bb": DetectionSettings("softmax", box_regression=True, score_threshold=0.001),
    "svm": DetectionSettings("svm", box_regression=False, score_threshold=-1.5),
    "svm+bb": DetectionSettings("svm", box_regression=True, score_threshold=-1.5),
    "softmax+bb+vote": DetectionSettings("softmax", box_regression=True, score_threshold=0.001, vote_iou=VOTE_IOU),
    "svm+bb+vote": DetectionSettings("svm", box_regression=True, score_threshold=-1.5, vote_iou=VOTE_IOU),
}


class Proposals(dict):
    """``{image_id: boxes}`` with the seconds it took to compute the missing ones."""

    seconds = 0.0


def proposals_tag(args):
    if args.proposals_from:
        return "pre-" + os.path.basename(os.path.normpath(args.proposals_from))
    tag = f"ss{args.proposals}-m{args.min_proposal_size}-s{args.proposal_max_side}"
    return tag if args.proposal_k is None else f"{tag}-k{args.proposal_k}"


def search_params(args):
    """``selective_search``'s settings from ``train_detector``'s flags."""
    return {"min_size": args.min_proposal_size, "max_proposals": args.proposals,
            "max_side": args.proposal_max_side or None, "base_k": args.proposal_k}


def trained_search_params(stored):
    """The same settings from a detector's ``metadata["proposals"]`` (as
    ``train_detector`` writes it); selective search's defaults where it holds none."""
    return {"min_size": stored.get("min_size", 20), "max_proposals": stored.get("max", 2000),
            "max_side": stored.get("max_side") or None, "base_k": stored.get("base_k")}


def proposal_cache(data_dir, dataset):
    """Where a dataset's selective search boxes are cached (one folder per setting inside)."""
    from keras_spp.data.mnist import data_dir as default_data_dir

    return os.path.join(data_dir or default_data_dir(), "proposals", _dataset_tag(dataset))


def proposals_for(examples, args):
    from keras_spp.detection.proposals import compute_proposals
    from keras_spp.detection.proposals import load_precomputed_proposals

    ids = [e.image_id for e in examples]
    start = time.perf_counter()
    if args.proposals_from:
        found = load_precomputed_proposals(args.proposals_from, ids)
    else:
        found = compute_proposals(examples, proposal_cache(args.data_dir, args.dataset), **search_params(args))
    proposals = Proposals(found)
    proposals.seconds = time.perf_counter() - start
    counts = [len(proposals[i]) for i in ids]
    print(f"proposals: {np.mean(counts):.0f} per image on average (min {min(counts, default=0)}, "
          f"max {max(counts, default=0)}), {proposals.seconds:.0f} s", flush=True)
    return proposals


def _dataset_tag(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def transferable_fc_weights(pretrained, pooled_dim):
    """fc6 and fc7 of the pretrained classifier, when fc6 takes ``pooled_dim`` inputs.

    Window features with context (``MultiScaleRoiFeatures(context=...)``) are two
    pyramid vectors, the window's and its context square's: fc6 then starts as the
    classifier's fc6 applied to each, halved, so that it gives the classifier's own
    fc6 output when both halves are alike.
    """
    try:
        fc6, fc7 = pretrained.get_layer("fc6"), pretrained.get_layer("fc7")
    except ValueError:
        return None
    (kernel, bias), fc7_weights = fc6.get_weights(), fc7.get_weights()
    copies, rest = divmod(pooled_dim, kernel.shape[0])
    if rest or copies not in (1, 2):
        return None
    return {"fc6": [np.concatenate([kernel / copies] * copies, axis=0), bias], "fc7": fc7_weights}


def evaluate(detector, examples, proposals, class_names, settings=EVALUATION_SETTINGS):
    from keras_spp.detection.detector import evaluate_detector

    results, _ = evaluate_detector(detector, examples, proposals, settings)
    summary = {"seconds_per_image": results.pop("seconds_per_image")}
    for name, result in results.items():
        summary[name] = {
            "map_voc07": result["map_voc07"],
            "map_area": result["map_area"],
            "ap_voc07": result["ap_voc07"],
            "ap_area": result["ap_area"],
            "settings": dataclasses.asdict(settings[name]),
        }
    return summary


def format_evaluation(summary):
    lines = [f"{'scoring':<12} {'mAP voc07':>10} {'mAP area':>10}"]
    for name, result in summary.items():
        if isinstance(result, dict):
            lines.append(f"{name:<12} {result['map_voc07']:>10.4f} {result['map_area']:>10.4f}")
    lines.append(f"network time per image: {summary['seconds_per_image'] * 1000:.0f} ms")
    return "\n".join(lines)


def draw_examples(detector, examples, proposals, class_names, path, count=6, min_score=0.5):
    from keras_spp.data.voc import load_image
    from keras_spp.visualization import draw_detections
    from keras_spp.visualization import image_grid

    pictures = []
    for example in examples[:count]:
        try:
            image = load_image(example.image_path)
        except ValueError:
            continue
        boxes, scores, classes = detector.detect(image, proposals[example.image_id])
        keep = scores >= min_score
        pictures.append(
            draw_detections(image, boxes[keep], scores[keep], classes[keep], class_names, ground_truth=example.boxes)
        )
    if pictures:
        image_grid(pictures, columns=3).save(path)
    return path
