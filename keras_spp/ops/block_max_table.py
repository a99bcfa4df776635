"""A 2D sparse table of block maxima: any rectangle's max from four look-ups.

``table[kx, ky, b, y, x, c]`` is the max of ``features[b, y:y + 2**ky, x:x + 2**kx, c]``
(blocks that run past the border are cut at it). A rectangle of ``h x w`` cells at
``(y, x)`` is covered exactly by the four blocks of size ``2**floor(log2 h)`` by
``2**floor(log2 w)`` anchored at its corners, and max does not mind that they
overlap. Building ``K`` levels per axis costs ``K`` shifted maxima per axis; each
query is then four gathers of a channel vector, with shapes XLA can compile for any
map size and box count (unlike crop_and_resize, which has no XLA kernel).
"""

import tensorflow as tf

from keras_spp.ops import bins


def build_block_max_table(features, levels_y, levels_x):
    """Stacks the block-max maps of ``features [B, H, W, C]``.

    ``levels_y`` and ``levels_x`` (int32 scalars, >= 1) say how many block sizes to
    keep per axis: ``1, 2, 4, ... 2**(levels - 1)`` cells. Returns
    ``[levels_x, levels_y * B, H, W, C]``.
    """
    by_rows = _doubling(features, levels_y, axis=1)  # [Ky, B, H, W, C]
    shape = tf.shape(features)
    stacked = tf.reshape(by_rows, tf.concat([[-1], shape[1:]], 0))
    return _doubling(stacked, levels_x, axis=2)


def _doubling(x, count, axis):
    # Level k+1 is the max of level k and itself shifted by 2**k; clamping the shifted
    # index at the border keeps the shape fixed (max with a repeated cell is harmless).
    size = tf.shape(x)[axis]
    cells = tf.range(size)
    levels = tf.TensorArray(x.dtype, size=count, element_shape=x.shape)

    def body(k, current, levels):
        levels = levels.write(k, current)
        shifted = tf.gather(current, tf.minimum(cells + tf.bitwise.left_shift(1, k), size - 1), axis=axis)
        return k + 1, tf.maximum(current, shifted), levels

    # maximum_iterations lets XLA size the gradient's accumulators.
    _, _, levels = tf.while_loop(
        lambda k, *_: k < count,
        body,
        (tf.constant(0), x, levels),
        maximum_iterations=count,
    )
    return levels.stack()


def levels_needed(longest_side):
    """How many block sizes cover rectangles up to ``longest_side`` cells a side."""
    return bins.floor_log2(tf.maximum(longest_side, 1)) + 1


def rectangle_max(table, levels_y, images, y_start, y_end, x_start, x_end):
    """Max over rectangles ``[y_start, y_end) x [x_start, x_end)`` of image ``images``.

    Args:
      table: ``build_block_max_table``'s ``[levels_x, levels_y * B, H, W, C]``.
      levels_y: int32 scalar, the table's block sizes along y.
      images: int32 ``[R]``; the starts and ends are int32 ``[R, n]`` (rows) and
        ``[R, m]`` (columns) of non-empty ranges inside the map.

    Returns ``[R, n, m, C]``: the max of every (row range, column range) pair.
    """
    ky = bins.floor_log2(y_end - y_start)
    kx = bins.floor_log2(x_end - x_start)
    rows = tf.stack([y_start, y_end - tf.bitwise.left_shift(1, ky)])  # [2, R, n]
    cols = tf.stack([x_start, x_end - tf.bitwise.left_shift(1, kx)])  # [2, R, m]
    shape = tf.shape(table)
    batch, width, plane = shape[1] // levels_y, shape[3], shape[2] * shape[3]
    table_rows = tf.reshape(table, tf.stack([-1, shape[4]]))
    # Flat row of the table for each corner: [2, 1, R, n, 1] + [1, 2, R, 1, m].
    level = (kx[:, tf.newaxis, :] * levels_y + ky[:, :, tf.newaxis]) * batch
    base = (level + images[:, tf.newaxis, tf.newaxis]) * plane
    flat = (
        base[tf.newaxis, tf.newaxis]
        + (rows * width)[:, tf.newaxis, :, :, tf.newaxis]
        + cols[tf.newaxis, :, :, tf.newaxis, :]
    )
    # One gather of all four corners, then a max over them: its gradient is a single
    # scatter (ties between overlapping corners split it, and the parts meet again in
    # the same cell).
    flat = tf.transpose(tf.reshape(flat, tf.concat([[4], tf.shape(flat)[2:]], 0)), [1, 2, 3, 0])
    return tf.reduce_max(tf.gather(table_rows, flat), axis=3)
