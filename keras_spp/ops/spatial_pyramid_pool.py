"""Image-level spatial pyramid pooling (the SPP layer of He et al., section 2.3)."""

import numpy as np
import tensorflow as tf

from keras_spp.ops import bins

POOLINGS = ("max", "avg")


def pyramid_output_dim(channels, levels):
    """Length of the pooled vector: ``channels * sum(n * n for n in levels)``."""
    return None if channels is None else int(channels) * sum(n * n for n in levels)


def spatial_pyramid_pool(features, levels=(6, 3, 2, 1), pooling="max", bin_rule="adaptive"):
    """Pools a feature map of any spatial size into a fixed-length vector.

    Conventions:
      * ``features`` is ``[batch, height, width, channels]`` (channels last); height
        and width may be unknown until run time, and may change from call to call.
      * The output is ``[batch, channels * sum(n * n for n in levels)]``: the levels
        concatenated in the order given, each level flattened row-major as
        ``[n, n, channels]`` (bin row, bin column, channel). For ``levels=(6, 3, 2, 1)``
        and 256 channels that is 50 bins x 256 = 12800 values.
      * Bin ``i`` of ``n`` over a length of ``a`` cells covers
        ``[floor(i*a/n), ceil((i+1)*a/n))`` with ``bin_rule="adaptive"``: exactly ``n``
        non-empty bins for every ``a >= 1``. ``bin_rule="paper"`` uses the paper's
        window ``ceil(a/n)`` and stride ``floor(a/n)`` and rejects the sizes where
        that does not give ``n`` bins (``a=10, n=6`` among them).
      * ``pooling="max"`` (the paper) or ``"avg"`` (the mean of each bin's cells).

    Errors: a ``ValueError`` names the argument for a bad rank, a zero height or width,
    levels that are not positive integers, or an unknown ``pooling`` or ``bin_rule``;
    a size the paper rule cannot split raises ``ValueError`` where the size is known
    when the function is traced, and ``InvalidArgumentError`` at run time otherwise.
    Under XLA (``jit_compile=True``), which drops run-time assertions, such an
    output is filled with NaN instead, so it can never pass for a valid result.

    Example:

    >>> x = tf.random.uniform([2, 13, 17, 8])
    >>> spatial_pyramid_pool(x, levels=(3, 1)).shape
    TensorShape([2, 80])
    """
    levels = bins.validate_levels(levels)
    bins.validate_choice(pooling, POOLINGS, "pooling")
    bins.validate_choice(bin_rule, bins.BIN_RULES, "bin_rule")
    features = check_feature_map(features)
    static_h, static_w = features.shape[1], features.shape[2]
    for name, size in (("height", static_h), ("width", static_w)):
        if size == 0:
            raise ValueError(
                f"`features` has {name} 0: spatial pyramid pooling needs at least one "
                f"cell per side; got shape {features.shape}."
            )
        if bin_rule == "paper" and size is not None:
            bad = [n for n in levels if not bins.paper_rule_is_valid(size, n)]
            if bad:
                raise ValueError(
                    f"bin_rule='paper' cannot split a {name} of {size} into {bad} bins "
                    "(window ceil(a/n), stride floor(a/n) give another count); use "
                    "bin_rule='adaptive', which gives n bins for every size."
                )

    shape = tf.shape(features)
    height, width = shape[1], shape[2]
    valid = _check_runtime_sizes(height, width, static_h, static_w, levels, bin_rule)

    plan = bins.derivation_plan(levels) if pooling == "max" and bin_rule == "adaptive" else {n: None for n in levels}
    pooled = {}
    for n in sorted(plan, reverse=True):
        source = plan[n]
        if source is None:
            pool = _max_pool_bins if pooling == "max" else _avg_pool_bins
            pooled[n] = pool(features, height, width, n, bin_rule)
        else:
            pooled[n] = merge_bins(pooled[source], n)

    batch = shape[0]
    outputs = [tf.reshape(pooled[n], tf.stack([batch, -1])) for n in levels]
    output = tf.concat(outputs, axis=-1)
    if valid is not None:
        output = tf.where(valid, output, tf.constant(np.nan, output.dtype))
    dim = pyramid_output_dim(features.shape[3], levels)
    return tf.ensure_shape(output, [features.shape[0], dim])


def check_feature_map(features):
    """``features`` as a tensor, or a ValueError unless it is a float ``[B, H, W, C]``."""
    features = tf.convert_to_tensor(features)
    if features.shape.rank != 4:
        raise ValueError(
            "`features` must be a rank-4 tensor [batch, height, width, channels] "
            f"(channels last); got shape {features.shape}."
        )
    if not features.dtype.is_floating:
        raise ValueError(f"`features` must be a floating-point tensor; got {features.dtype.name}.")
    return features


