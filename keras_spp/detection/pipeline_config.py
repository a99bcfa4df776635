"""What ``keras_spp.detection.pipeline.train_detector`` trains: one dataclass of settings.

``DetectorTrainingConfig``'s fields are ``recipes.train_detector``'s flags (``--max-train-windows``
is ``max_train_windows``), with their defaults. A value may come as the flag's text
(``scales="480,688"``, ``negative_iou="0.1,0.5"``, ``mnist_images="1000,200"``) or typed
(``scales=(480, 688)``); ``__post_init__`` stores it typed and refuses what the run
could not use with a ``SettingError``.

``SettingError``'s message names settings as ``{field}`` in its template: ``str(error)``
says ``max_train_windows must be ...``, and ``error.named(flag)`` lets a command line
say ``--max-train-windows must be ...`` with no second copy of the rule.

    config = DetectorTrainingConfig(pretrained="classifier.keras", scales="688", steps=300, out="runs/det")
"""

import dataclasses
import math
import os
import re

from keras_spp.validation import is_number

DEFAULT_PRETRAINED = "outputs/classifier/model.keras"
# The RPN's default scale: on mnist-detection's validation images an anchor of
# 32-256 px matches 99.7% of the digits at IoU >= 0.5 at 800 px, 88% at 400
# (docs/results.md, "Learned proposals").
RPN_SCALE = 800
PROPOSAL_METHODS = ("selective-search", "rpn")
OPTIMIZERS = ("adam", "sgd")
WINDOW_STORES = ("features", "conv5")
STRATEGIES = ("default", "mirrored", "multi-worker")


class SettingError(ValueError):
    """A setting refused. ``template`` names settings as ``{field}``; ``during_run``:
    found while running (the data, the pretrained file, the disk), not in the values."""

    def __init__(self, template, during_run=False):
        self.template, self.during_run = template, during_run
        super().__init__(self.named(str))

    def named(self, name):
        """The message with each ``{field}`` as ``name(field)``."""
        fields = {f.name for f in dataclasses.fields(DetectorTrainingConfig)}
        return re.sub(r"\{(\w+)\}", lambda m: name(m[1]) if m[1] in fields else m[0], self.template)


@dataclasses.dataclass(frozen=True)
class DetectorTrainingConfig:
    """Every setting of a detector's training run; see ``recipes.train_detector --help``."""

    # Backbone and data.
    pretrained: str = DEFAULT_PRETRAINED
    feature_stride: float | None = None
    dataset: str = "mnist-detection"
    data_dir: str | None = None
    mnist_images: tuple[int, ...] = (1000, 200)
    classes: str = "auto"
    train_split: str = "trainval"
    test_split: str = "test"
    max_train: int | None = None
    max_test: int | None = None
    # Window features.
    scales: tuple[int, ...] = (688,)
    window_size: int = 224
    levels: tuple[int, ...] = (6, 3, 2, 1)
    context: float = 0.0
    max_train_windows: int = 0
    # Proposals.
    proposals: str = "selective-search"
    max_proposals: int = 2000
    min_proposal_size: int = 20
    proposal_max_side: int = 0
    proposal_k: int | None = None
    rpn_scales: tuple[int, ...] | None = None
    rpn_anchor_sizes: tuple[float, ...] = (32.0, 45.0, 64.0, 90.0, 128.0, 180.0, 256.0)
    rpn_aspect_ratios: tuple[float, ...] = (1.0, 2.0, 3.5)
    rpn_steps: int = 6000
    rpn_lr: float = 1e-3
    rpn_proposals: int = 300
    rpn_train_proposals: int = 300
    rpn_pre_nms: int = 2000
    rpn_nms: float = 0.7
    proposals_from: str | None = None
    # Fine-tuning and output.
    steps: int = 6000
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 3e-4
    dropout: float = 0.5
    negative_iou: tuple[float, float] = (0.1, 0.5)
    conv_steps: int = 0
    conv_lr: float = 1e-4
    conv_windows: int = 64
    svm_cache: int = 20000
    box_regression_windows: int = 5000
    window_store: str = "features"
    cache_dir: str | None = None
    cache_budget: float | None = None
    strategy: str = "default"
    cpu_devices: int = 0
    seed: int = 0
    out: str = "outputs/detector"
    verbose: int = 1

    def __post_init__(self):
        for name, value in _typed(self).items():
            object.__setattr__(self, name, value)
        _check_counts(self)
        _check_numbers(self)
        _check_combinations(self)

    @property
    def context_scale(self):
        """The window feature layer's ``context``: ``None`` when off."""
        return self.context or None

    @property
    def cache_root(self):
        """Where the window features and the RPN's conv5 are cached."""
        return self.cache_dir or os.path.join(self.out, "cache")

    def rpn_scale_list(self):
        """The scales the RPN looks at: ``rpn_scales``, else the one of ``scales`` nearest ``RPN_SCALE``."""
        if self.rpn_scales is None:
            return [min(self.scales, key=lambda s: abs(s - RPN_SCALE))]
        return list(self.rpn_scales)

    def as_record(self):
        """The settings as ``results.json`` records them: the flags' values, the two
        pairs of counts as their ``"a,b"`` text."""
        record = dataclasses.asdict(self)
        record["negative_iou"] = ",".join(f"{v:g}" for v in self.negative_iou)
        record["mnist_images"] = ",".join(str(v) for v in self.mnist_images)
        return record


