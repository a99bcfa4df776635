"""Exact RoI spatial pyramid pooling (SPP-net detection, the paper's section 4)."""

import keras
import numpy as np
from keras import ops

from keras_spp.ops import bins, runtime
from keras_spp.ops.block_max_table import build_block_max_table, levels_needed, rectangle_max
from keras_spp.ops.box_cells import COORDINATE_RULES, boxes_to_cells, validate_spatial_scale
from keras_spp.ops.spatial_pyramid_pool import check_feature_map, concat_levels, merge_bins
from keras_spp.validation import is_integer


def roi_pyramid_pool(
    features,
    boxes,
    box_indices,
    levels=(6, 3, 2, 1),
    spatial_scale=1.0 / 16,
    coordinate_rule="spp",
    max_boxes_per_chunk=None,
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
        ``[0, D]``. Gradients flow to ``features``. Written with ``keras.ops``: the
        backend's tensors in and out (TensorFlow, JAX, PyTorch).

    Memory: ``max_boxes_per_chunk`` boxes are pooled at a time where their count is
    known (None: eager calls chunk to about ``GATHER_BYTES_PER_CHUNK``; docs/ops.md).

    Implementation: a sparse table of block maxima (``block_max_table``) answers each
    bin of the finest level with four gathers; a coarser level whose bin count
    divides a finer one's is that level's ``k x k`` max, exactly (``bins.
    derivation_plan``). It compiles under ``jit_compile=True`` with R, H and W
    dynamic, and under ``jax.jit`` (once per shape of its inputs).

    Errors: bad ranks, levels, scale or rule raise ``ValueError``; in TensorFlow graphs
    sizes unknown until run time (ranks, box width, box count against index count, an
    empty map) are checked then, as ``InvalidArgumentError``, under XLA too (the
    compile fails; ``_check_sizes``). Non-finite
    coordinates and box indices outside ``[0, B)`` raise ``ValueError`` where the
    values are known (eager calls), ``InvalidArgumentError`` in a TensorFlow graph;
    under XLA, ``jax.jit`` or ``torch.compile`` those boxes' rows are NaN instead, so
    they can never pass for valid results (``keras_spp.ops.runtime``).

    Example:

    >>> import numpy as np
    >>> f = np.random.uniform(size=(1, 43, 58, 16)).astype("float32")
    >>> boxes = np.array([[0.0, 0.0, 687.0, 916.0], [100.0, 50.0, 300.0, 400.0]], "float32")
    >>> tuple(roi_pyramid_pool(f, boxes, np.array([0, 0])).shape)
    (2, 800)
    """
    levels = bins.validate_levels(levels)
    if coordinate_rule not in COORDINATE_RULES:
        bins.validate_choice(coordinate_rule, COORDINATE_RULES, "coordinate_rule")
    spatial_scale = validate_spatial_scale(spatial_scale)
    max_boxes_per_chunk = validate_chunk(max_boxes_per_chunk)
    features, boxes, box_indices = _pin_unknown_ranks(features, boxes, box_indices)
    features = check_feature_map(features)
    _check_static(features, boxes, box_indices)
    box_indices = ops.cast(box_indices, "int32")

    batch, height, width = ops.shape(features)[:3]
    box_indices = _check_sizes(boxes, box_indices, height, width)
    valid = _check_boxes(boxes, box_indices, batch)
    cells = boxes_to_cells(boxes, spatial_scale, height, width, coordinate_rule)
    # An out-of-range index would read another image's cells; clamp it and let
    # `valid` mark the row.
    images = ops.clip(box_indices, 0, ops.maximum(batch - 1, 0))
    table = _block_max_table(features, levels, cells)
    rows, channels = boxes.shape[0], features.shape[3]
    chunk = _chunk_size(max_boxes_per_chunk, rows, channels, levels, features)
    if chunk is None:
        return _pool_rows(table, cells, images, valid, levels, rows, channels)
    parts = [slice(start, min(start + chunk, rows)) for start in range(0, rows, chunk)]
    pooled = [_pool_rows(table, cells[p], images[p], valid[p], levels, p.stop - p.start, channels) for p in parts]
    return ops.concatenate(pooled, axis=0)


def _pool_rows(table, cells, images, valid, levels, rows, channels):
    """``[rows, D]``: the pyramid vectors of boxes ``cells``, NaN where not ``valid``."""
    output = concat_levels(_pool_levels(table, cells, images, levels), levels, rows, channels)
    return ops.where(valid[:, None], output, ops.cast(float("nan"), output.dtype))


# Eager calls materialise every op's result, the largest being the finest level's
# four gathered corners, [R, n, n, 4, C]: 2.9 GB for 20000 boxes at n = 6, C = 256.
# Pooling this many bytes of it at a time bounds that at little cost in speed.
GATHER_BYTES_PER_CHUNK = 64 * 2**20
_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def _chunk_size(max_boxes_per_chunk, rows, channels, levels, features):
    """Boxes pooled at a time, or None for all at once: ``max_boxes_per_chunk`` where
    given, else (eager calls only) as many as keep the gathered corners within
    ``GATHER_BYTES_PER_CHUNK``. Graphs with an unknown box count pool all at once
    (under XLA the gathers are fused into their max and never materialise)."""
    if not runtime.is_static(rows):
        return None
    if max_boxes_per_chunk is None:
        if channels is None or not runtime.is_eager(features):
            return None
        finest = [n for n, source in bins.derivation_plan(levels).items() if source is None]
        per_box = 4 * sum(n * n for n in finest) * channels * _ITEMSIZE[keras.backend.standardize_dtype(features.dtype)]
        max_boxes_per_chunk = max(1, GATHER_BYTES_PER_CHUNK // per_box)
    return max_boxes_per_chunk if rows > max_boxes_per_chunk else None


def validate_chunk(max_boxes_per_chunk):
    """``max_boxes_per_chunk`` as an int or None, or a ValueError naming it."""
    if max_boxes_per_chunk is None:
        return None
    if not is_integer(max_boxes_per_chunk) or max_boxes_per_chunk < 1:
        raise ValueError(
            "`max_boxes_per_chunk` must be None (automatic) or a positive integer (boxes "
            f"pooled at a time); got {max_boxes_per_chunk!r}."
        )
    return int(max_boxes_per_chunk)


def _block_max_table(features, levels, cells):
    """``(table, levels_y)``: the block-max table deep enough for the finest level that
    is pooled directly, over the boxes' inclusive ``cells`` ``[R, 4]``."""
    plan = bins.derivation_plan(levels)
    # The largest bin over a <= H cells has ceil(a/n) + 1 cells, and at most H.
    n_min = min(n for n in plan if plan[n] is None)
    span_y, span_x = _spans(features, cells)
    levels_y = levels_needed(_longest_bin(span_y, n_min))
    levels_x = levels_needed(_longest_bin(span_x, n_min))
    return build_block_max_table(features, levels_y, levels_x), levels_y


def _spans(features, cells):
    """The most cells a box spans along y and x: the boxes' own longest sides where
    the table's depth may follow the data (eager calls, and TensorFlow graphs outside
    XLA, whose loop counts may be run-time values), else the map's sides (XLA and
    ``jax.jit`` need the count fixed by the shapes). Why: a detector's windows are
    pooled where they are about 4 cells wide, and a table as deep as a large map
    holds four times the copies of it that they need (docs/ops.md)."""
    known = runtime.concrete(cells)
    if known is not None:
        longest = (known[:, 2:] - known[:, :2] + 1).max(axis=0, initial=1)
        return int(longest[0]), int(longest[1])
    if runtime.in_tensorflow_graph() and not runtime.in_xla_context():
        sides = ops.concatenate([cells[:, 2:] - cells[:, :2] + 1, ops.ones([1, 2], "int32")], axis=0)
        longest = ops.max(sides, axis=0)
        return longest[0], longest[1]
    height, width = ops.shape(features)[1:3]
    return height, width


def _pool_levels(table, cells, images, levels):
    """``{n: [R, n, n, C]}``: each box's maxima at every level, the finest ones from the
    block-max ``table`` (and its ``levels_y``) over its inclusive ``cells`` ``[R, 4]`` of
    image ``images`` ``[R]``, the others merged from a finer level."""
    table, levels_y = table
    y_first, x_first, y_last, x_last = (cells[:, i] for i in range(4))
    plan = bins.derivation_plan(levels)
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
            y_start + y_first[:, None],
            y_end + y_first[:, None],
            x_start + x_first[:, None],
            x_end + x_first[:, None],
        )
    return pooled


