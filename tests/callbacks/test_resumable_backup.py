import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_spp.callbacks import ResumableBackup

STEPS, EPOCHS, BATCH = 5, 3, 4


class Killed(Exception):
    pass


class KillAt(keras.callbacks.Callback):
    """Stands for a kill -9 after batch ``batch`` (0-based) of ``epoch``: the run stops
    there, its last backup already on disk."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self._epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self._epoch, batch) == self.at:
            raise Killed()


class EpochLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rows = {}

    def on_epoch_end(self, epoch, logs=None):
        self.rows[epoch] = {k: float(v) for k, v in logs.items()}


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return x, y


def batches(skip=0):
    # A fixed order, every epoch the same: the tail of an epoch is its batches from `skip` on.
    x, y = data()
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).skip(skip).repeat()


def make_model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(2),
        ]
    )
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def run(backup_dir, kill_at=None, metrics_built=False):
    """Trains EPOCHS epochs, resuming from ``backup_dir`` as ``recipes.train_classifier``
    does: the rest of an interrupted epoch as a shorter fit, then the other epochs."""
    model = make_model()
    if metrics_built:  # as under a tf.distribute strategy, where fit builds them before its first step
        model.evaluate(batches(), steps=1, verbose=0)
    backup = ResumableBackup(str(backup_dir), save_every=2, config={"run": 1})
    start, done = backup.restore(model)
    logs = EpochLogs()
    callbacks = [backup, logs] + ([KillAt(*kill_at)] if kill_at else [])
    fit = {"callbacks": callbacks, "shuffle": False, "verbose": 0}
    if done:
        backup.batch_offset = done
        model.fit(batches(done), epochs=start + 1, initial_epoch=start, steps_per_epoch=STEPS - done, **fit)
        start += 1
    model.fit(batches(), epochs=EPOCHS, initial_epoch=start, steps_per_epoch=STEPS, **fit)
    return model, logs.rows


@pytest.mark.parametrize("metrics_built", [False, True])
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights_and_epoch_logs_with_dropout(tmp_path, metrics_built):
    reference, reference_rows = run(tmp_path / "reference")
    # Killed after batch 3 of epoch 2 (0-based: epoch 1, batch 2); the backup holds 2 batches.
    with pytest.raises(Killed):
        run(tmp_path / "killed", kill_at=(1, 2))
    state = json.loads((tmp_path / "killed" / "state.json").read_text())
    assert (state["epoch"], state["batches_done"]) == (1, 2)
    resumed, resumed_rows = run(tmp_path / "killed", metrics_built=metrics_built)
    assert sorted(resumed_rows) == [1, 2]
    for want, got in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(got, want)
    # The resumed epoch's row averages all of its batches, the ones before the kill too.
    for epoch in (1, 2):
        assert resumed_rows[epoch] == pytest.approx(reference_rows[epoch], rel=1e-6)


def test_the_random_state_is_part_of_the_backup(tmp_path):
    model = make_model()
    saver = ResumableBackup(str(tmp_path), config={})
    saver.set_model(model)
    model.fit(batches(), epochs=1, steps_per_epoch=2, verbose=0)
    seeds = [v for v in model.variables if "seed_generator" in v.path]
    assert len(seeds) == 2
    saved = [np.array(v) for v in seeds]
    saver._save(0, 2)
    model.fit(batches(), epochs=1, steps_per_epoch=2, verbose=0)
    assert any((np.array(v) != s).any() for v, s in zip(seeds, saved))
    assert ResumableBackup(str(tmp_path), config={}).restore(model) == (0, 2)
    for v, s in zip(seeds, saved):
        np.testing.assert_array_equal(np.array(v), s)


def test_keras_randoms_global_generator_is_part_of_the_backup(tmp_path):
    model = make_model()
    keras.random.uniform((1,))  # a call without a seed: keras.random's global generator
    saver = ResumableBackup(str(tmp_path), config={})
    saver.set_model(model)
    saver._save(0, 1)
    following = keras.ops.convert_to_numpy(keras.random.uniform((3,)))
    keras.random.uniform((5,))
    ResumableBackup(str(tmp_path), config={}).restore(model)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.random.uniform((3,))), following)


def test_a_backup_of_another_model_is_refused_by_its_random_state(tmp_path):
    model = make_model()
    saver = ResumableBackup(str(tmp_path), config={})
    saver.set_model(model)
    saver._save(0, 2)
    state = json.loads((tmp_path / "state.json").read_text())
    with np.load(tmp_path / state["random_state"]) as stored:
        arrays = dict(stored)
    arrays.pop(sorted(k for k in arrays if k.startswith("seed/"))[0])
    np.savez(tmp_path / state["random_state"], **arrays)
    with pytest.raises(ValueError, match="random state"):
        ResumableBackup(str(tmp_path), config={}).restore(make_model())
