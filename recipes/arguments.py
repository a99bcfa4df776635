"""argparse ``type=`` functions: a bad command-line value ends the parse with one line.

Each function takes the flag's text and returns its value, or raises
``argparse.ArgumentTypeError`` with what the flag takes, so that argparse exits with
status 2 and ``prog: error: argument --flag: takes ...; got '...'`` before any data
is loaded or any model built. argparse runs ``type`` on string defaults too, so a
default like ``"6,3,2,1"`` arrives parsed.

    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--levels", type=int_list(), default="6,3,2,1")
    p.add_argument("--dropout", type=float_range(0, 1, max_open=True), default=0.5)
    p.add_argument("--pretrained", type=existing_file)
    p.add_argument("--out", type=output_dir, default="outputs/run")

For a check that involves several flags, ``refuse(parser, flag, takes, got)`` gives
the same message through ``parser.error``.
"""

import argparse
import math
import os

__all__ = [
    "check",
    "choice_list",
    "existing_dir",
    "existing_file",
    "existing_path",
    "finite_float",
    "float_list",
    "float_range",
    "fraction",
    "int_list",
    "int_range",
    "nonnegative_float",
    "nonnegative_int",
    "output_dir",
    "output_file",
    "positive_float",
    "positive_int",
    "probability",
    "refuse",
    "seed",
]


def _bad(takes, text):
    return argparse.ArgumentTypeError(f"takes {takes}; got {text!r}")


def _interval(minimum, maximum, min_open, max_open):
    """``"a number in [0, 1)"``-style wording of the accepted range."""
    if minimum is None and maximum is None:
        return "a finite number"
    if maximum is None:
        return f"a finite number {'>' if min_open else '>='} {minimum:g}"
    if minimum is None:
        return f"a finite number {'<' if max_open else '<='} {maximum:g}"
    return f"a number in {'(' if min_open else '['}{minimum:g}, {maximum:g}{')' if max_open else ']'}"


def _int_range_text(minimum, maximum):
    if maximum is None:
        return "a whole number" if minimum is None else f"a whole number >= {minimum}"
    if minimum is None:
        return f"a whole number <= {maximum}"
    return f"a whole number from {minimum} to {maximum}"


def _to_int(text, takes):
    try:
        return int(str(text).strip())
    except ValueError:
        raise _bad(takes, text) from None


def _to_float(text, takes):
    try:
        value = float(str(text).strip())
    except ValueError:
        raise _bad(takes, text) from None
    if not math.isfinite(value):  # float() accepts 'nan' and 'inf'
        raise _bad(takes, text)
    return value


def int_range(minimum=None, maximum=None):
    """A ``type=`` for whole numbers in ``[minimum, maximum]`` (``None``: unbounded)."""
    takes = _int_range_text(minimum, maximum)

    def parse(text):
        value = _to_int(text, takes)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise _bad(takes, text)
        return value

    parse.__name__ = f"int_range({minimum}, {maximum})"
    return parse


def float_range(minimum=None, maximum=None, min_open=False, max_open=False):
    """A ``type=`` for finite numbers between ``minimum`` and ``maximum`` (``None``:
    unbounded); ``min_open``/``max_open`` leave that end out. NaN and infinities are refused."""
    takes = _interval(minimum, maximum, min_open, max_open)

    def parse(text):
        value = _to_float(text, takes)
        if minimum is not None and (value < minimum or (min_open and value == minimum)):
            raise _bad(takes, text)
        if maximum is not None and (value > maximum or (max_open and value == maximum)):
            raise _bad(takes, text)
        return value

    parse.__name__ = f"float_range({minimum}, {maximum})"
    return parse


positive_int = int_range(1)
nonnegative_int = int_range(0)
# What numpy's and Keras's seeding accepts.
seed = int_range(0, 2**32 - 1)
finite_float = float_range()
positive_float = float_range(0, min_open=True)
nonnegative_float = float_range(0)
probability = float_range(0, 1)
fraction = float_range(0, 1, max_open=True)


def _items(text, takes):
    items = [item.strip() for item in str(text).split(",")]
    if not all(items):
        raise _bad(takes, text)
    return items


