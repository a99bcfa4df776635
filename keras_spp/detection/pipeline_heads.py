"""``keras_spp.detection.pipeline``'s later steps: the heads, the files, the report.

Each step takes the run's ``DetectorTrainingConfig`` and ``TrainingState``:
``train_heads`` (window features, fc6-fc8 fine-tuning, conv fine-tuning with
``conv_steps``, then ``fit_closed_form_heads``: box regressors and SVMs),
``save_detector`` and ``report``. Both fine-tunings train through the detector
model's own ``fit`` (``SppNetDetector``'s train step,
``keras_spp.detection.detector_training``), on the window features and on images
with windows.
"""

import dataclasses
import json
import os
import time


def head_training_config(config):
    """The fc fine-tuning's, regressors' and SVMs' ``HeadTrainingConfig``."""
    from keras_spp.detection import training
    from keras_spp.detection.svm import SvmConfig

    return training.HeadTrainingConfig(
        steps=config.steps,
        batch_size=config.batch_size,
        learning_rate=config.lr,
        final_learning_rate=config.lr / 10,
        optimizer=config.optimizer,
        negative_iou=config.negative_iou,
        box_regression_max_windows=config.box_regression_windows,
        svm=SvmConfig(max_hard_negatives=config.svm_cache),
        seed=config.seed,
    )


