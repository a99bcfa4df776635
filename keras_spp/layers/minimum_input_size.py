"""A pass-through layer that refuses images too small for the network behind it."""

import keras
from keras import ops

from keras_spp.ops import runtime
from keras_spp.validation import positive_int


@keras.saving.register_keras_serializable(package="keras_spp")
class MinimumInputSize(keras.layers.Layer):
    """Passes ``[batch, height, width, channels]`` images through when both sides are at
    least ``min_side`` pixels, and raises otherwise.

    Why: a pooling window larger than its input is not always an error in
    TensorFlow. On the CPU (oneDNN, TF 2.21) a 3 x 3 max pool of a 1 x 1 map kills
    the process with SIGFPE, and a map just too small can come out as garbage. So
    a backbone states what it needs and checks it first: a ``ValueError`` where the
    size is known when the layer is called (eager calls, static shapes), an
    ``InvalidArgumentError`` from an assertion in TensorFlow graphs with unknown
    sizes (``tf.function``, ``model.predict``, SavedModels). On JAX and PyTorch the
    sizes are always known, so it is always a ``ValueError``. Under XLA the assertion is
    dropped, as XLA drops all assertions, but XLA compiles for each concrete shape
    and its shape checks refuse such sizes at compile time.

    Example:

    >>> import numpy as np
    >>> check = MinimumInputSize(29, name="check_size")
    >>> tuple(check(np.zeros((1, 32, 40, 3), "float32")).shape)
    (1, 32, 40, 3)
    """

    def __init__(self, min_side, **kwargs):
        super().__init__(**kwargs)
        self.min_side = positive_int("min_side", min_side, hint="pixels")

    def _message(self, size):
        return (
            f"{self.name}: the network needs images of at least {self.min_side} x {self.min_side} "
            f"pixels (height and width each at least {self.min_side}); got (height, width) {size}"
        )

    def call(self, inputs):
        static = tuple(inputs.shape[1:3])
        if any(side is not None and side < self.min_side for side in static):
            raise ValueError(self._message(static) + ".")
        if all(side is not None for side in static):
            return inputs
        # Sizes unknown until run time: only in TensorFlow graphs (keras_spp.ops.runtime).
        size = ops.shape(inputs)[1:3]
        return runtime.assert_all(
            [(ops.all(ops.stack(size) >= self.min_side), [self._message("below"), *size])], inputs
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(min_side=self.min_side)
        return config
