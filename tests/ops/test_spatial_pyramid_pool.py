import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_spp.ops import bins, spatial_pyramid_pool
from tests.ops import pooling_reference as ref

LEVELS = st.lists(st.integers(1, 7), min_size=1, max_size=4, unique=True).map(tuple)


@given(
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    levels=LEVELS,
    pooling=st.sampled_from(["max", "avg"]),
    seed=st.integers(0, 2**31),
)
def test_adaptive_matches_reference(h, w, levels, pooling, seed):
    x = np.random.default_rng(seed).normal(size=(2, h, w, 3)).astype(np.float32)
    got = spatial_pyramid_pool(x, levels, pooling).numpy()
    np.testing.assert_allclose(got, ref.spatial_pyramid_pool(x, levels, pooling), rtol=1e-5, atol=1e-6)


@given(
    x=hnp.arrays(np.float32, (1, 7, 9, 2), elements=st.sampled_from([0.0, 1.0, -2.0, 3.5])),
    levels=LEVELS,
)
def test_ties_and_repeated_values(x, levels):
    got = spatial_pyramid_pool(x, levels).numpy()
    np.testing.assert_array_equal(got, ref.spatial_pyramid_pool(x, levels))


@given(h=st.integers(1, 40), w=st.integers(1, 40), pooling=st.sampled_from(["max", "avg"]))
def test_paper_rule_matches_reference_where_valid(h, w, pooling):
    levels = tuple(n for n in (6, 4, 3, 2, 1) if bins.paper_rule_is_valid(h, n) and bins.paper_rule_is_valid(w, n))
    if not levels:
        return
    x = np.random.default_rng(h * 100 + w).normal(size=(1, h, w, 2)).astype(np.float32)
    got = spatial_pyramid_pool(x, levels, pooling, "paper").numpy()
    np.testing.assert_allclose(got, ref.spatial_pyramid_pool(x, levels, pooling, "paper"), rtol=1e-5, atol=1e-6)


def test_output_layout_is_level_then_row_column_channel():
    x = np.arange(4 * 4 * 2, dtype=np.float32).reshape(1, 4, 4, 2)
    out = spatial_pyramid_pool(x, (2, 1)).numpy()[0]
    # Level 2, bin (0, 1) covers rows 0-1, columns 2-3: max at (1, 3).
    assert out[2:4].tolist() == x[0, 1, 3].tolist()
    assert out[8:10].tolist() == x[0, 3, 3].tolist()
    assert out.shape == (2 * (4 + 1),)


def test_paper_rule_rejects_the_180_size():
    # 180 px through ZF-5 gives a 10x10 conv5: 9 windows for n = 6.
    with pytest.raises(ValueError, match=r"height of 10 into \[6\] bins"):
        spatial_pyramid_pool(tf.zeros([1, 10, 13, 4]), (6, 3, 2, 1), bin_rule="paper")


def test_paper_rule_error_at_run_time_and_nan_under_xla():
    f = tf.function(
        lambda x: spatial_pyramid_pool(x, (6,), bin_rule="paper"),
        input_signature=[tf.TensorSpec([None, None, None, 2])],
    )
    assert f(tf.ones([1, 13, 13, 2])).shape == (1, 72)
    with pytest.raises(tf.errors.InvalidArgumentError, match="cannot split"):
        f(tf.ones([1, 10, 13, 2]))
    fx = tf.function(f.python_function, jit_compile=True, input_signature=f.input_signature)
    assert np.isnan(fx(tf.ones([1, 10, 13, 2])).numpy()).all()
    assert np.isfinite(fx(tf.ones([1, 13, 13, 2])).numpy()).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x": tf.zeros([3, 4, 2])}, "rank-4"),
        ({"x": tf.zeros([1, 0, 4, 2])}, "height 0"),
        ({"x": tf.zeros([1, 4, 0, 2])}, "width 0"),
        ({"levels": (0,)}, "`levels`"),
        ({"levels": [2.5]}, "`levels`"),
        ({"pooling": "sum"}, "`pooling`"),
        ({"bin_rule": "floor"}, "`bin_rule`"),
        ({"x": tf.zeros([1, 4, 4, 2], tf.int32)}, "floating"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(kwargs, match):
    x = kwargs.pop("x", tf.zeros([1, 4, 4, 2]))
    with pytest.raises(ValueError, match=match):
        spatial_pyramid_pool(x, **kwargs)


def test_zero_size_at_run_time_is_an_error():
    f = tf.function(lambda x: spatial_pyramid_pool(x), input_signature=[tf.TensorSpec([None, None, None, 2])])
    with pytest.raises(tf.errors.InvalidArgumentError, match="height and width must be >= 1"):
        f(tf.zeros([1, 0, 5, 2]))


def test_empty_batch_gives_empty_output():
    assert spatial_pyramid_pool(tf.zeros([0, 5, 6, 3])).shape == (0, 150)


@given(h=st.integers(1, 15), w=st.integers(1, 15), levels=LEVELS, seed=st.integers(0, 2**31))
def test_gradient_goes_to_the_argmax_cell(h, w, levels, seed):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.permutation(2 * h * w * 3).reshape(2, h, w, 3).astype(np.float32))
    out_dim = 3 * sum(n * n for n in levels)
    weights = rng.normal(size=(2, out_dim)).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = spatial_pyramid_pool(x, levels)
        loss = tf.reduce_sum(y * weights)
    got = tape.gradient(loss, x).numpy()
    expected = ref.max_pool_gradient(x.numpy(), weights, levels, lambda r: (r, 0, h, 0, w))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_avg_gradient_matches_numeric():
    x = tf.random.stateless_normal([1, 5, 7, 2], seed=[1, 2], dtype=tf.float64)
    theoretical, numerical = tf.test.compute_gradient(lambda t: spatial_pyramid_pool(t, (3, 2), "avg"), [x])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


def test_one_function_many_sizes_with_and_without_xla():
    sig = [tf.TensorSpec([None, None, None, 4])]
    graph = tf.function(spatial_pyramid_pool, input_signature=sig)
    xla = tf.function(spatial_pyramid_pool, input_signature=sig, jit_compile=True)
    rng = np.random.default_rng(0)
    for shape in [(2, 13, 13, 4), (1, 10, 10, 4), (3, 1, 1, 4), (1, 43, 58, 4), (2, 3, 40, 4)]:
        x = rng.normal(size=shape).astype(np.float32)
        expected = ref.spatial_pyramid_pool(x, (6, 3, 2, 1))
        np.testing.assert_allclose(graph(x).numpy(), expected, rtol=1e-6)
        np.testing.assert_allclose(xla(x).numpy(), expected, rtol=1e-6)
    assert len(graph._list_all_concrete_functions()) == 1


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float64])
def test_other_float_dtypes(dtype):
    x = np.random.default_rng(3).normal(size=(1, 9, 11, 3)).astype(np.float32)
    got = spatial_pyramid_pool(tf.cast(x, dtype), (4, 2, 1))
    assert got.dtype == dtype
    expected = ref.spatial_pyramid_pool(tf.cast(tf.cast(x, dtype), tf.float32).numpy(), (4, 2, 1))
    np.testing.assert_allclose(tf.cast(got, tf.float64).numpy(), expected, rtol=1e-2)