def merge_bins(pooled, m):
    """Max-pools a ``[N, n, n, C]`` grid of bins to ``[N, m, m, C]`` (m divides n).

    Forward: a ``k x k`` max pool with stride ``k`` (``k = n / m``), which
    TensorFlow's kernel runs several times faster than reduce_max over two axes.
    Backward: reduce_max's rule (ties share the gradient) in elementwise ops, since
    XLA's MaxPoolGrad (select-and-scatter) is slow on CPU. Sharing matters here:
    neighbouring bins often hold the same cell's value, and their shares meet again
    in that cell.
    """
    k = pooled.shape[1] // m
    if k == 1:
        return pooled

    @tf.custom_gradient
    def merge(x):
        y = tf.nn.max_pool2d(x, k, k, "VALID")

        def grad(dy):
            wins = tf.cast(tf.equal(x, _repeat_bins(y, k)), x.dtype)
            ties = tf.nn.avg_pool2d(wins, k, k, "VALID") * float(k * k)
            return wins * _repeat_bins(dy / ties, k)

        return y, grad

    return merge(pooled)


def _repeat_bins(x, k):
    """``[N, m, m, C]`` -> ``[N, m*k, m*k, C]``, each bin repeated over a k x k block."""
    shape = tf.shape(x)
    tiled = tf.broadcast_to(
        x[:, :, tf.newaxis, :, tf.newaxis, :],
        tf.stack([shape[0], shape[1], k, shape[2], k, shape[3]]),
    )
    return tf.reshape(tiled, tf.stack([shape[0], shape[1] * k, shape[2] * k, shape[3]]))


def _membership(length, n, rule):
    """Boolean ``[n, length]``: cell ``y`` lies in bin ``i``."""
    start, end = bins.bin_edges(length, n, rule)
    cells = tf.range(length)
    return (cells >= start[:, tf.newaxis]) & (cells < end[:, tf.newaxis])


def _max_pool_bins(features, height, width, n, rule):
    # Separable: rows of each bin first, then columns. Masked cells are -inf, and no
    # bin is empty, so -inf never reaches the output.
    lowest = tf.constant(-np.inf, features.dtype)
    in_row_bin = _membership(height, n, rule)[tf.newaxis, :, :, tf.newaxis, tf.newaxis]
    rows = tf.reduce_max(tf.where(in_row_bin, features[:, tf.newaxis], lowest), axis=2)
    in_col_bin = _membership(width, n, rule)[tf.newaxis, tf.newaxis, :, :, tf.newaxis]
    return tf.reduce_max(tf.where(in_col_bin, rows[:, :, tf.newaxis], lowest), axis=3)


def _avg_pool_bins(features, height, width, n, rule):
    # Accumulate in at least float32 so that float16 sums cannot overflow.
    dtype = tf.float64 if features.dtype == tf.float64 else tf.float32
    row_mask = tf.cast(_membership(height, n, rule), dtype)
    col_mask = tf.cast(_membership(width, n, rule), dtype)
    row_mask /= tf.reduce_sum(row_mask, axis=1, keepdims=True)
    col_mask /= tf.reduce_sum(col_mask, axis=1, keepdims=True)
    x = tf.cast(features, dtype)
    pooled = tf.einsum("iy,jx,byxc->bijc", row_mask, col_mask, x)
    return tf.cast(pooled, features.dtype)


def _check_runtime_sizes(height, width, static_h, static_w, levels, rule):
    """Asserts what could not be checked at trace time; returns a validity flag or None."""
    if static_h is not None and static_w is not None:
        return None
    # Inside tf.function these stateful assertions run without explicit dependencies.
    checks = [
        tf.debugging.assert_positive(
            tf.minimum(height, width),
            message="spatial_pyramid_pool: `features` height and width must be >= 1",
        )
    ]
    if rule != "paper":
        return None
    valid = tf.constant(True)
    for a in (height, width):
        for n in levels:
            win = -(-a // n)
            stride = tf.maximum(a // n, 1)
            valid &= (a >= n) & ((a - win) // stride + 1 == n)
    checks.append(
        tf.debugging.Assert(
            valid,
            [
                "spatial_pyramid_pool: bin_rule='paper' cannot split (height, width) =",
                height,
                width,
                f"into each of {list(levels)} bins; use bin_rule='adaptive'.",
            ],
        )
    )
    with tf.control_dependencies(checks):
        return tf.identity(valid)