def _typed(config):
    """The fields given as text (or lists), as the dataclass stores them."""
    return {
        "mnist_images": _mnist_images(config.mnist_images),
        "scales": _ints(config.scales, "scales"),
        "levels": _ints(config.levels, "levels"),
        "rpn_scales": None if config.rpn_scales is None else _ints(config.rpn_scales, "rpn_scales"),
        "rpn_anchor_sizes": _floats(config.rpn_anchor_sizes, "rpn_anchor_sizes"),
        "rpn_aspect_ratios": _floats(config.rpn_aspect_ratios, "rpn_aspect_ratios"),
        "negative_iou": _negative_iou(config.negative_iou),
        "context": _context(config.context),
        "pretrained": os.fspath(config.pretrained),
        "out": os.fspath(config.out),
    }


def _split(value):
    return [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)


def _ints(value, field):
    try:
        values = tuple(int(v) for v in _split(value))
        if not values or min(values) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise SettingError(
            f"{{{field}}} must be comma-separated whole numbers >= 1, e.g. 400 or 200,400; got {value!r}"
        ) from None
    return values


def _floats(value, field):
    try:
        values = tuple(float(v) for v in _split(value))
    except (TypeError, ValueError):
        raise SettingError(f"{{{field}}} must be comma-separated numbers, e.g. 32,64,128; got {value!r}") from None
    if not values or any(not v > 0 or v == math.inf for v in values):
        raise SettingError(f"{{{field}}} must hold positive finite numbers; got {value!r}")
    return values


def _mnist_images(value):
    try:
        counts = tuple(int(v) for v in _split(value))
        if len(counts) not in (2, 3) or min(counts) < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise SettingError(
            "{mnist_images} must be two or three counts, trainval,test[,val], like 400,100 or "
            f"1000,200,200; got {value!r}"
        ) from None
    return counts


def _negative_iou(value):
    from keras_spp.detection import sampling
    from keras_spp.detection.training import HeadTrainingConfig

    positive_iou = HeadTrainingConfig.positive_iou
    try:
        low, high = (float(v) for v in _split(value))
        sampling.check_iou_thresholds(positive_iou, (low, high))
    except (TypeError, ValueError) as error:
        raise SettingError(
            f"{{negative_iou}} must be two IoUs 'lo,hi' with 0 <= lo <= hi <= {positive_iou:g} (where positives "
            f"start), e.g. 0.1,0.5; got {value!r}: {error}"
        ) from None
    return low, high


