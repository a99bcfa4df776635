"""Local response normalisation across channels (AlexNet, ZF-5, Overfeat)."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_spp")
class LocalResponseNormalization(keras.layers.Layer):
    """``x / (bias + alpha / size * sum over ``size`` neighbouring channels of x**2)**beta``.

    The parameters follow Caffe and the papers (``size`` channels in the window,
    ``alpha`` divided by ``size``); TensorFlow's kernel, which XLA compiles, takes
    the window radius and an undivided alpha, and this layer converts. Computed in
    float32 under mixed precision, since squares overflow float16.

    Example:

    >>> import numpy as np
    >>> LocalResponseNormalization()(np.ones((1, 4, 4, 8), "float32")).shape
    TensorShape([1, 4, 4, 8])
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, bias=2.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"`size` must be a positive odd integer (channels in the window); got {size!r}.")
        self.size, self.alpha, self.beta, self.bias = size, float(alpha), float(beta), float(bias)

    def call(self, inputs):
        x = tf.cast(inputs, tf.float32)
        y = tf.nn.local_response_normalization(
            x,
            depth_radius=self.size // 2,
            bias=self.bias,
            alpha=self.alpha / self.size,
            beta=self.beta,
        )
        return tf.cast(y, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, alpha=self.alpha, beta=self.beta, bias=self.bias)
        return config