def int_list(minimum=1, maximum=None, length=None):
    """A ``type=`` for comma-separated whole numbers (``"6,3,2,1"``), each in
    ``[minimum, maximum]``, ``length`` of them if given; returns a tuple."""
    count = f"{length} " if length else ""
    takes = f"{count}comma-separated whole numbers"
    if minimum is not None or maximum is not None:
        takes += ", each " + _int_range_text(minimum, maximum).removeprefix("a whole number ")
    check = int_range(minimum, maximum)

    def parse(text):
        items = _items(text, takes)
        if length and len(items) != length:
            raise _bad(takes, text)
        try:
            return tuple(check(item) for item in items)
        except argparse.ArgumentTypeError:
            raise _bad(takes, text) from None

    parse.__name__ = "int_list"
    return parse


def float_list(minimum=None, maximum=None, min_open=False, max_open=False, length=None):
    """A ``type=`` for comma-separated finite numbers, each as ``float_range`` takes
    them, ``length`` of them if given; returns a tuple."""
    count = f"{length} " if length else ""
    takes = f"{count}comma-separated numbers, each {_interval(minimum, maximum, min_open, max_open)}"
    check = float_range(minimum, maximum, min_open, max_open)

    def parse(text):
        items = _items(text, takes)
        if length and len(items) != length:
            raise _bad(takes, text)
        try:
            return tuple(check(item) for item in items)
        except argparse.ArgumentTypeError:
            raise _bad(takes, text) from None

    parse.__name__ = "float_list"
    return parse


def choice_list(choices):
    """A ``type=`` for one or more comma-separated names from ``choices``; returns a tuple."""
    takes = f"comma-separated names among {', '.join(choices)}"

    def parse(text):
        items = _items(text, takes)
        if any(item not in choices for item in items):
            raise _bad(takes, text)
        return tuple(items)

    parse.__name__ = "choice_list"
    return parse


def existing_file(text):
    """A ``type=`` for the path of a file that exists (a folder is refused)."""
    path = os.path.expanduser(str(text))
    if not os.path.isfile(path):
        what = "a folder" if os.path.isdir(path) else "not found"
        raise argparse.ArgumentTypeError(f"takes an existing file; got {text!r} ({what})")
    return path


def existing_dir(text):
    """A ``type=`` for the path of a folder that exists (a file is refused)."""
    path = os.path.expanduser(str(text))
    if not os.path.isdir(path):
        what = "a file" if os.path.exists(path) else "not found"
        raise argparse.ArgumentTypeError(f"takes an existing folder; got {text!r} ({what})")
    return path


def existing_path(text):
    """A ``type=`` for a file or a folder that exists."""
    path = os.path.expanduser(str(text))
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"takes an existing file or folder; got {text!r} (not found)")
    return path


def _blocking_file(path):
    """The first existing non-folder on the way to ``path`` (itself included), or ``None``."""
    path = os.path.abspath(path)
    while True:
        if os.path.exists(path):
            return None if os.path.isdir(path) else path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def output_dir(text):
    """A ``type=`` for a folder to write into: it may not exist yet, but neither it nor
    a folder above it may be a file."""
    path = os.path.expanduser(str(text))
    if not path:
        raise argparse.ArgumentTypeError("takes a folder to write into; got ''")
    blocking = _blocking_file(path)
    if blocking:
        raise argparse.ArgumentTypeError(f"takes a folder to write into; got {text!r} ({blocking} is a file)")
    return path


def output_file(text):
    """A ``type=`` for a file to write: not a folder, and in a folder that is or can be made."""
    path = os.path.expanduser(str(text))
    if not path or os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"takes a file to write; got {text!r}" + (" (a folder)" if path else ""))
    blocking = _blocking_file(os.path.dirname(os.path.abspath(path)))
    if blocking:
        raise argparse.ArgumentTypeError(f"takes a file to write; got {text!r} ({blocking} is a file)")
    return path


def refuse(parser, flag, takes, got):
    """``parser.error`` with the ``type=`` functions' wording, for checks across flags."""
    parser.error(f"argument {flag}: takes {takes}; got {got!r}")


def check(parser, flag, parse, value):
    """``parse(value)`` (one of these ``type=`` functions), or ``parser.error`` with its
    message: for a check that must wait until after the parse (a path checked only once
    the backend is known to fit, so that a test of parse_args needs no real files)."""
    try:
        return parse(value)
    except argparse.ArgumentTypeError as error:
        parser.error(f"argument {flag}: {error}")
