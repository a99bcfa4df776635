"""tf.data sources, training pipelines, multi-size schedules and evaluation views."""

from keras_spp.data.multisize import SizeSchedule
from keras_spp.data.pipelines import center_crop_dataset
from keras_spp.data.pipelines import steps_per_epoch
from keras_spp.data.pipelines import training_dataset
from keras_spp.data.sources import SourceInfo
from keras_spp.data.sources import load_classification
from keras_spp.data.views import VIEWS
from keras_spp.data.views import evaluate
