"""Where the ops meet a backend's run time: the one place in ``keras_spp.ops`` and
``keras_spp.layers`` that names a backend.

Everything else is written with ``keras.ops`` and runs unchanged on TensorFlow, JAX
and PyTorch. Two things cannot be: a value that is only known when the graph runs,
and what to do with a check on it.

* On JAX (eagerly or under ``jax.jit``), PyTorch (eagerly or under
  ``torch.compile``) and TensorFlow eagerly, every shape is a Python int when the op
  is called: checks on shapes raise ``ValueError`` then, and loops over sizes are
  Python loops (``jax.jit`` retraces, and XLA compiles, once per input shape).
* In a TensorFlow graph (``tf.function``, ``model.fit``, a SavedModel) a height or
  width may be ``None`` until run time. Only there do sizes need ``tf.while_loop`` and
  checks need ``tf.debugging.Assert`` (``InvalidArgumentError``); the functions below
  import TensorFlow only on that path.

Checks on values (NaN box coordinates, box indices outside the batch) raise
``ValueError`` where the values are concrete (eager calls on any backend), become
assertions in TensorFlow graphs, and elsewhere (``jax.jit``, ``torch.compile``, XLA,
which drops assertions) leave NaN in the affected rows, so that a bad result can
never pass for a valid one.
"""

import keras
import numpy as np


def is_static(*sizes):
    """Whether every size is a Python int (known when the op is traced or called)."""
    return all(isinstance(size, (int, np.integer)) for size in sizes)


def concrete(x):
    """``x`` as a numpy array where its values are known now, else ``None`` (graphs,
    ``jax.jit`` tracers, ``torch.compile``)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return x.numpy() if tf.executing_eagerly() and hasattr(x, "numpy") else None
    if backend == "jax":
        import jax

        return None if isinstance(x, jax.core.Tracer) else np.asarray(x)
    if backend == "torch":
        import torch

        if torch.compiler.is_compiling():
            return None
        return x.detach().cpu().numpy()
    return np.asarray(keras.ops.convert_to_numpy(x))


def is_eager(x):
    """Whether ops on ``x`` run one by one now, each result materialised (eager calls on
    any backend), rather than being traced into a graph or a compiled program."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return True


