"""Checks on a training stage's losses: a non-finite loss stops the run with an
error (no detector is saved as if trained), and a loss that ends at chance level
says so, naming the flag that gives the stage more steps."""

import logging
import math

import keras

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A training stage's loss became NaN or infinite."""


class RaiseOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises ``NonFiniteLossError`` at the first batch whose loss is not finite.

    Keras's ``TerminateOnNaN`` only stops ``fit``, which then returns as if it had
    finished: the caller would go on to save a broken network.
    """

    def __init__(self, stage, hint=""):
        super().__init__()
        self.stage = stage
        self.hint = hint

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(
                f"{self.stage}: the loss became {float(loss)} at batch {batch}; stopped, nothing was saved as "
                f"trained.{(' ' + self.hint) if self.hint else ''}"
            )


def softmax_chance_loss(num_classes, positive_fraction):
    """Cross-entropy of a classifier that predicts the minibatches' label frequencies:
    ``positive_fraction`` spread evenly over ``num_classes`` classes, the rest
    background."""
    p, k = float(positive_fraction), int(num_classes)
    return -(1 - p) * math.log(1 - p) - p * math.log(p / k)


def warn_if_at_chance(history, key, chance, stage, flag, margin=0.95):
    """A warning (logged and returned) when ``history``'s last ``key`` is at least
    ``margin`` times ``chance``, else None."""
    values = history.history.get(key) if history is not None else None
    if not values:
        return None
    final = float(values[-1])
    if final < margin * chance:
        return None
    message = (
        f"{stage}: the {key} ended at {final:.3f}, chance level ({chance:.3f}): it learned nothing usable. "
        f"Give it more steps ({flag}) or check its data."
    )
    log.warning(message)
    print(f"WARNING: {message}", flush=True)
    return message
