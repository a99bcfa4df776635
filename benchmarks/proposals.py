"""Selective search against learned proposals (an RPN on the same conv5) on held-out
images: proposal recall, proposal time, end-to-end time from JPEG bytes to
detections, and VOC07 mAP, in one run on this machine; prints JSON.

    python -m benchmarks.proposals --ss-detector outputs/detector/detector \
        --rpn-detector outputs/detector-rpn/detector [--split test] [--timed 40] \
        [--out benchmarks/results/proposals-cpu-2core.json]

Both detectors come from ``recipes.train_detector`` on the same pretrained
classifier, scales and head settings; the first with ``--proposals
selective-search`` (selective search run here with the settings it was trained
with, cached), the second with ``--proposals rpn``. For every held-out image:

* recall@0.5 of the first 50/100/300/1000/all proposals (every object counts);
* VOC07 mAP (11-point) with the detector's own settings on its own proposals;
* on the first ``--timed`` images, after one warm-up pass over them (XLA compiles
  once per image size), the median seconds an image of the paths below, the two
  detectors taking turns, a pass over the timed images each, ``--rounds`` times, so
  that the machine's drifts reach both sides of each ratio (one pass each, minutes
  apart, the same two detectors gave 4.96x and 5.3x in two runs):
  - ``proposals_s``: selective search on the decoded image; for the RPN the head
    and the proposal layer on the conv5 of each of its scales, and their merge
    (``proposals_with_conv5_s`` adds those conv5 maps, which the windows then pool
    from);
  - ``end_to_end_keras_s``: JPEG decode, proposals, the detector as one Keras
    model (``SppNetDetector.from_detector``; ``model(image)`` for the RPN,
    ``model(image, boxes)`` for selective search's boxes);
  - ``end_to_end_saved_model_s``: the export (``export.saved_model``, ``--jit
    auto``: no XLA for a bfloat16 detector) as TF Serving loads it
    (``tf.saved_model.load``'s ``serving_default``): for selective search the client
    decodes, searches and sends the boxes with the bytes; the RPN detector takes the
    bytes alone.

``rpn.end_to_end_speedup_*``: selective search's end-to-end time over the RPN's,
per path (``_cpu``: in this process's CPU seconds, ``*_cpu_s``, which other work on a
shared machine moves less than wall time); ``served_over_keras`` (``_cpu``): the
SavedModel's end-to-end time over the Keras detector's; ``rpn.rpn_proposal_share``:
the RPN's proposal time over its end-to-end time (SavedModel).
``served_max_abs_diff``: the export's detections against the Keras detector's on the
timed images (normalized boxes and scores). ``rpn.end_to_end_keras_whole_maps_s``: the
same RPN detector with every scale's conv on the whole image (before
``MultiScaleRoiFeatures.pool_cropped``), timed in a second pass interleaved with the
Keras model alone (``end_to_end_keras_beside_whole_maps_s``): in the first pass its
whole-image maps slowed the paths beside it by about 8% in CPU seconds;
``cropped_conv_speedup_keras`` (``_cpu``) its time over the Keras model's in that pass, and
``cropped_vs_whole_maps_max_abs_diff`` their detections' largest difference (pixels,
scores). ``note``: ``--note``;
``load_average_1_5_15_min``: the machine's load before and after the run.
"""

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks.report import emit
from keras_spp.data.voc import decode_image_tf

COUNTS = (50, 100, 300, 1000, None)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ss-detector", default="outputs/detector/detector")
    p.add_argument("--rpn-detector", default="outputs/detector-rpn/detector")
    p.add_argument("--split", default="test", help="held-out split (validation: val)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--max-images", type=int, default=None, help="the first N held-out images")
    p.add_argument("--timed", type=int, default=40, help="held-out images timed (one at a time)")
    p.add_argument("--rounds", type=int, default=2, help="timed passes of each detector, taking turns")
    p.add_argument("--out", default=None)
    p.add_argument("--note", default=None, help="recorded in the JSON as is (how the detectors were made, the load)")
    args = p.parse_args(argv)
    for flag in ("timed", "rounds", "max_images"):  # the medians need at least one timing
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1; got {value}")
    return args