def in_tensorflow_graph():
    """Whether the op is being traced into a TensorFlow graph, where run-time
    assertions exist (XLA then drops them)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


def in_xla_context():
    """Whether a TensorFlow graph is being traced for XLA (``jit_compile=True`` here
    or in a function around it), where loop counts and sizes must follow from the
    shapes."""
    if not in_tensorflow_graph():
        return False
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def assert_all(checks, outputs):
    """TensorFlow graphs only: ``outputs`` (a tensor) behind ``tf.debugging.Assert``s of
    ``checks``, a list of ``(condition, message parts)``; so running them raises
    ``InvalidArgumentError`` with the message."""
    import tensorflow as tf

    ops = [tf.debugging.Assert(condition, data, summarize=16) for condition, data in checks]
    with tf.control_dependencies(ops):
        return tf.identity(outputs)


def pin_shape(x, shape, name):
    """TensorFlow graphs only: ``x`` with the static shape ``shape`` (``None`` for any
    size), checked when the graph runs (``tf.ensure_shape``: InvalidArgumentError).
    Under XLA, which compiles once per concrete input shape, the check fails the
    compile with the same error, so a wrong rank or width cannot broadcast quietly."""
    import tensorflow as tf

    return tf.ensure_shape(x, shape, name=name)


def assert_sizes(checks, x):
    """TensorFlow graphs only: ``x`` behind run-time checks on sizes, a list of
    ``(condition, name, message parts)`` whose conditions are computed from shapes.

    A graph raises ``InvalidArgumentError`` with the message (``tf.debugging.Assert``).
    XLA compiles assertions to nothing; but it compiles once per concrete input shape,
    where a condition on sizes is a constant. So each check also reshapes a vector of
    ``1 - condition`` elements to ``[0]`` (the op is named ``name``): the compile, and
    so the call, fails with ``InvalidArgumentError`` naming that op when a check fails,
    and the reshape is free when it holds. ``x`` (a small tensor every result depends
    on) carries the checks: adding their empty sums changes no value.
    """
    import tensorflow as tf

    asserts = [tf.debugging.Assert(ok, data, summarize=16) for ok, _, data in checks]
    with tf.control_dependencies(asserts):
        guards = [
            tf.reshape(tf.zeros(tf.reshape(1 - tf.cast(ok, "int32"), [1]), x.dtype), [0], name=name)
            for ok, name, _ in checks
        ]
        return x + tf.reduce_sum(tf.concat(guards, 0))


def doubling_levels(x, count, step):
    """``[count, *x.shape]``: ``x``, then ``step(current, k)`` applied ``count - 1`` times.

    Eagerly (any backend) and on PyTorch this is a Python loop. Traced (a TensorFlow
    graph, ``jax.jit``) it is a loop in the program: a ``tf.while_loop`` into a
    ``TensorArray`` (with ``maximum_iterations``, which lets XLA size the gradient's
    accumulators), or ``jax.lax.fori_loop``. The loop keeps the levels a materialised
    table: unrolled, with static sizes, XLA fused the shifted maxima into the gathers
    that read the table and recomputed them for every gathered value (the RoI op ran
    1342 ms forward under XLA with static shapes against 424 ms forward+backward,
    and 7x slower under ``jax.jit`` than TensorFlow's XLA with dynamic shapes).
    A tensor ``count`` (unknown sizes) only arises in a TensorFlow graph.
    """
    backend = keras.backend.backend()
    if backend == "jax" and isinstance(x, __import__("jax").core.Tracer) and int(count) > 1:
        return _jax_doubling(x, int(count), step)
    if is_static(count) and not in_tensorflow_graph():
        levels = [x]
        for k in range(int(count) - 1):
            levels.append(step(levels[-1], k))
        return keras.ops.stack(levels)
    import tensorflow as tf

    stack = tf.TensorArray(x.dtype, size=count, element_shape=x.shape)

    def body(k, current, stack):
        return k + 1, step(current, k), stack.write(k, current)

    _, _, stack = tf.while_loop(lambda k, *_: k < count, body, (tf.constant(0), x, stack), maximum_iterations=count)
    return stack.stack()


def _jax_doubling(x, count, step):
    import jax

    stack = jax.numpy.zeros((count, *x.shape), x.dtype).at[0].set(x)

    def body(k, carry):
        current, stack = carry
        current = step(current, k)
        return current, stack.at[k + 1].set(current)

    return jax.lax.fori_loop(0, count - 1, body, (x, stack))[1]


def reduce_max(x, axis):
    """``keras.ops.max(x, axis)`` that also takes tensors with a zero-size dimension
    outside ``axis`` (no boxes, an empty batch), which ``keras.ops.max`` refuses on
    TensorFlow (eagerly) and PyTorch. On every backend ties share the gradient."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.reduce_max(x, axis=axis)
    if backend == "torch":
        return keras.ops.amax(x, axis=axis)
    return keras.ops.max(x, axis=axis)


def max_pool_blocks(x, k):
    """``[N, n, n, C]`` -> ``[N, n/k, n/k, C]``: the max of each ``k x k`` block.

    Forward: the backend's max-pool kernel; under XLA on a CPU a max over two axes of
    a 6-D reshape ran 3x slower than it. Backward: reduce-max's rule (ties share the
    gradient) in elementwise ops where the backend takes a custom gradient
    (TensorFlow, JAX), since XLA's max-pool gradient (select-and-scatter) is slow on
    a CPU; PyTorch's autograd otherwise (its max-pool gradient gives a tie to one
    cell, the same total wherever the tied values come from one cell)."""
    ops = keras.ops
    if keras.backend.backend() == "torch":
        return ops.max_pool(x, k, k, "valid")

    def repeat(blocks):
        return ops.repeat(ops.repeat(blocks, k, axis=1), k, axis=2)

    @ops.custom_gradient
    def pool(inputs):
        pooled = ops.max_pool(inputs, k, k, "valid")

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            wins = ops.cast(ops.equal(inputs, repeat(pooled)), inputs.dtype)
            ties = ops.average_pool(wins, k, k, "valid") * float(k * k)
            return wins * repeat(upstream / ties)

        return pooled, grad

    return pool(x)
