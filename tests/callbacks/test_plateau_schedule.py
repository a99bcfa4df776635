"""PlateauSchedule: Keras's plateau rule, a convergence stop, and both resumed."""

import csv

import keras
import numpy as np
import pytest

from keras_spp.callbacks import PlateauSchedule


class Scripted(keras.callbacks.Callback):
    """Puts a scripted ``val_loss`` into each epoch's logs (before the schedule sees them)."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def fit(values, callbacks, rate=1.0, initial_epoch=0, model=None):
    if model is None:
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(rate), "mse")
    history = model.fit(
        np.zeros((2, 1)),
        np.zeros((2, 1)),
        epochs=len(values),
        initial_epoch=initial_epoch,
        callbacks=[Scripted(values), *callbacks],
        verbose=0,
    )
    return model, history


def rates_by_epoch(path):
    with open(path, newline="") as f:
        return [float(row["learning_rate"]) for row in csv.DictReader(f)]


LOSSES = [5.0, 4.0, 4.0, 4.0, 3.0, 3.5, 3.2, 3.1, 3.3, 3.4, 3.6, 3.0]


def test_the_rate_drops_as_keras_reduce_lr_on_plateau_drops_it(tmp_path):
    _, ours = fit(LOSSES, [PlateauSchedule(str(tmp_path / "none.csv"), patience=2)])
    _, keras_run = fit(LOSSES, [keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.1, patience=2)])
    np.testing.assert_allclose(ours.history["learning_rate"], keras_run.history["learning_rate"], rtol=1e-6)
    assert ours.history["learning_rate"][0] == pytest.approx(1.0) and min(ours.history["learning_rate"]) < 0.01


def test_it_stops_when_nothing_improved_for_stop_patience_epochs(tmp_path):
    plateau = PlateauSchedule(str(tmp_path / "none.csv"), patience=2, stop_patience=4)
    _, history = fit(LOSSES, [plateau])
    # Best 3.0 at epoch 4; 3.5, 3.2, 3.1, 3.3 are no better: stop after epoch 8.
    assert len(history.history["loss"]) == 9 and plateau.stopped_epoch == 8


def test_a_resumed_run_drops_and_stops_where_the_uninterrupted_one_does(tmp_path):
    whole_csv, part_csv = tmp_path / "whole.csv", tmp_path / "part.csv"

    def callbacks(path):
        return [PlateauSchedule(str(path), patience=2, stop_patience=5), keras.callbacks.CSVLogger(path, append=True)]

    fit(LOSSES, callbacks(whole_csv))
    model, _ = fit(LOSSES[:6], callbacks(part_csv))  # killed after epoch 6; the backup keeps the rate
    fit(LOSSES, callbacks(part_csv), initial_epoch=6, model=model)
    assert rates_by_epoch(part_csv) == pytest.approx(rates_by_epoch(whole_csv))
    assert len(rates_by_epoch(whole_csv)) == 10  # best 3.0 at epoch 4, five without gain
    # Without the replay (no history to read) the resumed half starts its counters afresh.
    fresh_csv = tmp_path / "fresh.csv"
    model, _ = fit(LOSSES[:6], callbacks(fresh_csv))
    forgetful = PlateauSchedule(str(tmp_path / "elsewhere.csv"), patience=2, stop_patience=5)
    fit(LOSSES, [forgetful, keras.callbacks.CSVLogger(fresh_csv, append=True)], initial_epoch=6, model=model)
    assert rates_by_epoch(fresh_csv) != pytest.approx(rates_by_epoch(whole_csv))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"factor": 1.0}, "`factor` must lie in"),
        ({"patience": 0}, "`patience` must be a positive"),
        ({"stop_patience": 0}, "`stop_patience` must be a positive"),
    ],
)
def test_bad_arguments_say_what_is_accepted(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PlateauSchedule("h.csv", **kwargs)


def test_nan_is_never_an_improvement(tmp_path):
    plateau = PlateauSchedule(str(tmp_path / "none.csv"), patience=1, stop_patience=2)
    _, history = fit([2.0, float("nan"), float("nan"), 1.0], [plateau])
    assert len(history.history["loss"]) == 3 and history.history["learning_rate"][2] == pytest.approx(0.1)


def test_epochs_at_chance_level_are_no_plateau_with_a_start_gain(tmp_path):
    # Flat at the start (a network still at chance), then learning, then a plateau.
    losses = [2.303, 2.303, 2.303, 2.303, 2.302, 2.2, 1.9, 1.7, 1.7, 1.7, 1.7, 1.7]
    keras_like = PlateauSchedule(str(tmp_path / "a.csv"), patience=2, stop_patience=4)
    _, history = fit(losses, [keras_like])
    assert history.history["learning_rate"][3] == pytest.approx(0.1)  # cut before it learned anything
    patient = PlateauSchedule(str(tmp_path / "b.csv"), patience=2, stop_patience=4, start_gain=0.05)
    _, history = fit(losses, [patient])
    rates = history.history["learning_rate"]
    # Counting starts at epoch 6 (1.9 <= 0.95 * 2.303); best 1.7 at epoch 7, cut after 9, stop after 11.
    assert rates[:10] == pytest.approx([1.0] * 10) and rates[10] == pytest.approx(0.1)
    assert patient.stopped_epoch == 11
    with pytest.raises(ValueError, match="`start_gain` must be a fraction"):
        PlateauSchedule("h.csv", start_gain=1.0)
