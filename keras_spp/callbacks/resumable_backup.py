"""Backups that let ``model.fit`` resume mid-epoch exactly where a run stopped.

Keras's ``BackupAndRestore`` saves mid-epoch weights but restarts the epoch from
its first batch on restore. This callback also records how many batches of the
epoch were done; the caller restores, then feeds the data from that batch on
(``keras_spp.data.pipelines.training_dataset(start_epoch=..., skip_batches=...)``)
and runs the rest of the epoch as a shorter ``fit``. Weights and optimizer state
(``model.save_weights`` holds both) go to a file of their own step, and
``state.json``, replaced atomically, names that file: the backup is whatever
``state.json`` says, so a kill at any point of a save leaves the previous backup
whole (new weights never pair with an old step count, which would resume a
slightly different run).

``save_weights`` leaves out two kinds of state, which a second file of the same
step (``e{e}-b{b}.state.npz``) holds:

* the random state: every ``SeedGenerator`` of the model (a ``Dropout`` layer
  draws each step's mask from its own, whose counter advances every step) and
  ``keras.random``'s global one if it exists. Without them a resumed run draws the
  masks that the uninterrupted run drew from its first steps, and ends elsewhere;
* the metrics' accumulators (``model.metrics_variables``: the loss's and each
  metric's running total and count) of a partial epoch. ``fit`` resets them at
  each epoch's start; they are put back for the resumed epoch, so that its logged
  loss and accuracy average every batch of the epoch, not only those after the
  restart. Where ``fit`` builds the compiled metrics only in its first step
  (TensorFlow without a distribution strategy), they are put back after that
  step, added to its own: exact for accumulators that are sums over the batches,
  as every Keras metric's are (totals, counts, confusion counts); a custom metric
  whose state is not a sum would log a wrong value for the resumed epoch (its
  weights are unaffected).

The data's position is the caller's: ``(epoch, batches_done)``, from which a
pipeline that is a pure function of the seed and the epoch restarts.
"""

import glob
import io
import json
import os

import keras
import numpy as np

try:
    # Where keras.random keeps its generator for calls without a seed: not public API.
    from keras.src.backend.common import global_state
except ImportError:  # a Keras that moved it: the model's own generators are still kept
    global_state = None

_GLOBAL_SEED_GENERATOR = "global_seed_generator"


