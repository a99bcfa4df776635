"""Image-level spatial pyramid pooling (the SPP layer of He et al., section 2.3)."""

import keras
from keras import ops

from keras_spp.ops import bins, runtime

POOLINGS = ("max", "avg")
_FLOATS = ("float16", "bfloat16", "float32", "float64")


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
      * Written with ``keras.ops``: it takes and returns the backend's tensors
        (TensorFlow, JAX, PyTorch), with gradients, under ``tf.function`` and XLA,
        ``jax.jit`` and ``torch.compile``.

    Errors: a ``ValueError`` names the argument for a bad rank, a zero height or width,
    levels that are not positive integers, or an unknown ``pooling`` or ``bin_rule``;
    a size the paper rule cannot split raises ``ValueError`` where the size is known
    when the function is called or traced (always on JAX and PyTorch), and
    ``InvalidArgumentError`` at run time in TensorFlow graphs with unknown sizes.
    Under XLA (``jit_compile=True``), which drops run-time assertions, such an
    output is filled with NaN instead, so it can never pass for a valid result.

    Example:

    >>> import numpy as np
    >>> x = np.random.uniform(size=(2, 13, 17, 8)).astype("float32")
    >>> tuple(spatial_pyramid_pool(x, levels=(3, 1)).shape)
    (2, 80)
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
                f"cell per side; got shape {tuple(features.shape)}."
            )
        if bin_rule == "paper" and size is not None:
            bad = [n for n in levels if not bins.paper_rule_is_valid(size, n)]
            if bad:
                raise ValueError(
                    f"bin_rule='paper' cannot split a {name} of {size} into {bad} bins "
                    "(window ceil(a/n), stride floor(a/n) give another count); use "
                    "bin_rule='adaptive', which gives n bins for every size."
                )

    height, width = ops.shape(features)[1:3]
    plan = bins.derivation_plan(levels) if pooling == "max" and bin_rule == "adaptive" else {n: None for n in levels}
    pooled = {}
    for n in sorted(plan, reverse=True):
        source = plan[n]
        if source is None:
            pool = _max_pool_bins if pooling == "max" else _avg_pool_bins
            pooled[n] = pool(features, height, width, n, bin_rule)
        else:
            pooled[n] = merge_bins(pooled[source], n)

    batch, channels = features.shape[0], features.shape[3]
    output = concat_levels(pooled, levels, batch, channels)
    if not runtime.is_static(height, width):
        output = _checked_at_run_time(output, height, width, levels, bin_rule)
    return output


def check_feature_map(features):
    """``features`` as a tensor, or a ValueError unless it is a float ``[B, H, W, C]``."""
    features = ops.convert_to_tensor(features)
    if len(features.shape) != 4:
        raise ValueError(
            "`features` must be a rank-4 tensor [batch, height, width, channels] "
            f"(channels last); got shape {tuple(features.shape)}."
        )
    dtype = keras.backend.standardize_dtype(features.dtype)
    if dtype not in _FLOATS:
        raise ValueError(f"`features` must be a floating-point tensor; got {dtype}.")
    return features


def merge_bins(pooled, m):
    """Max-pools a ``[N, n, n, C]`` grid of bins to ``[N, m, m, C]`` (m divides n):
    the max of each ``k x k`` block of bins (``k = n / m``). Ties share the gradient,
    as reduce-max's do: neighbouring bins often hold the same cell's value, and their
    shares meet again in that cell (``runtime.max_pool_blocks``)."""
    k = pooled.shape[1] // m
    if k == 1:
        return pooled
    return runtime.max_pool_blocks(pooled, k)


def concat_levels(pooled, levels, rows, channels):
    """``{n: [rows, n, n, C]}`` -> ``[rows, C * sum(n * n)]``, the levels in the order
    given, each row-major; static sizes (``rows``, ``channels``; ``None`` if unknown)
    stay static."""

    def flat(x, n):
        if channels is not None:
            return ops.reshape(x, (-1 if rows is None else rows, n * n * channels))
        return ops.reshape(x, (ops.shape(x)[0], -1))

    return ops.concatenate([flat(pooled[n], n) for n in levels], axis=-1)


def _membership(length, n, rule):
    """Boolean ``[n, length]``: cell ``y`` lies in bin ``i``."""
    start, end = bins.bin_edges(length, n, rule)
    cells = ops.arange(length, dtype="int32")
    return (cells >= start[:, None]) & (cells < end[:, None])


def _max_pool_bins(features, height, width, n, rule):
    # Separable: rows of each bin first, then columns. Masked cells are -inf, and no
    # bin is empty, so -inf never reaches the output.
    lowest = ops.cast(float("-inf"), features.dtype)
    in_row_bin = _membership(height, n, rule)[None, :, :, None, None]
    rows = runtime.reduce_max(ops.where(in_row_bin, features[:, None], lowest), axis=2)
    in_col_bin = _membership(width, n, rule)[None, None, :, :, None]
    return runtime.reduce_max(ops.where(in_col_bin, rows[:, :, None], lowest), axis=3)


def _avg_pool_bins(features, height, width, n, rule):
    # Accumulate in at least float32 so that float16 sums cannot overflow.
    dtype = "float64" if keras.backend.standardize_dtype(features.dtype) == "float64" else "float32"
    row_mask = ops.cast(_membership(height, n, rule), dtype)
    col_mask = ops.cast(_membership(width, n, rule), dtype)
    row_mask = row_mask / ops.sum(row_mask, axis=1, keepdims=True)
    col_mask = col_mask / ops.sum(col_mask, axis=1, keepdims=True)
    pooled = ops.einsum("iy,jx,byxc->bijc", row_mask, col_mask, ops.cast(features, dtype))
    return ops.cast(pooled, features.dtype)


def _checked_at_run_time(output, height, width, levels, rule):
    """A TensorFlow graph with sizes unknown until run time: the size checks become
    assertions, and the paper rule's invalid outputs NaN (``runtime``'s docstring)."""
    checks = [
        (
            ops.minimum(height, width) >= 1,
            ["spatial_pyramid_pool: `features` height and width must be >= 1; got", height, width],
        )
    ]
    if rule != "paper":
        return runtime.assert_all(checks, output)
    valid = ops.convert_to_tensor(True)
    for a in (height, width):
        for n in levels:
            win = -((-a) // n)
            stride = ops.maximum(a // n, 1)
            valid = valid & (a >= n) & ((a - win) // stride + 1 == n)
    checks.append(
        (
            valid,
            [
                "spatial_pyramid_pool: bin_rule='paper' cannot split (height, width) =",
                height,
                width,
                f"into each of {list(levels)} bins; use bin_rule='adaptive'.",
            ],
        )
    )
    output = ops.where(valid, output, ops.cast(float("nan"), output.dtype))
    return runtime.assert_all(checks, output)
