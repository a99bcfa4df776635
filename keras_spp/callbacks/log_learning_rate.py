"""The optimizer's learning rate in each epoch's logs, for schedules as for constants."""

import keras


class LogLearningRate(keras.callbacks.Callback):
    """Adds ``learning_rate`` (the rate of the epoch's last step) to each epoch's logs.

    Keras's ``ReduceLROnPlateau`` logs the rate it controls; with a
    ``keras.optimizers.schedules.LearningRateSchedule`` nothing does, and History,
    CSVLogger and TensorBoard would not show the schedule. Put it before them.

    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.1, 0.01])
    >>> model.compile(keras.optimizers.SGD(schedule), "mse")
    >>> history = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), batch_size=1, epochs=2,
    ...                     callbacks=[LogLearningRate()], verbose=0)
    >>> [round(v, 4) for v in history.history["learning_rate"]]
    [0.01, 0.01]
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
