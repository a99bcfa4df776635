"""Local response normalisation across channels (AlexNet, ZF-5, Overfeat)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spp")
class LocalResponseNormalization(keras.layers.Layer):
    """``x / (bias + alpha / size * sum over ``size`` neighbouring channels of x**2)**beta``.

    The parameters follow Caffe and the papers (``size`` channels in the window,
    ``alpha`` divided by ``size``). On TensorFlow this runs TensorFlow's kernel, which
    XLA compiles and which takes the window radius and an undivided alpha (the layer
    converts); on JAX and PyTorch the same formula in ``keras.ops``. Computed in
    float32 under mixed precision, since squares overflow float16.

    Example:

    >>> import numpy as np
    >>> tuple(LocalResponseNormalization()(np.ones((1, 4, 4, 8), "float32")).shape)
    (1, 4, 4, 8)
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, bias=2.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"`size` must be a positive odd integer (channels in the window); got {size!r}.")
        self.size, self.alpha, self.beta, self.bias = size, float(alpha), float(beta), float(bias)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if keras.backend.backend() == "tensorflow":
            # TensorFlow's fused kernel (XLA compiles it too); the same formula as below.
            import tensorflow as tf

            y = tf.nn.local_response_normalization(
                x, depth_radius=self.size // 2, bias=self.bias, alpha=self.alpha / self.size, beta=self.beta
            )
        else:
            y = x / (self.bias + self.alpha / self.size * self._window_sum(ops.square(x))) ** self.beta
        return ops.cast(y, inputs.dtype)

    def _window_sum(self, squares):
        """The sum over the ``size`` channels centred on each channel (zeros past the ends)."""
        radius, channels = self.size // 2, squares.shape[-1]
        padded = ops.pad(squares, [(0, 0)] * (len(squares.shape) - 1) + [(radius, radius)])
        return sum(padded[..., offset : offset + channels] for offset in range(self.size))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, alpha=self.alpha, beta=self.beta, bias=self.bias)
        return config
