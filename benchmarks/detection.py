"""SPP-net against R-CNN on held-out images of a detection dataset, as the paper's
Tables 9 and 10: mAP, conv time, fc time and total time per image, and the speedup
over R-CNN, at one scale and at five; selective search time apart.

    python -m benchmarks.detection --detector outputs/detector/detector \
        [--detector5 outputs/detector5/detector] [--test 40] [--train 120] \
        [--windows 128] [--out benchmarks/results/detection-cpu-2core.json]

Every detector shares the trained detector's frozen conv layers (``--detector``'s
backbone) and its proposals. For a like-for-like accuracy comparison, R-CNN and an
SPP-net twin (with ``--detector5``, also a twin of the multi-scale detector) are
trained here on the same training windows (the first ``--train`` images, at most
``--windows`` windows each: all ground truth and positives, then a
seeded sample; R-CNN's per-window conv makes every window costly) with the same
heads, steps and SVM settings. The full detectors (trained on every window) are
timed and evaluated too. Fast R-CNN's truncated SVD of fc6/fc7 is reported as an
option (``--svd-ranks``). Times are medians over the test images, one image at a
time, after a warm-up, at the proposals used for mAP and again at 2000 windows per
image (the paper's count: selective search in quality mode without the size
filter, which finds about 1200 on these small images, topped up with seeded random
boxes, since a window's cost does not depend on what it shows); ``conv`` is resize
+ conv + pooling (SPP-net) or warp + conv + pooling (R-CNN), ``fc`` the heads,
``total`` also includes box decoding and NMS.
"""

import argparse
import os
import time

import numpy as np

from benchmarks.serving import random_proposals

DENSE_WINDOWS = 2000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", default="outputs/detector/detector", help="a 1-scale detector from train_detector")
    p.add_argument("--detector5", default=None, help="optional 5-scale detector from train_detector")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--test", type=int, default=40, help="held-out images evaluated and timed")
    p.add_argument("--train", type=int, default=120, help="training images for the like-for-like pair")
    p.add_argument("--windows", type=int, default=128, help="training windows per image for the pair")
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: the detector's)")
    p.add_argument("--svd-ranks", default="fc6=128,fc7=64")
    p.add_argument(
        "--dense-images",
        type=int,
        default=5,
        help="also time on the first N test images with the paper's 2000 windows each "
        "(selective search in quality mode, topped up with random boxes); 0 to skip",
    )
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from benchmarks.pooling import machine
    from benchmarks.report import emit
    from keras_spp.detection import training
    from keras_spp.detection.evaluation_settings import EVALUATION_SETTINGS

    data = _load(args)
    test, proposals = data["test"], data["proposals"]
    # Selective search time, on images it has not cached (the cache would hide it).
    ss_seconds = _search_seconds(test[:5], data["proposal_params"])
    dense = _dense_windows(test[: args.dense_images])
    config = training.HeadTrainingConfig(steps=args.steps or data["meta"].get("steps", 3000), seed=0)
    methods, window = _methods(args, data, config)
    settings = {name: EVALUATION_SETTINGS[name] for name in ("softmax+bb", "svm+bb")}
    rows = []
    for name, scales, detector, svd in methods:
        rows.append(_measure(name, scales, detector, svd, data, dense, settings))
        print(_row(rows[-1]), flush=True)

    add_speedups(rows)
    dense_windows = float(np.mean([len(b) for b in dense.values()])) if dense else None
    report = {
        "benchmark": "detection",
        "machine": machine(),
        "dataset": data["meta"]["dataset"],
        "test_images": len(test),
        "dense_timed_images": len(dense),
        "dense_windows_per_image": dense_windows or 0.0,
        "pair_training": {"images": len(data["train"]), "windows_per_image": args.windows, "steps": config.steps},
        "proposals_per_image": float(np.mean([len(proposals[e.image_id]) for e in test])),
        "selective_search_s_per_image": float(np.median(ss_seconds)),
        "window_size": window,
        "rows": rows,
        "table": _table(rows, dense_windows),
    }
    print(report["table"])
    emit(report, args.out)
    return 0


