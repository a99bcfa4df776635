import numpy as np
import pytest

from keras_spp.validation import is_integer, is_number, positive_int


def test_integers_pass_as_python_ints():
    assert positive_int("n", 3) == 3 and type(positive_int("n", np.int64(3))) is int
    assert positive_int("n", 0, allow_zero=True) == 0
    assert positive_int("n", 8, minimum=8) == 8 and positive_int("n", 5, maximum=5) == 5
    assert positive_int("n", None, none="all of them") is None


@pytest.mark.parametrize("value", [0, -1, 2.0, True, np.bool_(True), "3", None, float("nan")])
def test_what_is_not_a_positive_integer_is_refused_with_what_is_accepted(value):
    with pytest.raises(ValueError, match=rf"^`count` must be a positive integer \(windows\); got {re_repr(value)}\.$"):
        positive_int("count", value, hint="windows")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"allow_zero": True}, "`n` must be a non-negative integer; got -1."),
        ({"minimum": 16}, "`n` must be an integer >= 16; got -1."),
        ({"allow_zero": True, "maximum": 9}, "`n` must be an integer in [0, 9]; got -1."),
        ({"none": "keep all"}, "`n` must be a positive integer or None (keep all); got -1."),
    ],
)
def test_the_message_says_what_is_accepted(kwargs, message):
    with pytest.raises(ValueError) as error:
        positive_int("n", -1, **kwargs)
    assert str(error.value) == message


def test_flags_are_named_as_typed():
    with pytest.raises(ValueError, match=r"^--top-k must be a positive integer; got 0\.$"):
        positive_int("--top-k", 0)
    with pytest.raises(ValueError, match=r"^`n` must be an integer in \[0, 9\]; got 10\.$"):
        positive_int("n", 10, allow_zero=True, maximum=9)


def test_predicates():
    assert is_integer(np.uint8(1)) and not is_integer(np.bool_(False)) and not is_integer(1.0)
    assert is_number(np.float16(0.5)) and is_number(3) and not is_number(np.inf) and not is_number(None)
    assert is_number(-np.inf, finite=False) and not is_number(np.nan, finite=False)


def re_repr(value):
    import re

    return re.escape(repr(value))