def main(argv=None):
    args = parse_args(argv)
    _warn_on_map_count()
    from benchmarks.pooling import machine
    from keras_spp.data.detection_sources import load_detection
    from keras_spp.detection.detector import Detector

    ss_detector, rpn_detector = Detector.load(args.ss_detector), Detector.load(args.rpn_detector)
    if rpn_detector.proposer is None:
        raise SystemExit(f"--rpn-detector {args.rpn_detector} has no RPN: train it with --proposals rpn.")
    meta = ss_detector.metadata
    examples, _ = load_detection(
        meta.get("dataset", "mnist-detection"), args.split, data_dir=args.data_dir, **meta.get("dataset_options", {})
    )
    examples = examples[: args.max_images]
    timed = examples[: args.timed]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        ss, ss_paths = selective_search_side(ss_detector, examples, timed, args, scratch)
        rpn, rpn_paths, rpn_model = rpn_side(rpn_detector, examples, timed, args, scratch)
        timings = _timings(timed, {"ss:": ss_paths, "rpn:": rpn_paths}, rounds=args.rounds)
        for prefix, side in (("ss:", ss), ("rpn:", rpn)):
            side.update({key[len(prefix) :]: value for key, value in timings.items() if key.startswith(prefix)})
        rpn.update(_cropped_against_whole_maps(rpn_model, args.rpn_detector, timed))
    for path in ("keras", "saved_model"):
        rpn[f"end_to_end_speedup_{path}"] = ss[f"end_to_end_{path}_s"] / rpn[f"end_to_end_{path}_s"]
        rpn[f"end_to_end_speedup_{path}_cpu"] = ss[f"end_to_end_{path}_cpu_s"] / rpn[f"end_to_end_{path}_cpu_s"]
    for side in (ss, rpn):
        side["served_over_keras"] = side["end_to_end_saved_model_s"] / side["end_to_end_keras_s"]
        side["served_over_keras_cpu"] = side["end_to_end_saved_model_cpu_s"] / side["end_to_end_keras_cpu_s"]
    rpn["rpn_proposal_share"] = rpn["proposals_s"] / rpn["end_to_end_saved_model_s"]
    rpn["rpn_proposal_share_with_conv5"] = rpn["proposals_with_conv5_s"] / rpn["end_to_end_saved_model_s"]
    report = {
        "benchmark": "proposals",
        "machine": machine(),
        "split": args.split,
        "images": len(examples),
        "timed_images": len(timed),
        "load_average_1_5_15_min": {"before": list(load_before), "after": list(os.getloadavg())},
        "note": args.note,
        "selective_search": ss,
        "rpn": rpn,
        "targets": targets(ss, rpn),
    }
    emit(report, args.out)
    return 0


def _warn_on_map_count(path="/proc/sys/vm/max_map_count", needed=262144):
    """XLA's CPU JIT maps memory for every program it compiles, and this benchmark
    compiles one per image size and path; at Linux's default of 65530 maps LLVM ran
    out here ("Cannot allocate memory") and the process died. Says so up front."""
    try:
        with open(path) as f:
            count = int(f.read())
    except (OSError, ValueError):
        return
    if count < needed:
        print(
            f"warning: vm.max_map_count is {count}; XLA's JIT needs more maps than that for the programs this "
            f"benchmark compiles (one per image size), and LLVM then fails with 'Cannot allocate memory'. "
            f"As root: sysctl -w vm.max_map_count={4 * needed}",
            file=sys.stderr,
        )


def targets(ss, rpn):
    """The issue's targets, each with the two numbers it compares."""
    return {
        "rpn_recall_300_vs_ss_recall_2000": [rpn["recall@0.5"]["300"], ss["recall@0.5"]["all"]],
        "rpn_map_vs_ss_map": [rpn["voc07_map"], ss["voc07_map"]],
        "rpn_proposal_share_at_most_0.10": rpn["rpn_proposal_share"],
        "end_to_end_speedup_at_least_5": rpn["end_to_end_speedup_saved_model"],
        "end_to_end_speedup_keras_at_least_5": rpn["end_to_end_speedup_keras"],
        "served_over_keras_at_most_1": rpn["served_over_keras"],
        "served_max_abs_diff_at_most_1e-4": max(rpn["served_max_abs_diff"], ss["served_max_abs_diff"]),
    }


