"""Exact RoI spatial pyramid pooling (SPP-net detection, the paper's section 4)."""

import numpy as np
import tensorflow as tf

from keras_spp.ops import bins
from keras_spp.ops.block_max_table import build_block_max_table, levels_needed, rectangle_max
from keras_spp.ops.box_cells import COORDINATE_RULES, boxes_to_cells, validate_spatial_scale
from keras_spp.ops.spatial_pyramid_pool import check_feature_map, merge_bins, pyramid_output_dim


def roi_pyramid_pool(
    features,
    boxes,
    box_indices,
    levels=(6, 3, 2, 1),
    spatial_scale=1.0 / 16,
    coordinate_rule="spp",
):
    """Max-pools each box's part of a feature map into a fixed-length pyramid vector.

    Conventions:
      * ``features``: ``[B, H, W, C]``, channels last; H, W may be dynamic.
      * ``boxes``: ``[R, 4]`` as ``[y1, x1, y2, x2]`` in input-image pixels (the
        TensorFlow order), ``box_indices``: int ``[R]``, the image of each box.
      * Output ``[R, C * sum(n * n)]`` in the layout of ``spatial_pyramid_pool``:
        levels in the order given, each ``[n, n, C]`` row-major. A box whose cells
        are the whole map gives exactly the image-level result.
      * Boxes map to inclusive cell ranges by ``coordinate_rule`` (``"spp"``: the
        paper's appendix, ``"roi_pool"``: Fast R-CNN / torchvision; the exact formulas
        are in ``keras_spp.ops.box_cells``), clipped to the map. Bins follow the
        adaptive rule over the box's cells: bin ``i`` of ``n`` over ``a`` cells is
        ``[floor(i*a/n), ceil((i+1)*a/n))``. So every bin holds at least one cell,
        for degenerate (``y2 < y1``) and out-of-map boxes too.
      * Exact maxima of each bin's cells (no bilinear sampling). R = 0 gives
        ``[0, D]``. Gradients flow to ``features``.

    Implementation: a sparse table of block maxima (``block_max_table``) answers each
    bin of the finest level with four gathers; a coarser level whose bin count
    divides a finer one's is that level's ``k x k`` max, exactly (``bins.
    derivation_plan``). It compiles under ``jit_compile=True`` with R, H and W dynamic.

    Errors: bad ranks, levels, scale or rule raise ``ValueError``. Non-finite
    coordinates and box indices outside ``[0, B)`` raise ``ValueError`` eagerly and
    ``InvalidArgumentError`` in a graph; under XLA, which drops run-time assertions,
    those boxes' rows are NaN instead, so they can never pass for valid results.

    Example:

    >>> f = tf.random.uniform([1, 43, 58, 16])
    >>> boxes = tf.constant([[0.0, 0.0, 687.0, 916.0], [100.0, 50.0, 300.0, 400.0]])
    >>> roi_pyramid_pool(f, boxes, tf.constant([0, 0])).shape
    TensorShape([2, 800])
    """
    levels = bins.validate_levels(levels)
    if coordinate_rule not in COORDINATE_RULES:
        bins.validate_choice(coordinate_rule, COORDINATE_RULES, "coordinate_rule")
    spatial_scale = validate_spatial_scale(spatial_scale)
    features = check_feature_map(features)
    boxes = tf.convert_to_tensor(boxes)
    box_indices = tf.convert_to_tensor(box_indices)
    _check_static(features, boxes, box_indices)
    box_indices = tf.cast(box_indices, tf.int32)

    shape = tf.shape(features)
    batch, height, width = shape[0], shape[1], shape[2]
    valid = _check_boxes(boxes, box_indices, batch)
    cells = boxes_to_cells(boxes, spatial_scale, height, width, coordinate_rule)
    # An out-of-range index would read another image's cells; clamp it and let
    # `valid` mark the row.
    images = tf.clip_by_value(box_indices, 0, tf.maximum(batch - 1, 0))
    pooled = _pool_levels(features, cells, images, levels)

    count = tf.shape(boxes)[0]
    output = tf.concat([tf.reshape(pooled[n], tf.stack([count, -1])) for n in levels], axis=1)
    output = tf.where(valid[:, tf.newaxis], output, tf.constant(np.nan, output.dtype))
    dim = pyramid_output_dim(features.shape[3], levels)
    return tf.ensure_shape(output, [boxes.shape[0], dim])


