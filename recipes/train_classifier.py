"""Train and evaluate an SPP-net classifier with model.fit.

    python -m recipes.train_classifier --backbone zf5 --head spp --sizes 112,90 \\
        --dataset mnist-scenes --epochs 5 --out outputs/zf5-spp

Writes to --out: model.keras (final), best.keras (best val accuracy), history.csv,
curves.png, tensorboard/, results.json (config, history, every evaluation view),
and backup/ while training runs: a killed run started again with the same command
resumes from the batch where its last backup was taken.

Sizes: one size is single-size training; several alternate by epoch (the paper's
224/180); --size-mode random draws each epoch's size from [min, max]. Crops are
taken at the largest size and resized (the paper's 180 is the 224 crop resized).
For the offline default (mnist-scenes, images of 64..256 px) the sizes scale down
with the images: min side 128, crops 112, multi-size 112/90 (224:180); the same for
mnist-windows (the offline detector's pretraining set).
"""

import argparse
import json
import os
import sys
import time

from keras_spp.data.views import VIEWS
from keras_spp.training.classifier import LR_SCHEDULES
from keras_spp.training.distribute import STRATEGIES
from keras_spp.training.precision import DTYPE_POLICIES
from recipes import arguments

# Digits must not be mirrored; their scenes are small, so the sizes scale down.
# Adam gets the small network off the ln(10) plateau within an epoch where the
# paper's plain SGD takes several: the CPU default has minutes, not days.
_MNIST_DEFAULTS = {"min_side": 128, "sizes": "112,90", "flip": False, "optimizer": "adam"}
# mnist-windows (windows of mnist-detection scenes, 40-300 px) scales down alike.
DATASET_DEFAULTS = {"mnist-scenes": _MNIST_DEFAULTS, "mnist-windows": _MNIST_DEFAULTS}
GENERIC_DEFAULTS = {"min_side": 256, "sizes": "224,180", "flip": True, "optimizer": "sgd"}
LEARNING_RATES = {"sgd": 0.01, "adam": 3e-4}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_arguments(p.add_argument_group("model"))
    _data_arguments(p.add_argument_group("data"))
    _optimization_arguments(p.add_argument_group("optimisation"))
    _run_arguments(p.add_argument_group("devices, precision and output"))
    args = p.parse_args(argv)
    folder = args.dataset.removeprefix("folder:") if args.dataset.startswith("folder:") else None
    if folder and not os.path.isdir(os.path.expanduser(folder)):
        arguments.refuse(p, "--dataset", "folder:<an existing folder>", args.dataset)
    defaults = DATASET_DEFAULTS.get(args.dataset, GENERIC_DEFAULTS)
    args.min_side = args.min_side or defaults["min_side"]
    args.flip = defaults["flip"] if args.flip is None else args.flip
    args.optimizer = args.optimizer or defaults["optimizer"]
    # Not `args.lr or ...`: that turned an explicit --lr 0 into the default.
    args.lr = LEARNING_RATES[args.optimizer] if args.lr is None else args.lr
    args.sizes = args.sizes or arguments.int_list()(defaults["sizes"])
    args.crop = max(args.sizes) if args.crop is None else args.crop
    if not 1 <= args.crop <= args.min_side:
        p.error(f"--crop must be a side in pixels from 1 to --min-side ({args.min_side}); got {args.crop}")
    if args.stop_patience and args.lr_schedule != "plateau":
        p.error(f"--stop-patience takes a number of epochs >= 0 with --lr-schedule plateau; got {args.stop_patience}")
    if not 0.0 < args.lr_drop < 1.0:
        p.error(f"--lr-drop must be a fraction of the steps in (0, 1); got {args.lr_drop}")
    if args.size_mode == "random" and (len(args.sizes) != 2 or args.sizes[0] > args.sizes[1]):
        p.error(f"--size-mode random takes --sizes LOW,HIGH with LOW <= HIGH; got {','.join(map(str, args.sizes))}")
    return args


