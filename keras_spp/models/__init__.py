"""Table 1 backbones and classification heads."""

from keras_spp.models.backbones import TABLE_1
from keras_spp.models.backbones import backbone
from keras_spp.models.backbones import feature_stride
from keras_spp.models.backbones import min_input_side
from keras_spp.models.classifier import convnet5
from keras_spp.models.classifier import overfeat5
from keras_spp.models.classifier import overfeat7
from keras_spp.models.classifier import pool5_classifier
from keras_spp.models.classifier import spp_classifier
from keras_spp.models.classifier import table1_classifier
from keras_spp.models.classifier import zf5
