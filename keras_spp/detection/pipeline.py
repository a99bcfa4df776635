"""SPP-net's detection training (the paper's section 4) as one library call.

    from keras_spp.detection.pipeline import train_detector
    from keras_spp.detection.pipeline_config import DetectorTrainingConfig

    result = train_detector(DetectorTrainingConfig(pretrained="classifier.keras", steps=300, out="runs/det"))
    result.detector.detect(image)

The steps, in order, each taking the config and the run's ``TrainingState``:
``load_data``, ``build_detector`` (the pretrained conv layers, frozen; the window
feature layer; fc6-fc8), ``check_cache_disk`` (refuses a run whose caches will not
fit, before any work), ``make_proposals`` (selective search, cached, or an RPN
trained on the frozen conv5), ``train_heads`` (window features cached once, fc6-fc8
fine-tuned on them, the conv layers too with ``conv_steps``, then the closed-form
parts: box regressors and per-class SVMs), ``save_detector`` and ``report``
(evaluation on the held-out split, ``results.json``, ``detections.png``).

Under ``strategy="multi-worker"`` every worker caches its share of the windows and
takes part in the fc fine-tuning; only the chief goes on to the regressors, the
SVMs and the files (a worker's result has no detector).

Writes to ``config.out``: ``detector/`` (model.keras + detector.json), ``detector.keras``
(the same detector as one ``SppNetDetector``), ``history.csv``, ``curves.png``
(and ``history_rpn.csv``, ``curves_rpn.png``, ``history_conv.csv`` where those
stages run), ``detections.png`` and ``results.json``.
"""

import contextlib
import dataclasses
import os
import pathlib
import time

from keras_spp.detection.pipeline_config import DetectorTrainingConfig, SettingError, check_pretrained
from keras_spp.detection.pipeline_heads import report, save_detector, train_heads

__all__ = [
    "DetectorTrainingConfig",
    "DetectorTrainingResult",
    "SettingError",
    "TrainingState",
    "report",
    "save_detector",
    "train_detector",
    "train_heads",
]


@dataclasses.dataclass
class TrainingState:
    """What the steps hand on to each other in one run."""

    strategy: object = None
    # load_data
    train: list = dataclasses.field(default_factory=list)
    test: list = dataclasses.field(default_factory=list)
    class_names: tuple = ()
    dataset_options: dict = dataclasses.field(default_factory=dict)
    # build_detector
    conv: object = None
    roi: object = None
    model: object = None
    stride: float | None = None
    levels: tuple = ()
    scales: tuple = ()
    # check_cache_disk, make_proposals
    cache_estimate: dict | None = None
    proposals: object = None
    proposer: object = None
    proposals_tag: str | None = None
    rpn_report: dict | None = None
    # train_heads, save_detector, report
    regression_windows: object = None
    svm_stats: object = None
    detector: object = None
    evaluation: dict | None = None
    seconds: dict = dataclasses.field(default_factory=dict)
    peak_rss_bytes: dict = dataclasses.field(default_factory=dict)

    @property
    def is_chief(self):
        from keras_spp.training.distribute import is_chief

        return self.strategy is None or is_chief(self.strategy)


@dataclasses.dataclass(frozen=True)
class DetectorTrainingResult:
    """A run's outcome. ``detector`` is ``None`` on a multi-worker worker that is not
    the chief (it has fine-tuned, the chief fits and saves the rest)."""

    detector: object
    seconds: dict
    # Each stage's peak resident memory (reset between stages).
    peak_rss_bytes: dict
    cache_bytes_estimate: dict | None
    regression_windows: object
    svm_stats: object
    rpn_report: dict | None
    evaluation: dict | None
    replicas_in_sync: int