class ResumableBackup(keras.callbacks.Callback):
    """Saves the training state every ``save_every`` batches and at each epoch's end.

    Args:
      backup_dir: a folder of its own.
      save_every: batches between saves (0: only at epoch ends).
      config: a JSON-able description of the run (its command-line arguments). A
        backup made under another config is not restored: ``restore`` raises, since
        resuming it would silently train something else.

    The state: ``state.json`` with ``{"epoch": e, "batches_done": b, "weights": f,
    "random_state": r, "config": ...}`` meaning that epoch ``e`` has its first ``b``
    batches done, with the weights in ``f`` (``e{e}-b{b}.weights.h5``) and the random
    state and metric accumulators in ``r`` (``e{e}-b{b}.state.npz``) beside it.
    """

    def __init__(self, backup_dir, save_every=50, config=None):
        super().__init__()
        self.backup_dir = backup_dir
        self.save_every = int(save_every)
        self.config = config
        # Set by the caller when a fit runs the tail of an interrupted epoch, whose
        # batch numbers then start at 0 but stand for batch `batch_offset` on.
        self.batch_offset = 0
        self._epoch = 0
        # The restored partial epoch's metric accumulators, until its fit resets the metrics.
        self._pending_metrics = None

    @property
    def state_path(self):
        return os.path.join(self.backup_dir, "state.json")

    def restore(self, model):
        """Loads the backup into ``model`` (built, compiled); returns ``(epoch, batches_done)``."""
        if not os.path.exists(self.state_path):
            return 0, 0
        with open(self.state_path) as f:
            state = json.load(f)
        weights = os.path.join(self.backup_dir, state.get("weights", ""))
        if not state.get("weights") or not os.path.exists(weights):
            raise ValueError(
                f"The backup in {self.backup_dir} is incomplete: {self.state_path} names "
                f"weights {state.get('weights')!r} that are not there. Delete the backup folder to start afresh."
            )
        if state.get("config") != self.config:
            raise ValueError(
                f"The backup in {self.backup_dir} is of a run with another configuration "
                f"({state.get('config')}); this run is {self.config}. Use another output "
                "folder, or delete the backup folder to start afresh."
            )
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(weights)
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if state.get("random_state"):  # absent from backups made before it was kept
            metrics = self._restore_random_state(model, os.path.join(self.backup_dir, state["random_state"]))
            self._pending_metrics = metrics if done else None
        return epoch, done

    def _restore_random_state(self, model, path):
        """Assigns the seeds of ``path``; returns its metric accumulators (the metrics
        may not be built yet, and ``fit`` resets them anyway)."""
        with np.load(path) as stored:
            arrays = dict(stored)
        seeds = _seed_states(model)
        saved = sorted((k for k in arrays if k.startswith("seed/")), key=lambda k: int(k.split("/")[1]))
        if len(saved) != len(seeds) or any(arrays[k].shape != tuple(v.shape) for k, v in zip(saved, seeds)):
            raise ValueError(
                f"The backup's random state ({path}) holds {len(saved)} seed generators and this model has "
                f"{len(seeds)}: it is another model's. Delete the backup folder to start afresh."
            )
        for key, variable in zip(saved, seeds):
            variable.assign(arrays[key])
        if "global_seed" in arrays and global_state is not None:
            _global_seed_generator(create=True).state.assign(arrays["global_seed"])
        # None where none were saved (a backup across workers): nothing to put back.
        return [arrays[k] for k in sorted((k for k in arrays if k.startswith("metric/")), key=_index)] or None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if not self.batch_offset:
            self._pending_metrics = None
        elif self._pending_metrics is not None and len(self.model.metrics_variables) == len(self._pending_metrics):
            # Built already (under a tf.distribute strategy, or by an earlier fit): put back as saved.
            self._put_back_metrics(added=False)

    def on_train_batch_end(self, batch, logs=None):
        if self._pending_metrics is not None:
            # Without a strategy, TensorFlow builds the compiled metrics when it traces the
            # first step, so they exist only now, holding that batch: the saved sums are
            # added to its own.
            self._put_back_metrics(added=True)
        done = self.batch_offset + batch + 1
        if self.save_every and done % self.save_every == 0:
            self._save(self._epoch, done)

    def _put_back_metrics(self, added):
        variables = self.model.metrics_variables
        if len(variables) != len(self._pending_metrics):
            raise ValueError(
                f"The backup in {self.backup_dir} holds {len(self._pending_metrics)} metric accumulators "
                f"and this model has {len(variables)}: it was compiled with other metrics."
            )
        for variable, value in zip(variables, self._pending_metrics):
            variable.assign(keras.ops.convert_to_numpy(variable) + value if added else value)
        self._pending_metrics = None

    def on_epoch_end(self, epoch, logs=None):
        self._save(epoch + 1, 0)
        self.batch_offset = 0

    def clear(self):
        for path in [self.state_path, *self._weight_files()]:
            if os.path.exists(path):
                os.remove(path)
        if os.path.isdir(self.backup_dir) and not os.listdir(self.backup_dir):
            os.rmdir(self.backup_dir)

    def _weight_files(self):
        folder = glob.escape(self.backup_dir)
        return glob.glob(os.path.join(folder, "*.weights.h5")) + glob.glob(os.path.join(folder, "*.state.npz"))

    def _save(self, epoch, batches_done):
        os.makedirs(self.backup_dir, exist_ok=True)
        model = self.model  # on JAX, this syncs the state that fit holds aside
        name = f"e{epoch}-b{batches_done}.weights.h5"
        tmp = os.path.join(self.backup_dir, "partial.weights.h5")
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, os.path.join(self.backup_dir, name))
        random_name = f"e{epoch}-b{batches_done}.state.npz"
        _write_aside(os.path.join(self.backup_dir, random_name), _random_and_metric_state(model))
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            state = {"epoch": epoch, "batches_done": batches_done, "weights": name, "random_state": random_name}
            json.dump({**state, "config": self.config}, f)
        os.replace(tmp, self.state_path)
        # Only now is the previous backup no longer the one state.json names.
        for path in self._weight_files():
            if os.path.basename(path) not in (name, random_name):
                os.remove(path)


def _index(key):
    return int(key.split("/")[1])


def _seed_states(model):
    """The state variables of the model's ``SeedGenerator``s, in the model's order:
    ``model.variables`` is ``model.weights`` and these."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _global_seed_generator(create=False):
    if global_state is None:
        return None
    generator = global_state.get_global_attribute(_GLOBAL_SEED_GENERATOR)
    if generator is None and create:
        generator = keras.random.SeedGenerator()
        global_state.set_global_attribute(_GLOBAL_SEED_GENERATOR, generator)
    return generator


def _random_and_metric_state(model):
    arrays = {f"seed/{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(_seed_states(model))}
    generator = _global_seed_generator()
    if generator is not None:
        arrays["global_seed"] = keras.ops.convert_to_numpy(generator.state)
    if not _across_workers(model):
        for i, v in enumerate(model.metrics_variables):
            arrays[f"metric/{i}"] = keras.ops.convert_to_numpy(v)
    return arrays


def _across_workers(model):
    """Whether the model trains under a multi-worker ``tf.distribute`` strategy. Its
    metric variables are summed across the workers when read: a collective that only
    the chief (which writes the backups) would enter, aborting the run. So a cut
    epoch resumed there logs the batches after the restart only."""
    strategy = getattr(model, "distribute_strategy", None)
    resolver = getattr(strategy, "cluster_resolver", None)
    return bool(resolver is not None and getattr(resolver, "task_type", None))


def _write_aside(path, arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    # A name that the next save's clean-up (and clear) matches, should a kill leave it.
    tmp = os.path.join(os.path.dirname(path), "partial.state.npz")
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, path)
