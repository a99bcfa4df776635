"""A 2D sparse table of block maxima: any rectangle's max from four look-ups.

``table[kx, ky, b, y, x, c]`` is the max of ``features[b, y:y + 2**ky, x:x + 2**kx, c]``
(blocks that run past the border are cut at it). A rectangle of ``h x w`` cells at
``(y, x)`` is covered exactly by the four blocks of size ``2**floor(log2 h)`` by
``2**floor(log2 w)`` anchored at its corners, and max does not mind that they
overlap. Building ``K`` levels per axis costs ``K`` shifted maxima per axis; each
query is then four gathers of a channel vector, with shapes XLA can compile for any
map size and box count (unlike crop_and_resize, which has no XLA kernel).
"""

from keras import ops

from keras_spp.ops import bins, runtime


def build_block_max_table(features, levels_y, levels_x):
    """Stacks the block-max maps of ``features [B, H, W, C]``.

    ``levels_y`` and ``levels_x`` (Python ints, or int32 scalars in TensorFlow graphs
    with unknown sizes; >= 1) say how many block sizes to keep per axis:
    ``1, 2, 4, ... 2**(levels - 1)`` cells. Returns ``[levels_x, levels_y * B, H, W, C]``.
    """
    by_rows = _doubling(features, levels_y, axis=1)  # [Ky, B, H, W, C]
    stacked = ops.reshape(by_rows, (-1, *ops.shape(features)[1:]))
    return _doubling(stacked, levels_x, axis=2)


def _doubling(x, count, axis):
    # Level k+1 is the max of level k and itself shifted by 2**k; clamping the shifted
    # index at the border keeps the shape fixed (max with a repeated cell is harmless).
    size = ops.shape(x)[axis]
    cells = ops.arange(size, dtype="int32")

    def step(current, k):
        shifted = ops.take(current, ops.minimum(cells + bins.power_of_two(k), size - 1), axis=axis)
        return ops.maximum(current, shifted)

    return runtime.doubling_levels(x, count, step)


def levels_needed(longest_side):
    """How many block sizes cover rectangles up to ``longest_side`` cells a side: a
    Python int for a Python int, else an int32 tensor."""
    if runtime.is_static(longest_side):
        return max(int(longest_side), 1).bit_length()
    return bins.floor_log2(ops.maximum(longest_side, 1)) + 1


def rectangle_max(table, levels_y, images, y_start, y_end, x_start, x_end):
    """Max over rectangles ``[y_start, y_end) x [x_start, x_end)`` of image ``images``.

    Args:
      table: ``build_block_max_table``'s ``[levels_x, levels_y * B, H, W, C]``.
      levels_y: the table's block sizes along y.
      images: int32 ``[R]``; the starts and ends are int32 ``[R, n]`` (rows) and
        ``[R, m]`` (columns) of non-empty ranges inside the map.

    Returns ``[R, n, m, C]``: the max of every (row range, column range) pair.
    """
    ky = bins.floor_log2(y_end - y_start)
    kx = bins.floor_log2(x_end - x_start)
    rows = ops.stack([y_start, y_end - bins.power_of_two(ky)])  # [2, R, n]
    cols = ops.stack([x_start, x_end - bins.power_of_two(kx)])  # [2, R, m]
    shape = ops.shape(table)
    batch, width, plane = shape[1] // levels_y, shape[3], shape[2] * shape[3]
    table_rows = ops.reshape(table, (-1, shape[4]))
    # Flat row of the table for each corner: [2, 1, R, n, 1] + [1, 2, R, 1, m].
    level = (ops.expand_dims(kx, 1) * levels_y + ops.expand_dims(ky, 2)) * batch
    base = (level + images[:, None, None]) * plane
    flat = base[None, None] + (rows * width)[:, None, :, :, None] + cols[None, :, :, None, :]
    # One gather of all four corners, then a max over them: its gradient is a single
    # scatter (ties between overlapping corners split it, and the parts meet again in
    # the same cell).
    flat = ops.transpose(ops.reshape(flat, (4, *ops.shape(flat)[2:])), (1, 2, 3, 0))
    return runtime.reduce_max(ops.take(table_rows, flat, axis=0), axis=3)
