"""The paper's four test-time variants of one trained detector, and their mAP.

Softmax or SVM scores, with or without the bounding-box regressors; then box voting
on top of the regressors (beyond the paper). Thresholds are low: mAP needs the whole
precision-recall curve. Voting's IoU is the positives' 0.5, the overlap at which a
window counts as the object's.
"""

import dataclasses

from keras_spp.detection.detector import DetectionSettings

VOTE_IOU = 0.5
EVALUATION_SETTINGS = {
    "softmax": DetectionSettings("softmax", box_regression=False, score_threshold=0.001),
    "softmax+bb": DetectionSettings("softmax", box_regression=True, score_threshold=0.001),
    "svm": DetectionSettings("svm", box_regression=False, score_threshold=-1.5),
    "svm+bb": DetectionSettings("svm", box_regression=True, score_threshold=-1.5),
    "softmax+bb+vote": DetectionSettings("softmax", box_regression=True, score_threshold=0.001, vote_iou=VOTE_IOU),
    "svm+bb+vote": DetectionSettings("svm", box_regression=True, score_threshold=-1.5, vote_iou=VOTE_IOU),
}


def evaluation_summary(detector, examples, proposals, settings=EVALUATION_SETTINGS):
    """``{setting name: {map_voc07, map_area, ap_voc07, ap_area, settings}}`` of
    ``detector`` on ``examples`` (``proposals``: image id -> boxes), with the network's
    ``seconds_per_image``: ``evaluate_detector``'s results, JSON-ready."""
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
    """``evaluation_summary`` as a table: one row per setting, then the network time.

    >>> print(format_evaluation({"softmax": {"map_voc07": 0.5, "map_area": 0.25}, "seconds_per_image": 0.02}))
    scoring       mAP voc07   mAP area
    softmax          0.5000     0.2500
    network time per image: 20 ms
    """
    lines = [f"{'scoring':<12} {'mAP voc07':>10} {'mAP area':>10}"]
    for name, result in summary.items():
        if isinstance(result, dict):
            lines.append(f"{name:<12} {result['map_voc07']:>10.4f} {result['map_area']:>10.4f}")
    lines.append(f"network time per image: {summary['seconds_per_image'] * 1000:.0f} ms")
    return "\n".join(lines)
