"""Bin geometry shared by the pyramid pooling ops.

Two rules split a length of ``a`` cells into ``n`` bins; bin ``i`` covers the
half-open cell range ``[start_i, end_i)``:

* ``"adaptive"`` (the original SPP-net detection code, Fast R-CNN RoI pooling,
  PyTorch adaptive pooling): ``start_i = floor(i * a / n)``,
  ``end_i = ceil((i + 1) * a / n)``. Exactly ``n`` non-empty bins for every
  ``a >= 1`` (``a < n`` included); neighbours may share one cell.
* ``"paper"`` (the paper's text): window ``ceil(a / n)``, stride ``floor(a / n)``,
  ``start_i = i * stride``. Only valid when that sliding window gives exactly ``n``
  windows; it does not for e.g. ``(a, n) = (5, 3)``, ``(10, 6)`` or any ``a < n``.

Written with ``keras.ops``: the same integers on every Keras backend.
"""

from keras import ops

from keras_spp.validation import is_integer

BIN_RULES = ("adaptive", "paper")

# Feature maps never approach 2**24 cells a side; comparisons against powers of two
# give an exact integer log2 where a float log could round the wrong way.
_MAX_BITS = 24


def validate_levels(levels, argument="levels"):
    """Returns ``levels`` as a tuple of positive Python ints, or raises ValueError."""
    if is_integer(levels):
        levels = (levels,)
    try:
        items = tuple(levels)
    except TypeError:
        items = None
    ok = bool(items) and all(is_integer(n) and n > 0 for n in items)
    if not ok:
        raise ValueError(
            f"`{argument}` must be a non-empty sequence of positive integers "
            f"(bins per side of each pyramid level, e.g. (6, 3, 2, 1)); got {levels!r}."
        )
    return tuple(int(n) for n in items)


def validate_choice(value, choices, argument):
    if value not in choices:
        raise ValueError(f"`{argument}` must be one of {', '.join(repr(c) for c in choices)}; got {value!r}.")
    return value


def paper_rule_is_valid(a, n):
    """True where the paper's window/stride give exactly ``n`` bins over ``a`` cells."""
    if a < n:
        return False
    win = -(-a // n)
    stride = a // n
    return (a - win) // stride + 1 == n


def bin_edges(length, n, rule="adaptive"):
    """Start and end (exclusive) cell of each of ``n`` bins over ``length`` cells.

    Args:
      length: int32 tensor of any shape (or a Python int): the number of cells (>= 1
        for valid bins).
      n: Python int, bins per side.
      rule: ``"adaptive"`` or ``"paper"`` (see the module docstring).

    Returns:
      ``(start, end)``, int32 tensors of shape ``length.shape + [n]``, offsets from the
      first cell. For the paper rule the validity of ``(length, n)`` is not checked
      here: see ``paper_rule_is_valid``.
    """
    validate_choice(rule, BIN_RULES, "bin_rule")
    length = ops.expand_dims(ops.convert_to_tensor(length, "int32"), -1)
    i = ops.arange(n, dtype="int32")
    if rule == "adaptive":
        start = ops.floor_divide(i * length, n)
        end = -ops.floor_divide(-(i + 1) * length, n)  # ceil((i + 1) * a / n) in integers
    else:
        stride = ops.floor_divide(length, n)
        start = i * stride
        end = start - ops.floor_divide(-length, n)
    return start, end


def floor_log2(x):
    """floor(log2(x)) of a positive int32 tensor, exact."""
    x = ops.convert_to_tensor(x, "int32")
    return sum(ops.cast(x >= (1 << k), "int32") for k in range(1, _MAX_BITS))


def power_of_two(k):
    """``2 ** k`` of a non-negative int32 tensor, exact."""
    k = ops.convert_to_tensor(k, "int32")
    return ops.left_shift(ops.ones_like(k), k)


def derivation_plan(levels):
    """Which levels can be read off a finer level instead of pooled afresh.

    With the adaptive rule, when ``m`` divides ``n`` the bin ``j`` of ``m`` is exactly
    the union of bins ``j*k .. j*k + k - 1`` of ``n`` (``k = n / m``): its first cell
    is ``floor(j*k*a/n)`` and its last ``ceil((j+1)*k*a/n) - 1``. For max pooling a
    coarse level is then the max over ``k x k`` blocks of the fine level.

    Unions of unions are unions, so a derived level can serve as a source too.

    Returns a dict ``{level: source}``, ``source`` being ``None`` for levels that must
    be pooled directly, else the coarsest other level in ``levels`` that is a multiple
    of ``level`` (the fewest bins to reduce).
    """
    plan = {}
    for n in sorted(set(levels), reverse=True):
        sources = [m for m in plan if m % n == 0]
        plan[n] = min(sources) if sources else None
    return plan