def _load(args):
    """The trained detector (``spp``, its ``meta``), the test and training images and
    the proposals of both, as the detector was trained with them."""
    from keras_spp.data.detection_sources import load_detection
    from keras_spp.detection.detector import Detector
    from keras_spp.detection.proposal_cache import proposal_cache, trained_search_params
    from keras_spp.detection.proposals import compute_proposals

    spp = Detector.load(args.detector)
    meta = spp.metadata
    options = meta.get("dataset_options", {})
    test, _ = load_detection(meta["dataset"], "test", data_dir=args.data_dir, **options)
    train, _ = load_detection(meta["dataset"], "trainval", data_dir=args.data_dir, **options)
    test, train = test[: args.test], train[: args.train]
    proposal_params = trained_search_params(meta["proposals"])
    proposals = compute_proposals(train + test, proposal_cache(args.data_dir, meta["dataset"]), **proposal_params)
    return {
        "spp": spp,
        "meta": meta,
        "test": test,
        "train": train,
        "proposal_params": proposal_params,
        "proposals": proposals,
    }


def _search_seconds(examples, proposal_params):
    """Selective search's seconds on each of ``examples``."""
    from keras_spp.data.voc import load_image
    from keras_spp.detection.proposals import selective_search

    seconds = []
    for example in examples:
        image = load_image(example.image_path)
        start = time.perf_counter()
        selective_search(image, **proposal_params)
        seconds.append(time.perf_counter() - start)
    return seconds


def _dense_windows(examples):
    """``{image id: [DENSE_WINDOWS, 4]}``: quality-mode proposals topped up with random boxes."""
    from keras_spp.data.voc import load_image
    from keras_spp.detection.proposals import selective_search

    # The paper times ~2000 windows per image; fast mode finds far fewer on these
    # images, and R-CNN's cost grows with the count while SPP-net's conv does not.
    dense = {}
    for example in examples:
        image = load_image(example.image_path)
        found = selective_search(image, mode="quality", min_size=0, max_proposals=DENSE_WINDOWS)
        extra = random_proposals(*image.shape[:2], DENSE_WINDOWS - len(found), seed=len(dense))
        dense[example.image_id] = np.concatenate([np.asarray(found, np.float32).reshape(-1, 4), extra])
    return dense