def train_detector(config, *, evaluate=True):
    """Trains, saves and (with ``evaluate``) evaluates a detector as ``config`` says.

    Raises ``SettingError`` for a setting the run cannot use (also one found on the
    way: the data, the pretrained file, a cache that will not fit the disk) and
    ``keras_spp.detection.training_checks.NonFiniteLossError`` when a loss diverges
    (nothing is saved then)."""
    from keras_spp.tensorflow_only import require_tensorflow

    require_tensorflow("keras_spp.detection.pipeline.train_detector")
    import keras

    from keras_spp.memory import peak_rss_bytes, release_free_memory, reset_peak_rss
    from keras_spp.training.distribute import make_strategy

    check_pretrained(config)
    strategy = None if config.strategy == "default" else make_strategy(config.strategy, config.cpu_devices)
    keras.utils.set_random_seed(config.seed)
    os.makedirs(config.out, exist_ok=True)
    started = time.perf_counter()
    state = TrainingState(strategy=strategy)
    load_data(config, state)
    with strategy.scope() if strategy else contextlib.nullcontext():
        build_detector(config, state)
    check_cache_disk(config, state)
    state.peak_rss_bytes["before_training"] = peak_rss_bytes()
    reset_peak_rss()
    make_proposals(config, state)
    state.peak_rss_bytes["proposals_and_rpn"] = peak_rss_bytes()
    release_free_memory()
    reset_peak_rss()
    train_heads(config, state)
    state.peak_rss_bytes["heads"] = peak_rss_bytes()
    if not state.is_chief:
        print(f"worker {strategy.cluster_resolver.task_id}: fine-tuning done; the chief writes the detector")
        return _result(state)
    state.seconds["training_total"] = time.perf_counter() - started
    save_detector(config, state)
    if evaluate:
        report(config, state)
    return _result(state)


def _result(state):
    return DetectorTrainingResult(
        detector=state.detector,
        seconds=state.seconds,
        peak_rss_bytes=state.peak_rss_bytes,
        cache_bytes_estimate=state.cache_estimate,
        regression_windows=state.regression_windows,
        svm_stats=state.svm_stats,
        rpn_report=state.rpn_report,
        evaluation=state.evaluation,
        # The replicas the fc fine-tuning's global batches were split between.
        replicas_in_sync=getattr(state.strategy, "num_replicas_in_sync", 1),
    )


def load_data(config, state):
    """The training and held-out examples, their class names and the dataset's options."""
    from keras_spp.data.detection_sources import load_detection

    options = dataset_options(config)
    try:
        train, class_names = load_detection(config.dataset, config.train_split, data_dir=config.data_dir, **options)
        test, _ = load_detection(config.dataset, config.test_split, data_dir=config.data_dir, **options)
    except (ValueError, FileNotFoundError) as error:
        text = str(error).replace("pass `class_names`", "pass {classes} a,b,... (or {classes} infer)")
        raise SettingError(f"{{dataset}} {config.dataset}: {text}", during_run=True) from None
    state.train, state.test = train[: config.max_train], test[: config.max_test]
    state.class_names, state.dataset_options = class_names, options
    print(
        f"{len(state.train)} training and {len(state.test)} held-out ({config.test_split}) images, "
        f"{len(class_names)} classes",
        flush=True,
    )


def dataset_options(config):
    """``load_detection``'s keyword arguments for ``config.dataset``."""
    if config.dataset.startswith("voc:"):
        names = voc_class_names(config.dataset[len("voc:") :], config.classes, config.train_split)
        return {} if names is None else {"class_names": names}
    if config.classes != "auto":
        raise SettingError(f"{{classes}} applies to voc:<path> datasets; {config.dataset} names its own classes")
    if config.dataset != "mnist-detection":
        return {}
    counts = config.mnist_images
    options = {"num_trainval": counts[0], "num_test": counts[1]}
    if len(counts) == 3 and counts[2]:
        options["num_val"] = counts[2]
    return options


def voc_class_names(root, classes, train_split):
    """The class names a VOC-layout folder is read with: a list from ``classes``,
    ``None`` for the library's default (``labels.txt`` or the 20 VOC classes), or the
    training split's object names when neither fits."""
    from keras_spp.data import voc

    if classes not in ("auto", "infer"):
        names = [name.strip() for name in classes.split(",")]
        if not all(names) or len(set(names)) != len(names):
            raise SettingError(f"{{classes}} must be distinct, non-empty names separated by commas; got {classes!r}")
        return names
    if classes == "auto" and os.path.isfile(os.path.join(os.path.expanduser(root), voc.LABELS_FILE)):
        return None
    try:
        found = voc.object_names(root, train_split)
    except (FileNotFoundError, ValueError) as error:
        raise SettingError(f"{{classes}} {classes}: {error}") from None
    if classes == "auto" and set(found) <= set(voc.VOC_CLASSES):
        return None
    if not found:
        raise SettingError(
            f"{{classes}} {classes}: split {train_split!r} of {root} has no objects to name classes from"
        )
    print(f"classes inferred from {train_split!r}: {', '.join(found)} (--classes a,b,... fixes their order)")
    return list(found)


