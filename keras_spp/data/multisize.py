"""Multi-size training (the paper's section 3.1): one input size per epoch.

``SizeSchedule.size_for_epoch`` is a pure function of the epoch number, written
in TensorFlow ops so that the training pipeline computes each epoch's size itself:
no callback has to run before tf.data prefetches, and a run resumed from a backup
sees exactly the sizes it would have seen. Every batch of an epoch has one shape,
so ``model.fit`` traces (and with XLA compiles) once per size, never per batch.
"""

import keras
import tensorflow as tf

MODES = ("alternate", "random")


class SizeSchedule:
    """The training input size of each epoch.

    Args:
      sizes: ``mode="alternate"``: sizes to cycle through, one whole epoch each (the
        paper alternates 224 and 180; one size means single-size training).
        ``mode="random"``: ``(low, high)``, a size drawn uniformly from
        ``[low, high]`` per epoch (the paper's variant).
      mode: ``"alternate"`` or ``"random"``.
      seed: seed of the random draws.

    Example:

    >>> schedule = SizeSchedule((224, 180))
    >>> [schedule.size_for_epoch(e) for e in range(4)]
    [224, 180, 224, 180]
    """

    def __init__(self, sizes=(224, 180), mode="alternate", seed=0):
        sizes = tuple(int(s) for s in sizes)
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}; got {mode!r}.")
        if not sizes or min(sizes) < 1 or (mode == "random" and (len(sizes) != 2 or sizes[0] > sizes[1])):
            raise ValueError(
                "`sizes` must be positive sizes (alternate) or a (low, high) pair with "
                f"low <= high (random); got {sizes!r}."
            )
        self.sizes, self.mode, self.seed = sizes, mode, int(seed)

    def size_tensor(self, epoch):
        """The size of ``epoch`` (an int64 scalar tensor) as an int32 tensor."""
        epoch = tf.cast(epoch, tf.int64)
        if self.mode == "alternate":
            return tf.gather(tf.constant(self.sizes, tf.int32), epoch % len(self.sizes))
        low, high = self.sizes
        seed = tf.stack([tf.constant(self.seed, tf.int64), epoch])
        return tf.random.stateless_uniform([], seed, low, high + 1, dtype=tf.int32)

    def size_for_epoch(self, epoch):
        return int(self.size_tensor(tf.constant(epoch, tf.int64)))


class LogInputSize(keras.callbacks.Callback):
    """Adds ``input_size`` to each epoch's logs (History, CSVLogger, TensorBoard)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["input_size"] = self.schedule.size_for_epoch(epoch)