def _context(value):
    from keras_spp.detection.features import validate_context

    try:
        validate_context(value or None)  # the layer's own rule
    except ValueError:
        got = f"{value:g}" if isinstance(value, (int, float)) else repr(value)
        raise SettingError(
            f"{{context}} must be 0 (off) or at least 1 (the square's side per window side, e.g. 2); got {got}"
        ) from None
    return float(value or 0)


def _check_counts(config):
    minimums = {
        "window_size": 1,
        "max_proposals": 1,
        "rpn_steps": 1,
        "rpn_proposals": 1,
        "rpn_train_proposals": 1,
        "rpn_pre_nms": 1,
        "steps": 1,
        "batch_size": 2,
        "conv_windows": 1,
        "svm_cache": 1,
        "box_regression_windows": 1,
        "min_proposal_size": 0,
        "proposal_max_side": 0,
        "conv_steps": 0,
        "cpu_devices": 0,
        "seed": 0,
    }
    optional = {"max_train": 1, "max_test": 1, "proposal_k": 1}
    for name, minimum in [*minimums.items(), *optional.items()]:
        value = getattr(config, name)
        if value is None and name in optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SettingError(f"{{{name}}} must be a whole number >= {minimum}; got {value!r}")
    if config.max_train_windows < 0:
        raise SettingError(
            f"{{max_train_windows}} must be 0 (every window) or a positive count; got {config.max_train_windows}"
        )
    if config.verbose not in (0, 1, 2):
        raise SettingError(f"{{verbose}} must be 0, 1 or 2; got {config.verbose!r}")


def _check_numbers(config):
    positive = ("lr", "rpn_lr", "conv_lr", "feature_stride", "cache_budget")
    for name in positive:
        value = getattr(config, name)
        if value is not None and not (is_number(value) and value > 0):
            raise SettingError(f"{{{name}}} must be a finite number > 0; got {value!r}")
    if not (is_number(config.dropout) and 0 <= config.dropout < 1):
        raise SettingError(f"{{dropout}} must be in [0, 1); got {config.dropout!r}")
    if not (is_number(config.rpn_nms) and 0 < config.rpn_nms <= 1):
        raise SettingError(f"{{rpn_nms}} must be in (0, 1]; got {config.rpn_nms!r}")
    for name, choices in (
        ("proposals", PROPOSAL_METHODS),
        ("optimizer", OPTIMIZERS),
        ("window_store", WINDOW_STORES),
        ("strategy", STRATEGIES),
    ):
        if getattr(config, name) not in choices:
            raise SettingError(f"{{{name}}} must be one of {', '.join(choices)}; got {getattr(config, name)!r}")


def _check_combinations(config):
    if config.strategy != "default" and (
        config.conv_steps or (config.strategy == "multi-worker" and config.proposals == "rpn")
    ):
        raise SettingError(
            f"{{strategy}} {config.strategy} distributes the fc fine-tuning only: it takes neither {{conv_steps}} "
            "nor, across workers, {proposals} rpn (each worker would train its own RPN); got "
            f"{{conv_steps}} {config.conv_steps} {{proposals}} {config.proposals}"
        )
    if config.proposals == "rpn":
        missing = [s for s in config.rpn_scale_list() if s not in config.scales]
        if missing:
            raise SettingError(
                f"{{rpn_scales}} must be among {{scales}} {config.scales} (the RPN shares their conv5); got "
                f"{config.rpn_scales}"
            )


def check_pretrained(config):
    """``SettingError`` unless ``pretrained`` is a file (its contents are checked when loaded)."""
    if os.path.isdir(config.pretrained):
        raise SettingError(f"{{pretrained}} must be a classifier's .keras file; {config.pretrained} is a folder")
    if not os.path.exists(config.pretrained):
        raise SettingError(
            f"{{pretrained}} {config.pretrained} not found: train an SPP classifier first "
            "(python -m recipes.train_classifier --out outputs/classifier) or pass its model.keras."
        )