def build_detector(config, state):
    """The pretrained conv layers, the window feature layer and the untrained detector."""
    from keras_spp.detection.features import MultiScaleRoiFeatures, backbone_of, measured_feature_stride
    from keras_spp.detection.heads import spp_detector
    from keras_spp.detection.transfer import transferable_fc_weights
    from keras_spp.models.backbones import TABLE_1, feature_stride
    from keras_spp.models.saving import load_keras_model

    try:
        pretrained = load_keras_model(config.pretrained, "{pretrained}")
    except ValueError as error:
        raise SettingError(str(error), during_run=False) from None
    conv = backbone_of(pretrained)
    conv.trainable = False
    stride = config.feature_stride or (feature_stride(conv.name) if conv.name in TABLE_1 else None)
    if stride is None:  # any other backbone: a probe image through it tells
        try:
            stride = measured_feature_stride(conv)
        except ValueError as error:
            raise SettingError(f"{error} ({{feature_stride}})") from None
        print(f"backbone {conv.name!r}: measured {stride:g} pixels per conv cell (--feature-stride overrides)")
    levels, scales = config.levels, config.scales
    roi = MultiScaleRoiFeatures(
        conv, scales, levels, stride, config.window_size, context=config.context_scale, name="roi_features"
    )
    fc_weights = transferable_fc_weights(pretrained, roi.output_dim)
    fc_units = fc_weights["fc6"][0].shape[1] if fc_weights else 4096
    model = spp_detector(roi, len(state.class_names), fc_units=fc_units, dropout=config.dropout, fc_weights=fc_weights)
    print(
        f"backbone {conv.name} (stride {stride:g}), scales {scales}, levels {levels}: "
        f"{roi.output_dim}-d window features, fc {fc_units}",
        flush=True,
    )
    state.conv, state.roi, state.model = conv, roi, model
    state.stride, state.levels, state.scales = stride, levels, scales


def check_cache_disk(config, state):
    """Sets ``state.cache_estimate``, the caches' estimated bytes (``{"window_features":
    b, "rpn_conv5": b}``); ``SettingError`` before any work when they will not fit
    (``cache_budget`` GB or the free disk)."""
    from keras_spp.detection.window_cache import check_disk_budget, estimate_cache_bytes

    train, roi = state.train, state.roi
    per_image = config.rpn_train_proposals if config.proposals == "rpn" else config.max_proposals
    if config.max_train_windows:
        per_image = min(per_image, config.max_train_windows)
    channels, stride = roi.backbone.output_shape[-1], state.stride
    if config.window_store == "conv5":  # at most a map at every scale
        cells = sum(_cells(e, roi, range(len(roi.scales)), stride) for e in train)
        estimate = {"window_conv5": int(cells * 2 * channels + (per_image + 1) * 16 * len(train))}
    else:
        estimate = {"window_features": estimate_cache_bytes([per_image + len(e.boxes) for e in train], roi.output_dim)}
    if config.proposals == "rpn":
        anchors = len(config.rpn_anchor_sizes) * len(config.rpn_aspect_ratios)
        indices = [state.scales.index(s) for s in config.rpn_scale_list()]
        cells = sum(_cells(e, roi, indices, stride) for e in train)
        estimate["rpn_conv5"] = int(cells * (2 * channels + 17 * anchors))
    root = config.cache_root
    cached = sum(f.stat().st_size for f in _files_under(root))
    needed = max(sum(estimate.values()) - cached, 0)
    budget = None if config.cache_budget is None else config.cache_budget * 1e9
    try:
        check_disk_budget(needed, root, budget, "the training caches")
    except ValueError as error:
        raise SettingError(str(error), during_run=True) from None
    images = max(len(train), 1)
    print(
        f"caches: about {sum(estimate.values()) / 1e9:.2f} GB ({sum(estimate.values()) / images / 1e6:.2f} MB an "
        f"image: {', '.join(f'{k} {v / images / 1e6:.2f}' for k, v in estimate.items())}) in {root}",
        flush=True,
    )
    state.cache_estimate = estimate


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


