"""tf.data sources, training pipelines, multi-size schedules and evaluation views."""

from keras_spp.tensorflow_only import require_tensorflow_installed

# Every submodule is imported through here: one error that names the fix, before the
# first ``import tensorflow`` of whichever submodule comes first would fail bare.
require_tensorflow_installed("keras_spp.data")


from keras_spp.data.multisize import SizeSchedule  # noqa: E402
from keras_spp.data.pipelines import center_crop_dataset, steps_per_epoch, training_dataset  # noqa: E402
from keras_spp.data.sources import SourceInfo, load_classification  # noqa: E402
from keras_spp.data.views import VIEWS, evaluate  # noqa: E402

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