def _model_arguments(group):
    group.add_argument("--backbone", default="zf5", choices=["zf5", "convnet5", "overfeat5", "overfeat7"])
    group.add_argument("--head", default="spp", choices=["spp", "pool"])
    group.add_argument("--levels", type=arguments.int_list(), default="6,3,2,1", help="SPP levels, bins per side")
    group.add_argument(
        "--width", type=arguments.positive_float, default=0.25, help="filter multiplier of the backbone (1 = the paper)"
    )
    group.add_argument("--fc-units", type=arguments.positive_int, default=512, help="fc6/fc7 units (4096 in the paper)")
    # A rate of 1 zeroes every unit and scales by 1 / 0.
    group.add_argument("--dropout", type=arguments.fraction, default=0.5, help="a rate in [0, 1)")


def _data_arguments(group):
    group.add_argument(
        "--dataset",
        default="mnist-scenes",
        help="mnist-scenes, mnist-windows, folder:<path>, a TFDS name or tfds:<name>",
    )
    group.add_argument("--data-dir", type=arguments.output_dir, default=None)
    group.add_argument(
        "--manual-dir", type=arguments.existing_dir, default=None, help="TFDS manual download folder (imagenet2012)"
    )
    group.add_argument(
        "--sizes", type=arguments.int_list(), default=None, help="training sizes, e.g. 224,180 (dataset default)"
    )
    group.add_argument("--size-mode", default="alternate", choices=["alternate", "random"])
    group.add_argument(
        "--crop",
        type=int,  # checked against --min-side in parse_args
        default=None,
        help="side of the crop that training resizes to each of --sizes, and the test's crop (default: the "
        "largest size; the paper's 180 is the 224 crop shrunk, a size above --crop is the crop enlarged)",
    )
    group.add_argument(
        "--min-side",
        type=arguments.positive_int,
        default=None,
        help="images resized to this min side (dataset default)",
    )


def _optimization_arguments(group):
    group.add_argument("--epochs", type=arguments.positive_int, default=5)
    group.add_argument("--batch-size", type=arguments.positive_int, default=32)
    group.add_argument(
        "--optimizer",
        choices=sorted(LEARNING_RATES),
        default=None,
        help="sgd (the paper: momentum, weight decay) or adam (dataset default)",
    )
    group.add_argument(
        "--lr", type=arguments.positive_float, default=None, help="learning rate (0.01 for sgd, 3e-4 for adam)"
    )
    group.add_argument(
        "--lr-schedule",
        default="plateau",
        choices=LR_SCHEDULES,
        help="plateau: 10x lower when the validation loss stalls for 2 epochs; step: 10x lower for "
        "the last --lr-drop of the steps; cosine: cosine decay to 1%% over all steps",
    )
    group.add_argument(
        "--plateau-start-gain",
        type=arguments.fraction,
        default=0.0,
        help="--lr-schedule plateau: count no plateau until the validation loss has fallen this fraction "
        "below its first epoch's (a network at chance level is not on a plateau; 0: Keras's rule)",
    )
    group.add_argument(
        "--stop-patience",
        type=arguments.nonnegative_int,
        default=0,
        help="--lr-schedule plateau: stop once the validation loss has not improved for this many "
        "epochs, a rate drop included (converged; 0: run all --epochs)",
    )
    group.add_argument(
        "--lr-drop",
        type=arguments.finite_float,
        default=0.25,
        help="--lr-schedule step: the fraction of the steps at 1/10",
    )
    group.add_argument("--momentum", type=arguments.fraction, default=0.9)
    group.add_argument("--weight-decay", type=arguments.nonnegative_float, default=5e-4)
    group.add_argument("--jitter", type=arguments.nonnegative_float, default=0.4)
    group.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random horizontal flips (dataset default: off for mnist-scenes)",
    )
    group.add_argument(
        "--max-train", type=arguments.positive_int, default=None, help="use only the first N training examples"
    )
    group.add_argument("--max-eval", type=arguments.positive_int, default=None, help="evaluate on the first N examples")
    group.add_argument("--views", type=arguments.choice_list(VIEWS), default=",".join(VIEWS))