def train_heads(config, state):
    """Window features, fc6-fc8 fine-tuning (and conv, with ``conv_steps``), box
    regressors and SVMs: sets ``state.regression_windows`` and ``state.svm_stats``
    (left ``None`` on a worker that is not the chief)."""
    head_config = head_training_config(config)
    t0 = time.perf_counter()
    cache_dir = _feature_cache_dir(config, state)
    records = window_records(config, state, cache_dir)
    state.seconds["window_features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _fine_tune_fc(config, state, records, head_config, cache_dir)
    state.seconds["fine_tune"] = time.perf_counter() - t0
    if not state.is_chief:
        return  # the chief fits the regressors and SVMs and writes the detector
    state.seconds["conv_fine_tune"] = 0.0
    if config.conv_steps > 0:
        t0 = time.perf_counter()
        records = _fine_tune_conv(config, state, records)
        state.seconds["conv_fine_tune"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    state.regression_windows, state.svm_stats = fit_closed_form_heads(
        state.model, records, state.train, head_config, state_dir=os.path.join(cache_dir, "svm")
    )
    state.seconds["regression_and_svms"] = time.perf_counter() - t0


def fit_closed_form_heads(model, records, examples, head_config, state_dir=None):
    """The box regressors, then the per-class SVMs on fc7, fitted on ``records`` (the
    training windows' cached features) into ``model``: ``(regression windows per
    class, SVM statistics)``. ``state_dir`` keeps the SVMs' mining resumable."""
    from keras_spp.detection import training

    regression_windows = training.fit_box_regression(model, records, examples, head_config)
    svm_stats = training.fit_svms(model, records, examples, head_config, state_dir=state_dir)
    return regression_windows, svm_stats


def window_records(config, state, cache_dir):
    """Every training image's windows, their features cached under ``cache_dir``. Under
    ``strategy="multi-worker"`` each worker first caches its share of the images, then
    (once all have) reads every shard: the same stream on every worker, as on one
    device."""
    from keras_spp.detection import training

    train = state.train

    def window_features(examples, desc="window features"):
        return training.compute_window_features(
            state.roi,
            examples,
            state.proposals,
            cache_dir=cache_dir,
            key=os.path.basename(cache_dir),
            store=config.window_store,
            max_windows=config.max_train_windows or None,
            keep_iou=training.NEAR_OBJECT_IOU,
            seed=config.seed,
            desc=desc,
        )

    if config.strategy == "multi-worker":
        from keras_spp.training.distribute import gather_from_workers

        rank, workers = worker_rank(state.strategy)
        window_features(train[rank::workers], desc=f"window features (worker {rank} of {workers})")
        gather_from_workers(state.strategy, [rank])  # a barrier: every share is cached
    return window_features(train)


def _fine_tune_fc(config, state, records, head_config, cache_dir):
    import keras

    from keras_spp.callbacks import TrainingCurves
    from keras_spp.detection import training

    logs = config.out
    if config.strategy == "multi-worker" and worker_rank(state.strategy)[0]:
        logs = os.path.join(config.out, f"worker-{worker_rank(state.strategy)[0]}")
        os.makedirs(logs, exist_ok=True)
    history_csv = os.path.join(logs, "history.csv")
    if os.path.exists(history_csv):
        os.remove(history_csv)
    return training.fine_tune(
        state.model,
        records,
        state.train,
        head_config,
        verbose=config.verbose,
        # The backup holds the SppNetDetector's weights (it trains through its own
        # fit): another folder than the head model's backups of earlier versions.
        backup_dir=os.path.join(cache_dir, "fine_tune_detector_backup"),
        strategy=state.strategy,
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


def _feature_cache_dir(config, state):
    """A folder named by everything the cached window features depend on."""
    from keras_spp.detection import training

    parts = [
        training.weights_fingerprint(state.conv),
        "s" + "_".join(map(str, state.scales)),
        "l" + "_".join(map(str, state.levels)),
        f"w{config.window_size}",
        state.proposals_tag,
        *([f"c{config.context:g}"] if config.context else []),
        *([f"n{config.max_train_windows}"] if config.max_train_windows else []),
        *(["conv5"] if config.window_store == "conv5" else []),
    ]
    return os.path.join(config.cache_root, "-".join(parts))


def _fine_tune_conv(config, state, records):
    """Fast R-CNN's conv fine-tuning through the RoI op; returns the window features
    recomputed with the tuned conv layers, which the regressors and SVMs learn from."""
    import keras

    from keras_spp.detection import conv_fine_tuning, training

    conv_config = conv_fine_tuning.ConvFineTuningConfig(
        steps=config.conv_steps,
        windows_per_image=config.conv_windows,
        learning_rate=config.conv_lr,
        final_learning_rate=config.conv_lr / 10,
        negative_iou=config.negative_iou,
        seed=config.seed,
    )
    history = keras.callbacks.CSVLogger(os.path.join(config.out, "history_conv.csv"))
    conv_fine_tuning.fine_tune_end_to_end(
        state.model, records, state.train, conv_config, verbose=config.verbose, callbacks=[history]
    )
    tuned = os.path.join(config.cache_root, "conv-" + training.weights_fingerprint(state.conv))
    return training.compute_window_features(
        state.roi,
        state.train,
        state.proposals,
        cache_dir=tuned,
        key=os.path.basename(tuned),
        desc="features (tuned conv)",
    )


def save_detector(config, state):
    """Sets ``state.detector`` and writes it: ``detector/`` and ``detector.keras``."""
    from keras_spp.detection.detector import Detector
    from keras_spp.detection.spp_net_detector import SppNetDetector

    if config.proposals == "rpn":
        proposal_meta = {"method": "rpn", "train_proposals": config.rpn_train_proposals}
    else:
        proposal_meta = {
            "method": "selective-search",
            "max": config.max_proposals,
            "min_size": config.min_proposal_size,
            "max_side": config.proposal_max_side or None,
            "base_k": config.proposal_k,
        }
    detector = Detector(
        state.model,
        state.class_names,
        metadata={
            "dataset": config.dataset,
            "dataset_options": state.dataset_options,
            "pretrained": os.path.abspath(config.pretrained),
            "scales": list(state.scales),
            "levels": list(state.levels),
            "window_size": config.window_size,
            "feature_stride": state.stride,
            "proposals": proposal_meta,
            "steps": config.steps,
            "conv_steps": config.conv_steps,
        },
        proposer=state.proposer,
    )
    detector.save(os.path.join(config.out, "detector"))
    # The same detector as one Keras model file, for keras.saving.load_model.
    SppNetDetector.from_detector(detector).save(os.path.join(config.out, "detector.keras"))
    state.detector = detector
    return detector


def report(config, state):
    """Evaluates ``state.detector`` on the held-out images (with the softmax and the
    SVM scores, with and without box regression), draws some and writes ``results.json``."""
    import numpy as np

    from keras_spp.detection.evaluation_settings import evaluation_summary, format_evaluation
    from keras_spp.memory import peak_rss_bytes, release_free_memory, reset_peak_rss
    from keras_spp.visualization import draw_examples

    out, test, detector = config.out, state.test, state.detector
    release_free_memory()
    reset_peak_rss()
    evaluation = evaluation_summary(detector, test, state.proposals)
    draw_examples(detector, test, state.proposals, os.path.join(out, "detections.png"))
    state.peak_rss_bytes["evaluation"] = peak_rss_bytes()
    state.evaluation = evaluation
    results = {
        "config": config.as_record(),
        "class_names": list(state.class_names),
        "images": {"train": len(state.train), "test": len(test)},
        "held_out_split": config.test_split,
        "seconds": state.seconds,
        "box_regression_windows": np.asarray(state.regression_windows).tolist(),
        "svm": state.svm_stats,
        "cache_bytes_estimate": state.cache_estimate,
        "peak_rss_bytes": state.peak_rss_bytes,
        # The replicas the fc fine-tuning's global batches were split between.
        "replicas_in_sync": getattr(state.strategy, "num_replicas_in_sync", 1),
        "evaluation": evaluation,
    }
    if state.rpn_report is not None:
        results["rpn"] = state.rpn_report
    _write_json(os.path.join(out, "results.json"), results)
    print(format_evaluation(evaluation))
    print(
        f"training took {state.seconds['training_total'] / 60:.1f} min; wrote {out}/detector, results.json, "
        "curves.png, detections.png"
    )
    return results


def _write_json(path, value):
    # Written aside, then renamed: an interrupted run leaves no half-written results.
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump(value, f, indent=2, default=_json_default)
    os.replace(temporary, path)


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON serializable: {type(value)}")