def _methods(args, data, config):
    """``([(name, scales, Detector, SVD ranks or None)], R-CNN's window size)``: R-CNN
    and SPP-net's twin trained here on the same windows, the trained detectors, and
    the same for ``--detector5``."""
    import keras

    from keras_spp.detection import heads, training
    from keras_spp.detection.detector import Detector
    from keras_spp.detection.pipeline_heads import fit_closed_form_heads
    from keras_spp.detection.rcnn import WarpedWindowFeatures
    from keras_spp.detection.transfer import transferable_fc_weights

    spp, meta, train = data["spp"], data["meta"], data["train"]
    roi = heads.roi_features_of(spp.model)
    fc_units = spp.model.get_layer("fc6").units
    trained_fc = {name: spp.model.get_layer(name).get_weights() for name in ("fc6", "fc7")}
    classifier = _pretrained_classifier(meta)  # loaded once: every head below starts from it

    def starting_fc(dim):
        # As train_detector starts: the classifier's fc6/fc7 (for R-CNN's single pyramid
        # vector too when the detector pools context); else the trained detector's.
        fitting = trained_fc if trained_fc["fc6"][0].shape[0] == dim else None
        from_classifier = transferable_fc_weights(classifier, dim) if classifier is not None else None
        return from_classifier or fitting

    def trained_twin(trained_roi, name):
        return trained_pair_member(_fresh_roi_like(trained_roi), name)

    def trained_pair_member(features_layer, name):
        model = heads.spp_detector(
            features_layer,
            len(spp.class_names),
            fc_units=fc_units,
            fc_weights=starting_fc(features_layer.output_dim),
            name=name,
        )
        records = training.compute_window_features(
            features_layer, train, data["proposals"], max_windows=args.windows, seed=0, desc=f"{name} training features"
        )
        keras.utils.set_random_seed(0)
        training.fine_tune(model, records, train, config, verbose=0)
        fit_closed_form_heads(model, records, train, config)  # train_detector's box regressors and SVMs
        return Detector(model, spp.class_names, spp.settings)

    window = int(meta.get("window_size", 224))
    rcnn_layer = WarpedWindowFeatures(roi.backbone, roi.levels, window_size=window, context=16, name="rcnn_features")
    rcnn = trained_pair_member(rcnn_layer, "rcnn")
    spp_twin = trained_twin(roi, "spp_same_windows")

    ranks = dict((k, int(v)) for k, v in (item.split("=") for item in args.svd_ranks.split(",")))
    methods = [
        ("R-CNN", "1 window at a time", rcnn, None),
        ("SPP-net (same training windows)", _scales(roi), spp_twin, None),
        ("SPP-net", _scales(roi), spp, None),
        ("SPP-net + SVD", _scales(roi), spp, ranks),
    ]
    if args.detector5:
        spp5 = Detector.load(args.detector5)
        roi5 = heads.roi_features_of(spp5.model)
        # The paper's Table 10 compares R-CNN with SPP-net at one scale and at five:
        # the multi-scale detector's own twin, trained on the same windows as R-CNN.
        spp5_twin = trained_twin(roi5, "spp_same_windows_multiscale")
        methods += [
            ("SPP-net (same training windows)", _scales(roi5), spp5_twin, None),
            ("SPP-net", _scales(roi5), spp5, None),
            ("SPP-net + SVD", _scales(roi5), spp5, ranks),
        ]
    return methods, window


def _fresh_roi_like(trained_roi):
    """A new RoI layer of the trained detector's geometry, for heads trained on R-CNN's windows."""
    from keras_spp.detection.features import MultiScaleRoiFeatures

    return MultiScaleRoiFeatures(
        trained_roi.backbone,
        trained_roi.scales,
        trained_roi.levels,
        trained_roi.feature_stride,
        trained_roi.window_size,
        context=trained_roi.context,
        name="roi_features",
    )


def _timed_detector(detector, svd):
    """``run(image [1, H, W, 3], boxes [R, 4], settings list) -> (detections per
    settings, (conv s, fc s, total s))``: the window features and the heads as
    separate ``tf.function``s, timed apart."""
    import tensorflow as tf

    from keras_spp.detection import heads
    from keras_spp.detection.detector import postprocess

    features = heads.roi_features_of(detector.model)
    head = heads.pooled_head(detector.model, svd)
    spec = [tf.TensorSpec([1, None, None, 3], tf.float32), tf.TensorSpec([None, 4], tf.float32)]
    features_fn = tf.function(lambda i, b: features(i, b), input_signature=spec)
    head_fn = tf.function(
        lambda x: head(x, training=False), input_signature=[tf.TensorSpec([None, features.output_dim], tf.float32)]
    )

    def run(image, boxes, settings_list):
        t0 = time.perf_counter()
        pooled = features_fn(image, boxes)
        pooled.numpy()
        t1 = time.perf_counter()
        outputs = {k: v.numpy() for k, v in head_fn(pooled).items()}
        t2 = time.perf_counter()
        found = [postprocess(outputs, boxes, image.shape[1], image.shape[2], s) for s in settings_list]
        found = [tuple(t.numpy() for t in f) for f in found]
        t3 = time.perf_counter()
        return found, (t1 - t0, t2 - t1, t2 - t0 + (t3 - t2) / len(settings_list))

    return run