def _run_arguments(group):
    group.add_argument("--seed", type=arguments.seed, default=0)
    group.add_argument(
        "--strategy", default="default", choices=STRATEGIES, help="TensorFlow: the tf.distribute strategy"
    )
    group.add_argument(
        "--distribution",
        default="none",
        choices=["none", "data-parallel"],
        help="JAX: keras.distribution.DataParallel over every device (each batch split across them; "
        "XLA_FLAGS=--xla_force_host_platform_device_count=N gives N CPU devices)",
    )
    group.add_argument(
        "--cpu-devices",
        type=arguments.nonnegative_int,
        default=0,
        help="split the CPU into N logical devices (tests of mirrored)",
    )
    group.add_argument(
        "--jit",
        default="auto",
        choices=["auto", "on", "off"],
        help="compile the train step with XLA: auto = only when a GPU or TPU is visible (on this "
        "2-core CPU, ZF-5's XLA train step runs 2.6x slower than TensorFlow's own kernels)",
    )
    group.add_argument("--no-jit", action="store_true", help="the same as --jit off")
    group.add_argument(
        "--dtype-policy",
        default="float32",
        choices=DTYPE_POLICIES,
        help="Keras dtype policy: mixed_bfloat16 computes in bfloat16 with float32 weights; auto: "
        "mixed_bfloat16 where the hardware has bfloat16 arithmetic (a CPU with AVX-512 BF16 "
        "or AMX, GPUs of compute capability 8.0 or newer, TPUs), float32 elsewhere",
    )
    group.add_argument(
        "--backup-every",
        type=arguments.nonnegative_int,
        default=50,
        help="batches between backups (0: at epoch ends only)",
    )
    group.add_argument("--out", type=arguments.output_dir, default="outputs/classifier")
    group.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1)


def _use_xla(args):
    if args.no_jit or args.jit == "off":
        return False
    if args.jit == "on":
        return True
    import keras

    # auto: JAX compiles every step anyway (jit_compile=False would run it op by op);
    # torch.compile takes minutes to compile on a CPU.
    if keras.backend.backend() != "tensorflow":
        return keras.backend.backend() == "jax"
    import tensorflow as tf

    return bool(
        tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU") or args.strategy == "tpu"
    )


def build_model(args, num_classes, total_steps):
    """The flags' compiled classifier (``keras_spp.training.classifier.build_classifier``)."""
    from keras_spp.training.classifier import build_classifier, learning_rate_schedule

    return build_classifier(
        args.backbone,
        num_classes,
        head=args.head,
        levels=args.levels,
        width=args.width,
        fc_units=args.fc_units,
        dropout=args.dropout,
        image_size=max(args.sizes),
        dtype_policy=args.dtype_policy,
        optimizer=args.optimizer,
        learning_rate=learning_rate_schedule(args.lr, args.lr_schedule, total_steps, args.lr_drop),
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        jit_compile=not args.no_jit,
    )


