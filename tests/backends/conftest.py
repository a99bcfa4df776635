"""Helpers for tests that run on every Keras backend.

The suite runs this folder once per backend (``scripts/run.sh test``):
``KERAS_BACKEND=jax`` and ``=torch`` besides TensorFlow. Each helper does one thing
the backends spell differently: a gradient, a compiled function, a native tensor.
"""

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def is_native(x):
    """Whether ``x`` is the backend's own tensor type (not a TensorFlow tensor on JAX)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return isinstance(x, tf.Tensor)
    if BACKEND == "jax":
        import jax

        return isinstance(x, jax.Array)
    import torch

    return isinstance(x, torch.Tensor)


def gradient(fn, x, weights):
    """d(sum(weights * fn(x))) / dx as numpy, by the backend's own autodiff."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn(x) * weights)
        return tape.gradient(loss, x).numpy()
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        return np.asarray(jax.grad(lambda v: jnp.sum(fn(v) * weights))(jnp.asarray(x)))
    import torch

    v = torch.tensor(x, requires_grad=True)
    (fn(v) * torch.tensor(weights)).sum().backward()
    return v.grad.numpy()


def compiled(fn):
    """``fn`` compiled the backend's way: XLA for TensorFlow (``jit_compile``),
    ``jax.jit``, ``torch.compile``."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    import torch

    return torch.compile(fn)


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)