def search_params(config):
    """``selective_search``'s settings."""
    from keras_spp.detection import proposal_cache

    return proposal_cache.search_params(
        max_proposals=config.max_proposals,
        min_size=config.min_proposal_size,
        max_side=config.proposal_max_side,
        base_k=config.proposal_k,
    )


def make_proposals(config, state):
    """Sets ``state.proposals`` ({image id: boxes}), and with ``proposals="rpn"`` the
    trained ``state.proposer`` and ``state.rpn_report``."""
    from keras_spp.detection import proposal_cache

    if config.proposals == "selective-search":
        cache_dir = None if config.proposals_from else proposal_cache.proposal_cache(config.data_dir, config.dataset)
        proposals = proposal_cache.proposals_for(
            state.train + state.test,
            precomputed=config.proposals_from,
            cache_dir=cache_dir,
            search=search_params(config),
        )
        print(proposals.summary(), flush=True)
        state.proposals, state.seconds["proposals"] = proposals, proposals.seconds
        # The proposals' name in the window feature cache's key.
        state.proposals_tag = proposal_cache.proposals_tag(search_params(config), precomputed=config.proposals_from)
        return
    _train_rpn(config, state)


def _train_rpn(config, state):
    """An RPN trained on the frozen conv5 at ``config.rpn_scale_list()``, then its
    proposals for every image (the heads learn from them, the detector finds its own)."""
    import keras

    from keras_spp.callbacks import TrainingCurves
    from keras_spp.data.voc import load_image
    from keras_spp.detection import rpn, rpn_training, training
    from keras_spp.detection.anchors import AnchorConfig
    from keras_spp.detection.learned_proposals import LearnedProposals, ProposalSettings

    roi = state.roi
    anchors = AnchorConfig(config.rpn_anchor_sizes, config.rpn_aspect_ratios, state.stride)
    # The head computes in conv5's precision: bfloat16 when the backbone does.
    head = rpn.rpn_head(roi.backbone.output_shape[-1], anchors.per_cell, dtype=roi.backbone.layers[-1].dtype_policy)
    indices = tuple(state.scales.index(s) for s in config.rpn_scale_list())
    settings = ProposalSettings(config.rpn_pre_nms, config.rpn_proposals, config.rpn_nms, config.min_proposal_size)
    proposer = LearnedProposals(head, roi, anchors, indices, settings)
    t0 = time.perf_counter()
    records, stats = rpn_training.rpn_records(
        proposer, state.train, load_image, cache_dir=os.path.join(config.cache_root, "rpn")
    )
    history_csv = os.path.join(config.out, "history_rpn.csv")
    history = rpn_training.train_rpn(
        proposer,
        records,
        rpn_training.RpnTrainingConfig(
            steps=config.rpn_steps,
            learning_rate=config.rpn_lr,
            final_learning_rate=config.rpn_lr / 10,
            seed=config.seed,
        ),
        verbose=config.verbose,
        callbacks=[
            keras.callbacks.CSVLogger(history_csv),
            TrainingCurves(history_csv, os.path.join(config.out, "curves_rpn.png"), title="RPN on frozen conv5"),
        ],
    )
    del records
    state.seconds["rpn_training"] = time.perf_counter() - t0
    state.proposals_tag = f"rpn{config.rpn_train_proposals}-" + training.weights_fingerprint(head)
    t0 = time.perf_counter()
    train_settings = ProposalSettings(
        config.rpn_pre_nms, config.rpn_train_proposals, config.rpn_nms, config.min_proposal_size
    )
    proposals, _ = proposer.proposals_for(state.train, load_image, train_settings, desc="rpn proposals (train)")
    test_proposals, per_image = proposer.proposals_for(state.test, load_image, desc="rpn proposals (held out)")
    proposals.update(test_proposals)
    state.seconds["proposals"] = time.perf_counter() - t0
    recall = rpn_training.proposal_recall(test_proposals, state.test)
    print(
        f"RPN: recall@0.5 on the held-out images {recall}, {per_image * 1000:.0f} ms an image "
        "(conv5 at its scales included)",
        flush=True,
    )
    state.proposals, state.proposer = proposals, proposer
    state.rpn_report = {
        "anchor_stats": stats,
        "held_out_recall": recall,
        "seconds_per_image": per_image,
        "final": {k: float(v[-1]) for k, v in history.history.items()},
    }