def main(argv=None):
    args = parse_args(argv)

    _check_backend(args)
    if args.head == "pool" and (len(set(args.sizes)) > 1 or args.crop != args.sizes[0]):
        print("--head pool takes one fixed size; use --sizes with one value and no other --crop", file=sys.stderr)
        return 2
    strategy = _setup(args)  # first: it may split the CPU into logical devices
    import keras

    from keras_spp.data import pipelines
    from keras_spp.data.multisize import SizeSchedule
    from keras_spp.training.distribute import is_chief

    keras.utils.set_random_seed(args.seed)
    chief = is_chief(strategy)
    out = args.out if chief else os.path.join(args.out, f"worker-{strategy.cluster_resolver.task_id}")
    os.makedirs(out, exist_ok=True)
    data = _load_data(args)
    schedule = SizeSchedule(args.sizes, args.size_mode, seed=args.seed)
    steps = pipelines.steps_per_epoch(data["num_train"], args.batch_size)
    with strategy.scope():
        model = build_model(args, len(data["info"].class_names), total_steps=steps * args.epochs)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}
    backup, start_epoch, done, history_csv = _resume(args, config, strategy, model, out)
    callbacks = _callbacks(args, schedule, history_csv, out) + ([backup] if chief else [])
    started = time.perf_counter()
    _fit(args, model, data, schedule, steps, callbacks, backup, start_epoch, done)
    train_seconds = time.perf_counter() - started
    if not chief:
        return 0
    _report(args, model, out, config, data, steps, train_seconds, history_csv)
    backup.clear()
    print(f"wrote {out}/model.keras, results.json, history.csv, curves.png")
    return 0


def _check_backend(args):
    """Every Keras backend trains; the tf.distribute strategies are TensorFlow's and
    keras.distribution is used on JAX."""
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow" and args.strategy != "default":
        raise SystemExit(f"--strategy {args.strategy} is a tf.distribute strategy; Keras runs on {backend}")
    if backend != "jax" and args.distribution != "none":
        raise SystemExit(
            f"--distribution {args.distribution} is keras.distribution on JAX; Keras runs on {backend}"
            + (" (use --strategy mirrored)" if backend == "tensorflow" else "")
        )


