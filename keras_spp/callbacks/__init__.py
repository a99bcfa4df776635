"""Training callbacks that Keras does not provide."""

from keras_spp.callbacks.log_learning_rate import LogLearningRate
from keras_spp.callbacks.plateau_schedule import PlateauSchedule
from keras_spp.callbacks.resumable_backup import ResumableBackup
from keras_spp.callbacks.training_curves import TrainingCurves

__all__ = [
    "LogLearningRate",
    "PlateauSchedule",
    "ResumableBackup",
    "TrainingCurves",
]