def _longest_bin(side, n):
    """The most cells a bin of ``n`` over at most ``side`` cells can hold: ``ceil(a/n) + 1``
    (adaptive bins may share a cell), and at most ``side``."""
    longest = -(-side // n) + 1
    return min(side, longest) if runtime.is_static(side) else ops.minimum(side, longest)


def _check_static(features, boxes, box_indices):
    if 0 in tuple(features.shape[1:3]):
        raise ValueError(f"`features` must have height and width >= 1; got shape {tuple(features.shape)}.")
    if len(boxes.shape) != 2 or boxes.shape[1] not in (None, 4):
        raise ValueError(
            f"`boxes` must be [num_boxes, 4] as [y1, x1, y2, x2] in image pixels; got shape {tuple(boxes.shape)}."
        )
    if not keras.backend.is_float_dtype(boxes.dtype):
        raise ValueError(f"`boxes` must be floating point; got {keras.backend.standardize_dtype(boxes.dtype)}.")
    index_dtype = keras.backend.standardize_dtype(box_indices.dtype)
    if len(box_indices.shape) != 1 or not keras.backend.is_int_dtype(index_dtype):
        raise ValueError(
            "`box_indices` must be an integer vector [num_boxes] (the image of each "
            f"box); got shape {tuple(box_indices.shape)}, dtype {index_dtype}."
        )
    if None not in (boxes.shape[0], box_indices.shape[0]) and boxes.shape[0] != box_indices.shape[0]:
        raise ValueError(
            f"`boxes` has {boxes.shape[0]} rows but `box_indices` has {box_indices.shape[0]} entries; they must match."
        )


def _pin_unknown_ranks(features, boxes, box_indices):
    """The three inputs as tensors. In a TensorFlow graph a rank (or the box width) the
    signature leaves unknown is pinned and checked at run time: unchecked, a ``[R, 3]``
    box tensor or a ``[R, 1]`` index tensor would broadcast into wrong rows. Known wrong
    shapes are left for ``_check_static``'s ValueError."""
    features, boxes, box_indices = (ops.convert_to_tensor(x) for x in (features, boxes, box_indices))
    if not runtime.in_tensorflow_graph():
        return features, boxes, box_indices
    if features.shape.rank is None:
        features = runtime.pin_shape(features, [None] * 4, "features_must_be_batch_height_width_channels")
    if boxes.shape.rank is None or (boxes.shape.rank == 2 and boxes.shape[1] is None):
        boxes = runtime.pin_shape(boxes, [None, 4], "boxes_must_be_num_boxes_by_4")
    if box_indices.shape.rank is None:
        box_indices = runtime.pin_shape(box_indices, [None], "box_indices_must_be_a_vector")
    return features, boxes, box_indices


def _check_sizes(boxes, box_indices, height, width):
    """``box_indices``, in a TensorFlow graph behind the checks that eager calls make on
    sizes the graph leaves unknown: one index per box, a map of at least 1 x 1 cells.
    Unchecked, 1 box with 3 indices gave 3 rows and 3 boxes with 1 index broadcast it,
    with or without XLA; under XLA the checks fail the compile (``runtime.assert_sizes``)."""
    if not runtime.in_tensorflow_graph():
        return box_indices
    rows, count = ops.shape(boxes)[0], ops.shape(box_indices)[0]
    checks = []
    if not runtime.is_static(rows, count):
        message = ["roi_pyramid_pool: `box_indices` must hold one entry per box; boxes, entries:", rows, count]
        checks.append((ops.equal(rows, count), "box_indices_must_have_one_entry_per_box", message))
    if not runtime.is_static(height, width):
        message = ["roi_pyramid_pool: `features` must have height and width >= 1; got", height, width]
        checks.append((ops.minimum(height, width) >= 1, "features_must_have_height_and_width_at_least_1", message))
    return runtime.assert_sizes(checks, box_indices) if checks else box_indices


def _check_boxes(boxes, box_indices, batch):
    """Validity of each box: ValueError where values are known, assertions in
    TensorFlow graphs, a mask always."""
    finite = ops.all(ops.isfinite(boxes), axis=1)
    in_range = (box_indices >= 0) & (box_indices < batch)
    known_finite, known_in_range = runtime.concrete(finite), runtime.concrete(in_range)
    if known_finite is not None and known_in_range is not None:
        bad = np.flatnonzero(~known_finite)
        if bad.size:
            raise ValueError(
                f"`boxes` must hold finite coordinates; rows {bad[:10].tolist()} have "
                f"NaN or infinite values, e.g. {runtime.concrete(boxes)[bad[0]].tolist()}."
            )
        bad = np.flatnonzero(~known_in_range)
        if bad.size:
            raise ValueError(
                f"`box_indices` must lie in [0, {int(batch)}) (the batch of `features`); "
                f"rows {bad[:10].tolist()} hold {runtime.concrete(box_indices)[bad[:10]].tolist()}."
            )
        return finite & in_range
    if not runtime.in_tensorflow_graph():
        return finite & in_range
    checks = [
        (ops.all(finite), ["roi_pyramid_pool: `boxes` must hold finite coordinates [y1, x1, y2, x2]"]),
        (ops.all(in_range), ["roi_pyramid_pool: `box_indices` must lie in [0, batch); batch =", batch]),
    ]
    return runtime.assert_all(checks, finite & in_range)