def _replicas(model):
    """How many devices each global batch was split over (1: one device)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        return model.distribute_strategy.num_replicas_in_sync
    distribution = keras.distribution.distribution()
    return 1 if distribution is None else int(distribution.device_mesh.devices.size)


def _setup(args):
    """The distribution strategy; settles ``args.no_jit`` and ``args.dtype_policy``."""
    from keras_spp.training.distribute import make_strategy
    from keras_spp.training.precision import resolve_dtype_policy

    strategy = make_strategy(args.strategy, args.cpu_devices)
    if args.distribution == "data-parallel":
        import keras

        devices = keras.distribution.list_devices()
        if args.batch_size % len(devices):
            raise SystemExit(f"--batch-size {args.batch_size} must split evenly over the {len(devices)} devices")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    args.no_jit = not _use_xla(args)
    args.dtype_policy = resolve_dtype_policy(args.dtype_policy)
    if args.strategy == "multi-worker" and not args.no_jit:
        import tensorflow as tf

        if not tf.config.list_logical_devices("GPU"):
            # The train step all-reduces the gradients across workers, and XLA does not compile
            # collectives on CPU ("Collectives are not yet implemented for CPU devices when
            # compiling with XLA"): the first step would fail.
            print("multi-worker on CPU: the train step is not compiled with XLA (as --no-jit)", file=sys.stderr)
            args.no_jit = True
    return strategy


def _source_options(args):
    return {"manual_dir": args.manual_dir} if args.manual_dir else {}


def _load_data(args):
    """``{"train", "info", "num_train", "val", "val_info"}``: the sources, cut to
    ``--max-train`` and ``--max-eval``."""
    from keras_spp.data.sources import load_classification

    options = _source_options(args)
    try:
        train_source, info = load_classification(
            args.dataset, "train", data_dir=args.data_dir, seed=args.seed, **options
        )
        val_source, val_info = load_classification(
            args.dataset, "validation", data_dir=args.data_dir, seed=args.seed, **options
        )
    except ValueError as error:  # an unknown name, a folder without classes: before any training
        raise SystemExit(f"--dataset {args.dataset}: {error}") from None
    num_train = info.num_examples
    if args.max_train:
        train_source = train_source.take(args.max_train)
        num_train = min(num_train or args.max_train, args.max_train)
    if not num_train:
        num_train = int(train_source.reduce(0, lambda n, _: n + 1))
    if args.max_eval:
        val_source = val_source.take(args.max_eval)
    return {"train": train_source, "info": info, "num_train": num_train, "val": val_source, "val_info": val_info}


def _resume(args, config, strategy, model, out):
    """``(backup, start epoch, batches done in it, history.csv path)``: the run's
    ``ResumableBackup``, restored into ``model`` if there is one."""
    from keras_spp.callbacks import ResumableBackup
    from keras_spp.training.distribute import gather_from_workers

    # Everything that shapes the training, so that a backup is resumed only by its own run.
    fingerprint = {k: v for k, v in config.items() if k not in ("max_eval", "views", "verbose", "out", "backup_every")}
    # One backup for all workers: the chief's (<out>/backup), which only the chief writes and every
    # worker restores, so that all resume from the same batch with the same weights (a worker with
    # fewer steps left would leave the others waiting in a collective). Under multi-worker, --out
    # must then be on a file system that the workers share, as for Keras's BackupAndRestore.
    backup = ResumableBackup(os.path.join(args.out, "backup"), save_every=args.backup_every, config=fingerprint)
    if args.strategy != "default":
        # restore() builds the optimizer when it finds a backup, and a distributed model's
        # optimizer must be built in the strategy's scope. Under multi-worker, creating a variable
        # is a collective (the chief broadcasts its initial value), so every worker builds it,
        # backup or not. Loading stays outside the scope: there Keras's saving and loading creates
        # variables too (a reference Optimizer in saving_lib.get_attr_skipset), which on one
        # worker alone would be a collective that the others never join.
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
    try:
        start_epoch, done = backup.restore(model)
    except ValueError as error:  # another run's backup, or an incomplete one: the message says what to do
        raise SystemExit(f"--out {args.out}: {error}") from None
    if args.strategy == "multi-worker":
        points = gather_from_workers(strategy, [start_epoch, done])
        if any(point != points[0] for point in points):
            raise RuntimeError(
                f"The workers would resume from different points ([epoch, batch] of each: {points}); "
                f"this worker looked for the chief's backup in {backup.backup_dir}: the workers must share --out."
            )
    history_csv = os.path.join(out, "history.csv")
    if start_epoch == 0 and done == 0 and os.path.exists(history_csv):
        os.remove(history_csv)  # a fresh run, not a resumed one
    elif start_epoch or done:
        print(f"resuming from the backup: epoch {start_epoch + 1}, after batch {done}")
    return backup, start_epoch, done, history_csv


def _shard_by_data(dataset, strategy):
    # Multi-worker: every worker runs the whole pipeline (a pure function of the seed) and
    # keeps its part of each global batch (tf.distribute rebatches the global batch into
    # per-replica batches, then DATA sharding takes this worker's), so the global batches,
    # their order and the skip of a resumed epoch are the single-device run's. AUTO would pick
    # this for folders and mnist-scenes (no file reader in the pipeline) but FILE for TFDS
    # (TFRecord files): each worker would read its own files, so other global batches, and
    # files of unequal sizes would give the workers unequal numbers of batches.
    if strategy != "multi-worker":
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _callbacks(args, schedule, history_csv, out):
    """The callbacks of every worker (the chief adds its backup)."""
    import keras

    from keras_spp.callbacks import LogLearningRate, PlateauSchedule, TrainingCurves
    from keras_spp.data.multisize import LogInputSize

    return [
        LogInputSize(schedule),
        # Before the CSV logger, which then records the learning rate they put in the logs.
        # Its counters come back from history.csv, so a resumed run drops and stops on time.
        PlateauSchedule(
            history_csv,
            "val_loss",
            factor=0.1,
            patience=2,
            stop_patience=args.stop_patience or None,
            start_gain=args.plateau_start_gain,
        )
        if args.lr_schedule == "plateau"
        else LogLearningRate(),
        keras.callbacks.CSVLogger(history_csv, append=True),
        TrainingCurves(
            history_csv,
            os.path.join(out, "curves.png"),
            title=f"{args.backbone} {args.head} sizes {args.sizes} on {args.dataset}",
        ),
        keras.callbacks.ModelCheckpoint(os.path.join(out, "best.keras"), monitor="val_accuracy", save_best_only=True),
        keras.callbacks.TensorBoard(os.path.join(out, "tensorboard")),
    ]


def _fit(args, model, data, schedule, steps, callbacks, backup, start_epoch, done):
    """Trains to ``--epochs`` from ``start_epoch``, after batch ``done`` of it."""
    from keras_spp.data import pipelines

    crop = args.crop
    val_data = _shard_by_data(
        pipelines.center_crop_dataset(data["val"], args.batch_size, crop=crop, min_side=args.min_side), args.strategy
    )
    # Known steps spare Keras a first pass that ends in "ran out of data".
    val_count = min(filter(None, (data["val_info"].num_examples, args.max_eval)), default=None)
    val_steps = -(-val_count // args.batch_size) if val_count else None

    def fit(first_epoch, last_epoch, skip):
        # Epochs first_epoch..last_epoch-1, the first of them from batch `skip` on.
        train = _shard_by_data(
            pipelines.training_dataset(
                data["train"],
                args.batch_size,
                crop=crop,
                min_side=args.min_side,
                schedule=schedule,
                jitter=args.jitter,
                seed=args.seed,
                cache=True,
                start_epoch=first_epoch,
                skip_batches=skip,
                epochs=last_epoch - first_epoch,
                flip=args.flip,
            ),
            args.strategy,
        )
        model.fit(
            train,
            epochs=last_epoch,
            initial_epoch=first_epoch,
            steps_per_epoch=steps - skip,
            validation_data=val_data,
            validation_steps=val_steps,
            shuffle=False,
            callbacks=callbacks,
            verbose=args.verbose,
        )

    if done and start_epoch < args.epochs:
        # The rest of the interrupted epoch, as its own shorter fit.
        backup.batch_offset = done
        fit(start_epoch, start_epoch + 1, done)
        start_epoch += 1
    if start_epoch < args.epochs:
        fit(start_epoch, args.epochs, 0)


def _report(args, model, out, config, data, steps, train_seconds, history_csv):
    """Saves the model, evaluates it on the test split, prints and writes ``results.json``."""
    from keras_spp.data.sources import load_classification
    from keras_spp.data.views import evaluate

    model.save(os.path.join(out, "model.keras"))
    views = args.views if args.head == "spp" else tuple(v for v in args.views if v in ("center", "ten_view"))
    test_source, _ = load_classification(
        args.dataset, "test", data_dir=args.data_dir, seed=args.seed, **_source_options(args)
    )
    evaluation = evaluate(
        model,
        test_source,
        views=views,
        crop=args.crop,
        min_side=args.min_side,
        scales=_scales(args.min_side),
        max_examples=args.max_eval,
        verbose=args.verbose > 0,
        flip=args.flip,
    )
    print("\nview          top-1 err %   top-5 acc")
    for view, r in evaluation.items():
        print(f"{view:<13} {r['top1_error_pct']:>10.2f}   {r['top5']:.4f}   ({r['examples']} images)")
    results = {
        "config": config,
        "classes": list(data["info"].class_names),
        "train_examples": data["num_train"],
        "steps_per_epoch": steps,
        # What fit distributed each global batch of --batch-size over (1: one device).
        "replicas_in_sync": _replicas(model),
        "train_seconds": round(train_seconds, 1),
        "history": _read_csv(history_csv),
        "evaluation": evaluation,
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


def _scales(min_side):
    # The paper's multi-scale views (224..560 for min side 256), scaled to min_side.
    return tuple(round(min_side * s / 256) for s in (224, 256, 300, 360, 448))


def _read_csv(path):
    import csv

    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


if __name__ == "__main__":
    raise SystemExit(main())
