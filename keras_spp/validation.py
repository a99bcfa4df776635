"""Argument checks shared by the library: a ``ValueError`` that says what was wrong
and what is accepted, instead of a failure deep inside TensorFlow or OpenCV.

Names are written in backticks (``min_side`` as `` `min_side` ``), except
command-line flags (``--top-k``), which are written as typed.
"""

import math
import numbers

import numpy as np


def positive_int(name, value, allow_zero=False, *, minimum=None, maximum=None, none=None, hint=None):
    """``value`` as a Python ``int`` if it is an integer (``int`` or a NumPy integer,
    never a ``bool``) of at least 1 (0 with ``allow_zero``; ``minimum`` if given) and
    at most ``maximum``; else ``ValueError`` naming ``name``.

    ``none``: ``None`` is accepted too (and returned), meaning this (said in the
    message); ``hint``: what the number counts, or an example, in the message.

    >>> positive_int("steps", 3)
    3
    >>> positive_int("seed", -1, allow_zero=True)
    Traceback (most recent call last):
    ...
    ValueError: `seed` must be a non-negative integer; got -1.
    >>> positive_int("min_side", True, minimum=8, hint="pixels")
    Traceback (most recent call last):
    ...
    ValueError: `min_side` must be an integer >= 8 (pixels); got True.
    >>> positive_int("--max-side", 0, none="search at full size")
    Traceback (most recent call last):
    ...
    ValueError: --max-side must be a positive integer or None (search at full size); got 0.
    """
    if value is None and none is not None:
        return None
    low = (0 if allow_zero else 1) if minimum is None else minimum
    if is_integer(value) and low <= value and (maximum is None or value <= maximum):
        return int(value)
    if maximum is not None:
        accepted = f"an integer in [{low}, {maximum}]"
    else:
        accepted = {1: "a positive integer", 0: "a non-negative integer"}.get(low, f"an integer >= {low}")
    raise ValueError(
        f"{_named(name)} must be {accepted}{f' ({hint})' if hint else ''}"
        f"{f' or None ({none})' if none is not None else ''}; got {value!r}."
    )


def is_integer(value):
    """Whether ``value`` is an ``int`` or a NumPy integer, and not a ``bool``.

    >>> [is_integer(v) for v in (3, np.int64(3), 3.0, True)]
    [True, True, False, False]
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value, finite=True):
    """Whether ``value`` is a real number (Python's or NumPy's, not a ``bool``), not
    NaN, and finite unless ``finite=False`` (then ``inf`` and ``-inf`` pass).

    >>> [is_number(v) for v in (0.5, np.float32(2), float("inf"), float("nan"), True, "1")]
    [True, True, False, False, False, False]
    >>> is_number(float("-inf"), finite=False)
    True
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        return False
    return math.isfinite(value) if finite else not math.isnan(value)


def _named(name):
    return name if name.startswith("-") else f"`{name}`"