def _measure(name, scales, detector, svd, data, dense, settings):
    """One row of the table: median times on the test images (and on the ``dense``
    ones at 2000 windows), and the mAP of every ``settings``."""
    import tensorflow as tf

    from keras_spp.data.voc import load_image
    from keras_spp.detection.evaluation import evaluate_detections

    run = _timed_detector(detector, svd)
    detections = {k: [] for k in settings}
    times, dense_times = [], []
    for i, example in enumerate(_progress(data["test"], name, scales)):
        image = tf.constant(load_image(example.image_path)[None], tf.float32)
        boxes = tf.constant(np.asarray(data["proposals"][example.image_id], np.float32).reshape(-1, 4))
        if i == 0:  # warm-up: tracing and first-call allocations are not per-image costs
            run(image, boxes, list(settings.values()))
        found, spent = run(image, boxes, list(settings.values()))
        times.append(spent)
        for key, f in zip(settings, found):
            detections[key].append(f)
        if example.image_id in dense:
            _, spent = run(image, tf.constant(dense[example.image_id]), [settings["softmax+bb"]])
            dense_times.append(spent)
    times = np.median(np.array(times), axis=0)
    result = {
        "method": name,
        "scales": scales,
        "svd_ranks": svd,
        "conv_s": float(times[0]),
        "fc_s": float(times[1]),
        "total_s": float(times[2]),
    }
    if dense_times:
        dense_med = np.median(np.array(dense_times), axis=0)
        result.update(
            dense_conv_s=float(dense_med[0]), dense_fc_s=float(dense_med[1]), dense_total_s=float(dense_med[2])
        )
    gts = [(e.boxes, e.labels, e.difficult) for e in data["test"]]
    spp = data["spp"]
    for key, dets in detections.items():
        evaluation = evaluate_detections(dets, gts, len(spp.class_names), class_names=spp.class_names)
        result[f"map_{key}"] = float(evaluation["map_voc07"])
    return result


def add_speedups(rows):
    """Ratios against ``rows[0]`` (R-CNN): of the totals (with box decoding and NMS),
    of conv + fc (what the paper's Tables 9-10 add up), and of conv alone."""
    base = rows[0]
    for row in rows:
        for prefix in ("", "dense_"):
            if f"{prefix}total_s" in row:
                conv_fc = row[f"{prefix}conv_s"] + row[f"{prefix}fc_s"]
                row[f"{prefix}speedup_total"] = base[f"{prefix}total_s"] / row[f"{prefix}total_s"]
                row[f"{prefix}speedup_conv_fc"] = (base[f"{prefix}conv_s"] + base[f"{prefix}fc_s"]) / conv_fc
                row[f"{prefix}speedup_conv"] = base[f"{prefix}conv_s"] / row[f"{prefix}conv_s"]
    return rows


def _pretrained_classifier(meta):
    """The classifier the detector was trained from, where its file is still there."""
    import keras

    path = meta.get("pretrained")
    if not path or not os.path.exists(path):
        return None
    return keras.saving.load_model(path)


def _scales(roi):
    return "/".join(str(s) for s in roi.scales)


def _progress(items, name, scales):
    from tqdm.auto import tqdm

    return tqdm(items, desc=f"{name} [{scales}]", unit="img")


def _row(r):
    line = (
        f"{r['method']:<32} {r['scales']:<24} {r['map_softmax+bb']:>7.3f} {r['map_svm+bb']:>7.3f} "
        f"{r['conv_s']:>7.3f} {r['fc_s']:>7.3f} {r['total_s']:>7.3f} {r.get('speedup_total', 1.0):>7.1f}x"
    )
    if "dense_total_s" in r:
        line += (
            f" | {r['dense_conv_s']:>7.3f} {r['dense_fc_s']:>7.3f} {r['dense_total_s']:>7.3f}"
            f" {r.get('dense_speedup_total', 1.0):>7.1f}x"
        )
    return line


def _table(rows, dense_windows=None):
    dense = f"at {dense_windows:.0f} windows/image" if dense_windows else "dense proposals"
    head = (
        f"{'method':<32} {'scales':<24} {'mAP sm':>7} {'mAP svm':>7} {'conv s':>7} {'fc s':>7} "
        f"{'total s':>7} {'speedup':>8} | {dense}: conv, fc, total, speedup"
    )
    return "\n".join([head] + [_row(r) for r in rows])


if __name__ == "__main__":
    raise SystemExit(main())
