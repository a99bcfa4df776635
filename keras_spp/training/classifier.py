"""A Table 1 classifier compiled for training, as the detector's pretraining runs it."""

LR_SCHEDULES = ("plateau", "step", "cosine")
OPTIMIZERS = ("sgd", "adam")


def learning_rate_schedule(learning_rate, schedule="plateau", total_steps=1, drop=0.25):
    """The optimizer's learning rate: the number ``learning_rate`` (``"plateau"``, which
    a callback such as ``ReduceLROnPlateau`` lowers) or a schedule of the optimizer's
    step, so that a run resumed from a backup, which restores the optimizer's
    iterations, goes on where it was: ``"step"`` 10x lower for the last ``drop`` of the
    ``total_steps``, ``"cosine"`` cosine decay to 1% over them.

    >>> learning_rate_schedule(0.01)
    0.01
    >>> [round(float(learning_rate_schedule(0.01, "step", 100, drop=0.2)(s)), 6) for s in (79, 81)]
    [0.01, 0.001]
    """
    import keras

    if schedule not in LR_SCHEDULES:
        raise ValueError(f"Unknown learning-rate schedule {schedule!r}; known: {', '.join(LR_SCHEDULES)}.")
    if schedule == "step":
        boundary = max(1, round(total_steps * (1.0 - drop)))
        return keras.optimizers.schedules.PiecewiseConstantDecay([boundary], [learning_rate, learning_rate / 10])
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, total_steps), alpha=0.01)
    return learning_rate


def build_classifier(
    backbone,
    num_classes,
    *,
    head="spp",
    levels=(6, 3, 2, 1),
    width=1.0,
    fc_units=4096,
    dropout=0.5,
    image_size=224,
    dtype_policy="float32",
    optimizer="sgd",
    learning_rate=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    jit_compile=True,
):
    """``keras_spp.models.table1_classifier(backbone, num_classes, ...)`` built under
    ``dtype_policy`` (``"auto"`` resolved for this machine; the policy is stored in each
    layer's config, so a model saved under mixed_bfloat16 computes in bfloat16 wherever
    it is loaded, and what is built next is unaffected), compiled with sparse
    categorical cross-entropy, accuracy and top-5 accuracy.

    ``optimizer``: ``"sgd"`` (the paper's: ``momentum``, ``weight_decay``) or ``"adam"``
    (AdamW with ``weight_decay``); ``learning_rate``: a number or a schedule
    (``learning_rate_schedule``).
    """
    import keras

    from keras_spp.models import table1_classifier
    from keras_spp.training.precision import dtype_policy_scope

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}.")
    with dtype_policy_scope(dtype_policy):
        model = table1_classifier(
            backbone,
            num_classes,
            head=head,
            levels=levels,
            width=width,
            fc_units=fc_units,
            dropout=dropout,
            image_size=image_size,
        )
    model.compile(
        optimizer=(
            keras.optimizers.SGD(learning_rate, momentum=momentum, weight_decay=weight_decay)
            if optimizer == "sgd"
            else keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
        ),
        loss="sparse_categorical_crossentropy",
        # Top-5 of fewer than five classes is every class: PyTorch's top_k refuses k > classes.
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(min(5, num_classes), name="top5")],
        jit_compile=jit_compile,
    )
    return model
