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
"""

import glob
import json
import os

import keras


class ResumableBackup(keras.callbacks.Callback):
    """Saves the training state every ``save_every`` batches and at each epoch's end.

    Args:
      backup_dir: a folder of its own.
      save_every: batches between saves (0: only at epoch ends).
      config: a JSON-able description of the run (its command-line arguments). A
        backup made under another config is not restored: ``restore`` raises, since
        resuming it would silently train something else.

    The state: ``state.json`` with ``{"epoch": e, "batches_done": b, "weights": f,
    "config": ...}`` meaning that epoch ``e`` has its first ``b`` batches done, with
    the weights in ``f`` (``e{e}-b{b}.weights.h5``) beside it.
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
        return int(state["epoch"]), int(state["batches_done"])

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        done = self.batch_offset + batch + 1
        if self.save_every and done % self.save_every == 0:
            self._save(self._epoch, done)

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
        return glob.glob(os.path.join(glob.escape(self.backup_dir), "*.weights.h5"))

    def _save(self, epoch, batches_done):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"e{epoch}-b{batches_done}.weights.h5"
        tmp = os.path.join(self.backup_dir, "partial.weights.h5")
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, os.path.join(self.backup_dir, name))
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"epoch": epoch, "batches_done": batches_done, "weights": name, "config": self.config}, f)
        os.replace(tmp, self.state_path)
        # Only now is the previous backup no longer the one state.json names.
        for path in self._weight_files():
            if os.path.basename(path) != name:
                os.remove(path)
