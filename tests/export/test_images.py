import keras
import numpy as np
import pytest

from export import images
from keras_spp.models import backbone


def _valid_net(kernel, pool, stride):
    """conv (valid, ``kernel``) then max pool (valid, ``pool``/``stride``): needs
    ``s - kernel + 1 >= pool``, so ``s >= kernel + pool - 1``."""
    return keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Conv2D(2, kernel),
            keras.layers.MaxPooling2D(pool, stride),
            keras.layers.GlobalMaxPooling2D(),
        ]
    )


@pytest.mark.parametrize("kernel, pool, stride", [(5, 3, 2), (1, 2, 2), (7, 1, 1), (3, 4, 1)])
def test_smallest_side_matches_the_arithmetic_of_valid_layers(kernel, pool, stride):
    net = _valid_net(kernel, pool, stride)
    assert images.smallest_side(lambda x: net(x, training=False), 64) == kernel + pool - 1


def test_smallest_side_of_zf5_runs_there_and_survives_the_sizes_below():
    # Running ZF-5 eagerly on sizes below its smallest kills the process with
    # SIGFPE (oneDNN max pool on an empty map); the search must only trace them.
    net = backbone("zf5", width=0.125)
    s = images.smallest_side(lambda x: net(x, training=False), 64)
    # conv1 7x7/2 "same": ceil(s/2) = a; pool 3x3/2: b = (a-3)//2 + 1, padded by 2;
    # conv2 5x5/2: c = (b-3)//2 + 1; pool 3x3/2 needs c >= 3, so b >= 7, a >= 15, s >= 29.
    assert s == 29
    out = net(np.zeros((1, s, s, 3), np.float32), training=False).numpy()
    assert out.size > 0 and np.isfinite(out).all()


def test_smallest_side_names_the_upper_bound_when_nothing_fits():
    net = _valid_net(9, 3, 2)
    with pytest.raises(ValueError, match="cannot take even a 8x8 image"):
        images.smallest_side(lambda x: net(x, training=False), 8)
