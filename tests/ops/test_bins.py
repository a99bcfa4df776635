import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from keras_spp.ops import bins
from tests.ops import pooling_reference as ref


@given(a=st.integers(1, 300), n=st.integers(1, 12))
def test_adaptive_edges_match_formula_and_cover_every_cell(a, n):
    start, end = bins.bin_edges(a, n, "adaptive")
    expected = ref.adaptive_bins(a, n)
    assert list(zip(start.numpy().tolist(), end.numpy().tolist())) == expected
    assert all(e > s for s, e in expected)
    covered = set().union(*(range(s, e) for s, e in expected))
    assert covered == set(range(a))


@pytest.mark.parametrize(
    "a, n, valid",
    [
        (13, 6, True),
        (10, 6, False),
        (5, 3, False),
        (8, 6, False),
        (29, 6, False),
        (2, 3, False),
        (12, 6, True),
        (6, 6, True),
        (7, 1, True),
    ],
)
def test_paper_rule_validity(a, n, valid):
    assert bins.paper_rule_is_valid(a, n) is valid


def test_paper_rule_equals_adaptive_at_13():
    # REFERENCE: at a = 13 the original code's bins equal the paper's windows.
    for n in (6, 3, 2, 1):
        assert ref.paper_bins(13, n) == ref.adaptive_bins(13, n)
        start, end = bins.bin_edges(13, n, "paper")
        assert list(zip(start.numpy().tolist(), end.numpy().tolist())) == ref.paper_bins(13, n)


@given(a=st.integers(1, 200), n=st.integers(1, 8))
def test_paper_validity_is_the_count_of_sliding_windows(a, n):
    win, stride = math.ceil(a / n), a // n
    count = (a - win) // stride + 1 if stride else None
    assert bins.paper_rule_is_valid(a, n) == (count == n)


@given(x=st.integers(1, 2**23))
def test_floor_log2_is_exact(x):
    assert int(bins.floor_log2(tf.constant(x))) == x.bit_length() - 1


def test_derivation_plan_uses_coarsest_multiple():
    assert bins.derivation_plan((6, 3, 2, 1)) == {6: None, 3: 6, 2: 6, 1: 2}
    assert bins.derivation_plan((4, 3, 2, 1)) == {4: None, 3: None, 2: 4, 1: 2}
    assert bins.derivation_plan((5,)) == {5: None}


@given(a=st.integers(1, 100), m=st.integers(1, 4), k=st.integers(1, 4))
def test_coarse_bins_are_unions_of_fine_bins(a, m, k):
    fine, coarse = ref.adaptive_bins(a, m * k), ref.adaptive_bins(a, m)
    for j, (s, e) in enumerate(coarse):
        parts = fine[j * k : (j + 1) * k]
        assert parts[0][0] == s and parts[-1][1] == e
        assert all(p[1] >= q[0] for p, q in zip(parts, parts[1:]))


@pytest.mark.parametrize("bad", [(), (0,), (6, -1), (2.0,), ("6",), None, (True,)])
def test_bad_levels_name_the_argument(bad):
    with pytest.raises(ValueError, match="`levels`"):
        bins.validate_levels(bad)


def test_numpy_integer_levels_are_accepted():
    assert bins.validate_levels(np.array([6, 3])) == (6, 3)
