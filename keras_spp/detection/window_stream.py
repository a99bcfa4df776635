"""Fine-tuning minibatches streamed from the window-feature shards.

Two endless ``tf.data`` streams, one of positive windows and one of background
windows, each visiting the images in a seeded random order, reading one shard at a
time and mixing rows through a bounded shuffle buffer; every minibatch takes
``round(positive_fraction * batch_size)`` rows from the first and the rest from the
second (the paper: 32 of 128). Memory is the two buffers, whatever the number of
images: ``shuffle_bytes`` in all.

Why stream features rather than pool each minibatch from cached conv5 maps with the
RoI op (Fast R-CNN's sampling, a few images a batch): docs/detection.md, "Training
at scale". In short, the heads here are trained on frozen conv layers, so each
window's features are fixed and a shard is read, not recomputed; pooling per batch
would cache conv5 at every scale (more disk than the subsampled windows' features
at the paper's six scales) and spend the RoI op's time at every step.
"""

import numpy as np
import tensorflow as tf

from keras_spp.detection.sampling import BACKGROUND

# Rows both shuffle buffers hold together, in bytes of features: 256 MB mixes ~10000
# windows of 12800-d float16 features, windows of ~40 images at the paper's width.
SHUFFLE_BYTES = 256 * 2**20


def fine_tuning_stream(records, labels, batch_size=128, positive_fraction=0.25, seed=0, shuffle_bytes=SHUFFLE_BYTES):
    """An endless stream of ``(features float32 [B, D], labels int64 [B])`` batches.

    ``records``: ``window_cache.ImageWindows``; ``labels``: one ``[N]`` array per
    record (``sampling.window_labels``: class + 1, 0 background, -1 unused). The
    stream depends only on the shards, the labels and ``seed``.
    """
    batch_size = int(batch_size)
    if not 0.0 < positive_fraction < 1.0:
        raise ValueError(f"`positive_fraction` must be in (0, 1); got {positive_fraction}.")
    if batch_size < 2:
        raise ValueError(f"`batch_size` must be >= 2 (a positive and a negative); got {batch_size}.")
    positives = [np.flatnonzero(y > 0) for y in labels]
    negatives = [np.flatnonzero(y == BACKGROUND) for y in labels]
    num_pos, num_neg = sum(map(len, positives)), sum(map(len, negatives))
    if num_pos == 0 or num_neg == 0:
        raise ValueError(
            f"fine-tuning needs positive and background windows; got {num_pos} positives and {num_neg} "
            "negatives. Check the proposals cover the objects (IoU >= 0.5)."
        )
    if not records:
        raise ValueError("fine-tuning needs at least one training image.")
    dim = _feature_dim(records)
    take = min(max(int(round(batch_size * positive_fraction)), 1), batch_size - 1)
    row_bytes = dim * 2
    buffer_rows = max(int(shuffle_bytes) // row_bytes, batch_size)
    pos = _rows_stream(records, labels, positives, dim, seed, min(buffer_rows // 4, num_pos))
    neg = _rows_stream(records, labels, negatives, dim, seed + 1, min(buffer_rows - buffer_rows // 4, num_neg))
    batches = tf.data.Dataset.zip(pos.batch(take), neg.batch(batch_size - take))

    def merge(p, n):
        return tf.cast(tf.concat([p[0], n[0]], 0), tf.float32), tf.concat([p[1], n[1]], 0)

    return batches.map(merge, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def _feature_dim(records):
    for record in records:
        if len(record.windows):
            return int(record.features_of(np.arange(1)).shape[1])
    raise ValueError("no training image has a window.")


def _rows_stream(records, labels, rows_of, dim, seed, buffer_rows):
    """Endless rows ``(features [D], label)`` of ``rows_of[i]`` of each record, images
    in a new seeded order each pass, mixed by a ``buffer_rows`` shuffle buffer."""
    usable = [i for i, rows in enumerate(rows_of) if len(rows)]

    def generate():
        rng = np.random.default_rng(seed)
        while True:
            for i in rng.permutation(usable):
                rows = rows_of[i]
                yield records[i].features_of(rows), labels[i][rows]

    dtype = tf.as_dtype(records[usable[0]].features_of(rows_of[usable[0]][:1]).dtype)
    signature = (tf.TensorSpec([None, dim], dtype), tf.TensorSpec([None], tf.int64))
    rows = tf.data.Dataset.from_generator(generate, output_signature=signature).unbatch()
    return rows.shuffle(max(int(buffer_rows), 1), seed=seed, reshuffle_each_iteration=False)
