"""Keras layer over ``keras_spp.ops.spatial_pyramid_pool``."""

import keras

from keras_spp.ops import bins
from keras_spp.ops.spatial_pyramid_pool import POOLINGS, pyramid_output_dim, spatial_pyramid_pool


@keras.saving.register_keras_serializable(package="keras_spp")
class SpatialPyramidPooling(keras.layers.Layer):
    """Spatial pyramid pooling: a feature map of any size to a fixed-length vector.

    Input ``[batch, height, width, channels]`` with height and width free to change
    between batches (``None`` in the model's input shape); output
    ``[batch, channels * sum(n * n for n in levels)]``, levels concatenated in the
    given order, each flattened row-major as ``[n, n, channels]``. Bin ``i`` of ``n``
    over ``a`` cells is ``[floor(i*a/n), ceil((i+1)*a/n))`` (``bin_rule="adaptive"``)
    or the paper's window ``ceil(a/n)`` / stride ``floor(a/n)`` (``"paper"``, which
    rejects sizes it cannot split into ``n`` bins). Works on every Keras backend
    (TensorFlow, JAX, PyTorch: it returns the backend's tensors), eagerly, in
    ``tf.function``, under XLA (``jit_compile=True``) and ``jax.jit``, with mixed
    precision, in ``.keras`` files (saved on one backend, loaded on another) and in
    SavedModels exported with ``None`` spatial dimensions.

    Args:
      levels: bins per side of each pyramid level; the paper's (6, 3, 2, 1).
      pooling: ``"max"`` (the paper) or ``"avg"``.
      bin_rule: ``"adaptive"`` or ``"paper"``.

    Example:

    >>> import numpy as np
    >>> inputs = keras.Input((None, None, 3))
    >>> x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    >>> x = SpatialPyramidPooling(levels=(4, 2, 1))(x)
    >>> model = keras.Model(inputs, keras.layers.Dense(10)(x))
    >>> tuple(model(np.zeros((2, 64, 80, 3))).shape), tuple(model(np.zeros((1, 33, 21, 3))).shape)
    ((2, 10), (1, 10))
    """

    def __init__(self, levels=(6, 3, 2, 1), pooling="max", bin_rule="adaptive", **kwargs):
        super().__init__(**kwargs)
        self.levels = bins.validate_levels(levels)
        self.pooling = bins.validate_choice(pooling, POOLINGS, "pooling")
        self.bin_rule = bins.validate_choice(bin_rule, bins.BIN_RULES, "bin_rule")
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        return spatial_pyramid_pool(inputs, self.levels, self.pooling, self.bin_rule)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "SpatialPyramidPooling expects input of rank 4 [batch, height, width, "
                f"channels]; got shape {tuple(input_shape)}."
            )
        return (input_shape[0], pyramid_output_dim(input_shape[3], self.levels))

    def get_config(self):
        config = super().get_config()
        config.update(levels=list(self.levels), pooling=self.pooling, bin_rule=self.bin_rule)
        return config
