"""recipes.train_detector's flags are keras_spp.detection.pipeline's DetectorTrainingConfig."""

import dataclasses

import pytest

from keras_spp.detection import pipeline_config
from keras_spp.detection.pipeline_config import DetectorTrainingConfig
from recipes import train_detector


def test_every_flag_is_a_field_with_the_same_default():
    args = train_detector.parse_args([])
    assert list(vars(args)) == [f.name for f in dataclasses.fields(DetectorTrainingConfig)]
    assert train_detector.make_config(args) == DetectorTrainingConfig()
    assert (train_detector.DEFAULT_PRETRAINED, train_detector.RPN_SCALE) == (
        pipeline_config.DEFAULT_PRETRAINED,
        pipeline_config.RPN_SCALE,
    )


def test_the_flags_values_arrive_typed():
    argv = ["--scales", "400,800", "--negative-iou", "0,0.5", "--proposals", "rpn", "--context", "2", "--seed", "3"]
    config = train_detector.make_config(train_detector.parse_args(argv))
    assert config.scales == (400, 800) and config.negative_iou == (0.0, 0.5) and config.context == 2.0
    assert config.rpn_scale_list() == [800] and config.seed == 3


def test_the_librarys_refusals_name_the_flags():
    args = train_detector.parse_args(["--max-train-windows", "-3"])
    with pytest.raises(SystemExit, match="^--max-train-windows must be 0 "):
        train_detector.make_config(args)
