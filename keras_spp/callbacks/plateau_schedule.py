"""Keras's rate drop on a plateau, and a stop once training has converged, both
able to resume: their counters come back from the run's CSV history."""

import csv
import math
import os

import keras


class PlateauSchedule(keras.callbacks.Callback):
    """Multiplies the learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs (``keras.callbacks.ReduceLROnPlateau``'s rule, without its
    cooldown) and, with ``stop_patience``, stops training when it has not improved for
    that many epochs (converged: a drop or more has not helped).

    Why not Keras's two callbacks: a run resumed from a backup starts them with empty
    counters, so an interrupted run would drop its rate and stop later than the
    uninterrupted one. Here the counters are replayed from ``history_csv`` (the
    ``CSVLogger(append=True)`` file of the same run) when training begins; the rate
    itself comes back with the optimizer. Put this before the CSV logger: it writes
    ``learning_rate`` (the rate the epoch trained at) into each epoch's logs.

    An improvement is a value below ``best - min_delta``; a non-finite value never is.
    With ``start_gain``, epochs count towards neither patience until the best value
    has fallen ``start_gain`` (a fraction) below the first epoch's: a network still at
    chance level is not on a plateau. (Without it, a mnist-scenes run had its rate
    cut at epoch 4, before it had learned anything.)

    >>> import tempfile, numpy as np
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.0), "mse")  # rate 0: the loss stays put
    >>> plateau = PlateauSchedule(tempfile.mktemp(), monitor="loss", patience=1, stop_patience=3)
    >>> history = model.fit(np.ones((4, 1)), np.ones((4, 1)), epochs=10, callbacks=[plateau], verbose=0)
    >>> len(history.history["loss"]), plateau.stopped_epoch
    (4, 3)
    """

    def __init__(
        self,
        history_csv,
        monitor="val_loss",
        factor=0.1,
        patience=2,
        stop_patience=None,
        min_delta=1e-4,
        start_gain=0.0,
    ):
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ValueError(f"`factor` must lie in (0, 1): the rate is multiplied by it; got {factor!r}.")
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"`patience` must be a positive number of epochs; got {patience!r}.")
        if stop_patience is not None and (not isinstance(stop_patience, int) or stop_patience < 1):
            raise ValueError(f"`stop_patience` must be a positive number of epochs or None; got {stop_patience!r}.")
        if not 0.0 <= start_gain < 1.0:
            raise ValueError(f"`start_gain` must be a fraction in [0, 1); got {start_gain!r}.")
        self.history_csv, self.monitor, self.factor, self.start_gain = history_csv, monitor, float(factor), start_gain
        self.patience, self.stop_patience, self.min_delta = patience, stop_patience, float(min_delta)
        self._reset()

    def _reset(self):
        self.best, self.since_drop, self.since_best, self.stopped_epoch = math.inf, 0, 0, None
        self.first = None

    def _update(self, value):
        """One epoch's value: ``(drop the rate now, stop now)``."""
        finite = value is not None and math.isfinite(value)
        if self.first is None and finite:
            self.first = value
        if finite and value < self.best - self.min_delta:
            self.best, self.since_drop, self.since_best = value, 0, 0
        elif self.first is None or self.best > self.first - self.start_gain * abs(self.first):
            return False, False  # not learning yet: no plateau
        else:
            self.since_drop += 1
            self.since_best += 1
        drop = self.since_drop >= self.patience
        if drop:
            self.since_drop = 0
        return drop, self.stop_patience is not None and self.since_best >= self.stop_patience

    def on_train_begin(self, logs=None):
        self._reset()
        stop = False
        for row in _rows(self.history_csv):  # earlier epochs of this run: their drops are in the optimizer
            _, stop = self._update(_number(row.get(self.monitor)))
        if stop:  # killed between converging and its report: Keras checks this after one batch
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        drop, stop = self._update(_number(logs.get(self.monitor)))
        rate = self.model.optimizer.learning_rate
        current = float(keras.ops.convert_to_numpy(rate))
        logs["learning_rate"] = current  # the rate this epoch trained at, as Keras logs it
        if drop:
            rate.assign(current * self.factor)
        if stop:
            self.stopped_epoch = epoch
            self.model.stop_training = True


def _rows(path):
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
