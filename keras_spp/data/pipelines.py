"""tf.data pipelines for training and evaluation of classifiers.

Sources yield unbatched ``(image uint8 [H, W, 3], label)`` pairs of any size
(``keras_spp.data.sources``); these functions turn them into what ``model.fit`` and
the evaluation views take.
"""

import tensorflow as tf

from keras_spp.data import transforms

AUTOTUNE = tf.data.AUTOTUNE


def training_dataset(
    source,
    batch_size,
    crop=224,
    min_side=256,
    schedule=None,
    jitter=0.4,
    seed=0,
    shuffle_buffer=2048,
    cache=False,
    start_epoch=0,
    skip_batches=0,
    epochs=1,
    flip=True,
):
    """Shuffled, augmented, batched training data, a pure function of ``seed``.

    Each image: min side ``min_side``, a random ``crop x crop`` crop, a random flip
    (unless ``flip=False``), colour jitter. The batches of epoch ``e`` are then resized to
    ``schedule.size_tensor(e)`` (the paper: 180 is the 224 crop resized, not a new
    crop); without a schedule they stay at ``crop``. Batches drop the remainder, so
    an epoch has a single shape.

    The dataset runs ``epochs`` epochs from ``start_epoch``, each shuffled and
    augmented from ``(seed, epoch)`` alone; so pass ``steps_per_epoch`` to ``fit``.
    Skipping ``skip_batches`` batches resumes an interrupted epoch exactly where it
    stopped. ``cache=True`` keeps decoded source images in memory.
    """
    if crop > min_side:
        raise ValueError(f"`crop` ({crop}) must not exceed `min_side` ({min_side}).")
    if cache:
        source = source.cache()

    def one_epoch(epoch):
        # Seeds from (seed, epoch, position) alone: there is no iterator state to restore.
        epoch_seed = seed * 1_000_003 + epoch
        data = source.shuffle(shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        data = data.enumerate().map(
            lambda i, pair: (
                transforms.train_augment(
                    pair[0], tf.stack([tf.constant(epoch_seed, tf.int64), i]), min_side, crop, jitter, flip
                ),
                pair[1],
            ),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
        data = data.batch(batch_size, drop_remainder=True)
        if schedule is not None:
            size = schedule.size_for_epoch(epoch)
            if size != crop:
                data = data.map(
                    lambda x, y: (tf.image.resize(x, [size, size], antialias=True), y), num_parallel_calls=AUTOTUNE
                )
        return data

    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1; got {epochs}.")
    data = one_epoch(start_epoch)
    for epoch in range(start_epoch + 1, start_epoch + epochs):
        data = data.concatenate(one_epoch(epoch))
    return data.skip(skip_batches).prefetch(AUTOTUNE)


def steps_per_epoch(num_examples, batch_size):
    """Full batches per epoch (the remainder is dropped)."""
    steps = num_examples // batch_size
    if steps < 1:
        raise ValueError(f"{num_examples} training examples make no full batch of {batch_size}; lower the batch size.")
    return steps


def center_crop_dataset(source, batch_size, crop=224, min_side=256):
    """The standard single view: min side ``min_side``, centre ``crop x crop``."""
    data = source.map(
        lambda image, label: (transforms.center_crop(transforms.resize_min_side(image, min_side), crop), label),
        num_parallel_calls=AUTOTUNE,
    )
    return data.batch(batch_size).prefetch(AUTOTUNE)
