"""tf.data sources, training pipelines, multi-size schedules and evaluation views."""

from keras_spp.data.multisize import SizeSchedule
from keras_spp.data.pipelines import center_crop_dataset, steps_per_epoch, training_dataset
from keras_spp.data.sources import SourceInfo, load_classification
from keras_spp.data.views import VIEWS, evaluate

__all__ = [
    "SizeSchedule",
    "center_crop_dataset",
    "steps_per_epoch",
    "training_dataset",
    "SourceInfo",
    "load_classification",
    "VIEWS",
    "evaluate",
]