def selective_search_side(detector, examples, timed, args, scratch):
    """``(report, paths)``: selective search's recall, mAP and served difference, and
    the paths ``main`` times."""
    from keras_spp.detection import proposal_cache
    from keras_spp.detection.proposals import selective_search

    search = proposal_cache.trained_search_params(detector.metadata.get("proposals", {}))
    cache = proposal_cache.proposal_cache(args.data_dir, detector.metadata.get("dataset", "mnist-detection"))
    proposals = proposal_cache.proposals_for(examples, cache_dir=cache, search=search)
    served = _export(args.ss_detector, scratch, "ss")

    def propose(image):
        return selective_search(image, **search)

    model = _keras_model(detector)

    def keras_path(encoded):
        image = _decode(encoded)
        return model(image[None], propose(image))

    def served_path(encoded):
        image = _decode(encoded)
        return _serve(served, encoded, propose(image))

    out = {"settings": search, **_quality(detector, examples, proposals)}
    out["served_max_abs_diff"] = _served_diff(model, served, timed, propose)
    paths = {
        "proposals_s": lambda e: propose(_decode(e)),
        "end_to_end_keras_s": keras_path,
        "end_to_end_saved_model_s": served_path,
    }
    return out, paths


def rpn_side(detector, examples, timed, args, scratch):
    """``(report, paths, model)`` of the RPN detector: as ``selective_search_side``, and
    its Keras model for the whole-maps pass."""
    import tensorflow as tf

    from keras_spp.data.voc import load_image

    proposer = detector.proposer
    proposals, _ = proposer.proposals_for(examples, load_image, desc="rpn proposals")
    served = _export(args.rpn_detector, scratch, "rpn")
    propose_full = tf.function(
        lambda image: proposer.propose(image)[0], input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)]
    )
    feature_maps = tf.function(proposer.feature_maps, input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    # conv5 comes in the backbone's dtype (bfloat16 under mixed precision), one map per RPN scale.
    from_maps = tf.function(
        lambda maps, sizes, factors: proposer.propose_from_maps(maps, sizes, factors)[0], reduce_retracing=True
    )
    maps = {}

    def head_and_layer(encoded):
        if encoded not in maps:  # conv5 is the detector's anyway: computed once, outside the timing
            maps[encoded] = feature_maps(tf.constant(_decode(encoded)[None], tf.float32))
        return from_maps(*maps[encoded])

    model = _keras_model(detector)
    out = {
        "scales": list(proposer.scales),
        "anchors": proposer.anchors.to_dict(),
        "settings": proposer.to_dict()["settings"],
        **_quality(detector, examples, proposals),
    }
    out["served_max_abs_diff"] = _served_diff(model, served, timed, None)
    paths = {
        "proposals_s": head_and_layer,
        "proposals_with_conv5_s": lambda e: propose_full(tf.constant(_decode(e)[None], tf.float32)),
        "end_to_end_keras_s": lambda e: model(_decode(e)[None]),
        "end_to_end_saved_model_s": lambda e: _serve(served, e, None),
    }
    return out, paths, model


def _cropped_against_whole_maps(model, path, timed):
    """The crop's gain, in a pass of its own (module docstring)."""
    whole = _keras_model(_whole_maps_twin(path))
    paths = {
        "end_to_end_keras_beside_whole_maps_s": lambda e: model(_decode(e)[None]),
        "end_to_end_keras_whole_maps_s": lambda e: whole(_decode(e)[None]),
    }
    out = _timings(timed, {"": paths})
    for suffix in ("", "_cpu"):
        out[f"cropped_conv_speedup_keras{suffix}"] = (
            out[f"end_to_end_keras_whole_maps{suffix}_s"] / out[f"end_to_end_keras_beside_whole_maps{suffix}_s"]
        )
    out["cropped_vs_whole_maps_max_abs_diff"] = _detections_diff(model, whole, timed)
    return out


def _keras_model(detector):
    from keras_spp.detection.spp_net_detector import SppNetDetector

    return SppNetDetector.from_detector(detector)


def _whole_maps_twin(path):
    """The detector at ``path`` with every scale's conv run on the whole image, as
    before ``MultiScaleRoiFeatures.pool_cropped``: the same run's baseline for the crop."""
    from keras_spp.detection.detector import Detector
    from keras_spp.detection.heads import roi_features_of

    twin = Detector.load(path)
    roi_features_of(twin.model).conv_crop = None
    return twin


def _detections_diff(model, other, examples):
    """Largest difference between two detector models' normalized boxes, scores and
    classes on ``examples`` (``inf`` where the detection counts differ)."""
    worst = 0.0
    for example in examples:
        image = _decode(_read(example.image_path))[None]
        worst = max(worst, _outputs_diff(_numpy(model(image)), _numpy(other(image))))
    return worst


def _outputs_diff(found, other):
    """Largest difference between two dicts of the OD API's outputs (one image)."""
    n = int(found["num_detections"][0])
    if n != int(other["num_detections"][0]):
        return float("inf")
    return max(
        float(np.abs(found[key][0, :n] - other[key][0, :n]).max(initial=0))
        for key in ("detection_boxes", "detection_scores", "detection_classes")
    )


def _numpy(outputs):
    return {key: np.asarray(value) for key, value in outputs.items()}


def _quality(detector, examples, proposals):
    """Recall, and VOC07 mAP with the detector's own settings (``voc07_map``) and
    with each of ``evaluation_settings``' (softmax or SVM, box regression, voting)."""
    from keras_spp.detection.evaluation_settings import EVALUATION_SETTINGS, evaluation_summary
    from keras_spp.detection.rpn_training import proposal_recall

    found = {e.image_id: np.asarray(proposals[e.image_id]) for e in examples}
    settings = {"own": detector.settings, **EVALUATION_SETTINGS}
    evaluation = evaluation_summary(detector, examples, found, settings)
    return {
        "recall@0.5": proposal_recall(found, examples, COUNTS),
        "recall@0.7": proposal_recall(found, examples, COUNTS, iou=0.7),
        "proposals_per_image": float(np.mean([len(b) for b in found.values()])),
        "voc07_map": float(evaluation["own"]["map_voc07"]),
        "voc07_map_by_setting": {
            name: float(v["map_voc07"]) for name, v in evaluation.items() if isinstance(v, dict) and name != "own"
        },
    }


def _timings(examples, groups, rounds=1):
    """Median seconds per image of each path over ``examples`` after a warm-up pass.

    ``groups``: ``{prefix: {name: path}}``, reported as ``prefix + name``. Within a
    group the paths are interleaved image by image; the groups take turns, a whole
    pass over ``examples`` each, ``rounds`` times, so that a drift of the machine
    reaches every group. Interleaved image by image across the two detectors (one run,
    08:04 UTC on 2026-12-07), selective search's path ran 10% slower than in passes of
    its own while the RPN detector's did not change, which flattered the ratio by as
    much. ``<path>``: wall seconds; ``<path minus _s>_cpu_s``: this
    process's CPU seconds (user + system, every thread), which other work on a
    shared machine moves less."""
    encoded = [_read(e.image_path) for e in examples]
    paths = {prefix + name: fn for prefix, group in groups.items() for name, fn in group.items()}
    for data in encoded:  # warm-up: tracing, and XLA's compilation per image size
        for fn in paths.values():
            fn(data)
    seconds = {name: [] for name in paths}
    cpu = {name: [] for name in paths}
    for _ in range(rounds):
        for prefix, group in groups.items():
            for data in encoded:
                for name, fn in group.items():
                    start, start_cpu = time.perf_counter(), _cpu_seconds()
                    _block(fn(data))
                    seconds[prefix + name].append(time.perf_counter() - start)
                    cpu[prefix + name].append(_cpu_seconds() - start_cpu)
    out = {name: statistics.median(values) for name, values in seconds.items()}
    out.update({f"{name[: -len('_s')]}_cpu_s": statistics.median(values) for name, values in cpu.items()})
    return out


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _served_diff(model, served, examples, propose):
    """Largest difference between the export's and the Keras model's normalized
    boxes, scores and classes over ``examples`` (detection counts must agree)."""
    worst = 0.0
    for example in examples:
        data = _read(example.image_path)
        image = _decode(data)
        boxes = None if propose is None else propose(image)
        worst = max(worst, _outputs_diff(_numpy(model(image[None], boxes)), _serve(served, data, boxes)))
    return worst


def _export(detector_dir, scratch, name):
    import tensorflow as tf

    from export import saved_model

    out = saved_model.export(detector_dir, "detector", os.path.join(scratch, name, "1"))
    return tf.saved_model.load(out).signatures["serving_default"]


def _serve(signature, encoded, boxes):
    import tensorflow as tf

    inputs = {"image_bytes": tf.constant([encoded])}
    if boxes is not None:
        inputs["boxes"] = tf.constant(np.asarray(boxes, np.float32).reshape(1, -1, 4))
    return {k: v.numpy() for k, v in signature(**inputs).items()}


def _decode(encoded):

    return decode_image_tf(encoded).numpy()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _block(value):
    """Waits for ``value`` (numpy conversion of any tensors in it)."""
    if hasattr(value, "numpy"):
        value.numpy()
    elif isinstance(value, (tuple, list, dict)):
        for v in value.values() if isinstance(value, dict) else value:
            _block(v)
    return value


if __name__ == "__main__":
    raise SystemExit(main())
