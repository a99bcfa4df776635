"""Writes the training curves as a PNG after every epoch."""

import os

import keras


class TrainingCurves(keras.callbacks.Callback):
    """Plots every logged metric (train and ``val_``) against the epoch into ``path``.

    Reads the CSV that ``keras.callbacks.CSVLogger`` writes (``csv_path``), so a
    resumed run draws its whole history, not only the epochs since the restart.
    """

    def __init__(self, csv_path, path, title=None):
        super().__init__()
        self.csv_path, self.path, self.title = csv_path, path, title

    def on_epoch_end(self, epoch, logs=None):
        # CSVLogger writes its row in its own on_epoch_end; make sure ours comes after.
        self.plot()

    def on_train_end(self, logs=None):
        self.plot()

    def plot(self):
        import csv

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        if not os.path.exists(self.csv_path):
            return
        with open(self.csv_path) as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        epochs = [int(r["epoch"]) + 1 for r in rows]
        names = [
            k for k in rows[0] if k != "epoch" and not k.startswith("val_") and k not in ("learning_rate", "input_size")
        ]
        fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.2 * (len(names) + 1), 3.4))
        for ax in axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax, name in zip(axes, names):
            for key, style in ((name, "-o"), (f"val_{name}", "--s")):
                if key in rows[0]:
                    ax.plot(epochs, [_number(r[key]) for r in rows], style, label=key, markersize=3)
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        ax = axes[-1]
        # Learning rate (log scale) and input size on axes of their own.
        if "learning_rate" in rows[0]:
            ax.plot(epochs, [_number(r["learning_rate"]) for r in rows], "-o", markersize=3, color="tab:blue")
            ax.set_yscale("log")
            ax.set_ylabel("learning rate", color="tab:blue")
        if "input_size" in rows[0]:
            sizes = ax.twinx()
            sizes.plot(epochs, [_number(r["input_size"]) for r in rows], "-s", markersize=3, color="tab:orange")
            sizes.set_ylabel("input size (px)", color="tab:orange")
        ax.set_title("schedule")
        ax.set_xlabel("epoch")
        if self.title:
            fig.suptitle(self.title)
        fig.tight_layout()
        fig.savefig(self.path, dpi=90)
        plt.close(fig)


def _number(text):
    """CSVLogger writes "NA" for a metric an epoch did not log; plot it as a gap."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")