def _pool_levels(features, cells, images, levels):
    """``{n: [R, n, n, C]}``: each box's maxima at every level, the finest ones from a
    block-max table over its inclusive ``cells`` ``[R, 4]`` of image ``images`` ``[R]``,
    the others merged from a finer level."""
    shape = tf.shape(features)
    height, width = shape[1], shape[2]
    y_first, x_first, y_last, x_last = tf.unstack(cells, num=4, axis=1)
    plan = bins.derivation_plan(levels)
    finest = [n for n in sorted(plan) if plan[n] is None]
    # The largest bin over a <= H cells has ceil(a/n) + 1 cells, and at most H.
    n_min = finest[0]
    levels_y = levels_needed(tf.minimum(height, -(-height // n_min) + 1))
    levels_x = levels_needed(tf.minimum(width, -(-width // n_min) + 1))
    table = build_block_max_table(features, levels_y, levels_x)

    pooled = {}
    for n in sorted(plan, reverse=True):
        if plan[n] is not None:
            pooled[n] = merge_bins(pooled[plan[n]], n)
            continue
        y_start, y_end = bins.bin_edges(y_last - y_first + 1, n)
        x_start, x_end = bins.bin_edges(x_last - x_first + 1, n)
        pooled[n] = rectangle_max(
            table,
            levels_y,
            images,
            y_start + y_first[:, tf.newaxis],
            y_end + y_first[:, tf.newaxis],
            x_start + x_first[:, tf.newaxis],
            x_end + x_first[:, tf.newaxis],
        )
    return pooled


def _check_static(features, boxes, box_indices):
    if 0 in features.shape[1:3]:
        raise ValueError(f"`features` must have height and width >= 1; got shape {features.shape}.")
    if boxes.shape.rank != 2 or boxes.shape[1] not in (None, 4):
        raise ValueError(
            f"`boxes` must be [num_boxes, 4] as [y1, x1, y2, x2] in image pixels; got shape {boxes.shape}."
        )
    if not boxes.dtype.is_floating:
        raise ValueError(f"`boxes` must be floating point; got {boxes.dtype.name}.")
    if box_indices.shape.rank != 1 or not box_indices.dtype.is_integer:
        raise ValueError(
            "`box_indices` must be an integer vector [num_boxes] (the image of each "
            f"box); got shape {box_indices.shape}, dtype {box_indices.dtype.name}."
        )
    if None not in (boxes.shape[0], box_indices.shape[0]) and boxes.shape[0] != box_indices.shape[0]:
        raise ValueError(
            f"`boxes` has {boxes.shape[0]} rows but `box_indices` has {box_indices.shape[0]} entries; they must match."
        )


def _check_boxes(boxes, box_indices, batch):
    """Validity of each box: ValueError eagerly, assertions in graphs, a mask always."""
    finite = tf.reduce_all(tf.math.is_finite(boxes), axis=1)
    in_range = (box_indices >= 0) & (box_indices < batch)
    if tf.executing_eagerly():
        bad = np.flatnonzero(~finite.numpy())
        if bad.size:
            raise ValueError(
                f"`boxes` must hold finite coordinates; rows {bad[:10].tolist()} have "
                f"NaN or infinite values, e.g. {boxes.numpy()[bad[0]].tolist()}."
            )
        bad = np.flatnonzero(~in_range.numpy())
        if bad.size:
            raise ValueError(
                f"`box_indices` must lie in [0, {int(batch)}) (the batch of `features`); "
                f"rows {bad[:10].tolist()} hold {box_indices.numpy()[bad[:10]].tolist()}."
            )
        return finite & in_range
    checks = [
        tf.debugging.Assert(
            tf.reduce_all(finite),
            ["roi_pyramid_pool: `boxes` must hold finite coordinates [y1, x1, y2, x2]"],
        ),
        tf.debugging.Assert(
            tf.reduce_all(in_range),
            ["roi_pyramid_pool: `box_indices` must lie in [0, batch); batch =", batch],
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(finite & in_range)
