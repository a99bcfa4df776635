"""DetectorTrainingConfig: the settings of keras_spp.detection.pipeline.train_detector."""

import dataclasses

import pytest

from keras_spp.detection.pipeline_config import DetectorTrainingConfig, SettingError


def test_text_and_typed_values_make_the_same_config():
    text = DetectorTrainingConfig(
        scales="480,688", levels="6,3", rpn_anchor_sizes="32,64", negative_iou="0,0.5", mnist_images="6,3,2"
    )
    typed = DetectorTrainingConfig(
        scales=(480, 688), levels=[6, 3], rpn_anchor_sizes=(32, 64), negative_iou=(0.0, 0.5), mnist_images=(6, 3, 2)
    )
    assert text == typed
    assert typed.scales == (480, 688) and typed.rpn_anchor_sizes == (32.0, 64.0) and typed.negative_iou == (0.0, 0.5)


def test_the_record_keeps_the_flags_text_of_the_pairs():
    record = DetectorTrainingConfig(negative_iou=(0, 0.5), mnist_images=(6, 3), context=2).as_record()
    assert record["negative_iou"] == "0,0.5" and record["mnist_images"] == "6,3" and record["context"] == 2.0
    assert set(record) == {f.name for f in dataclasses.fields(DetectorTrainingConfig)}


def test_derived_settings():
    config = DetectorTrainingConfig(scales=(200, 400, 760, 1100), out="o")
    assert config.rpn_scale_list() == [760] and config.cache_root == "o/cache" and config.context_scale is None
    assert DetectorTrainingConfig(cache_dir="c", context=2).cache_root == "c"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 3


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"context": 0.5}, "context must be 0 (off) or at least 1"),
        ({"max_train_windows": -3}, "max_train_windows must be 0 (every window)"),
        ({"negative_iou": "0.3,0.2"}, "negative_iou must be two IoUs 'lo,hi'"),
        ({"negative_iou": "0.1"}, "negative_iou must be two IoUs 'lo,hi'"),
        ({"mnist_images": "1,2,3,4"}, "mnist_images must be two or three counts"),
        ({"scales": "0"}, "scales must be comma-separated whole numbers >= 1"),
        ({"rpn_aspect_ratios": "1,0"}, "rpn_aspect_ratios must hold positive finite numbers"),
        ({"batch_size": 1}, "batch_size must be a whole number >= 2"),
        ({"steps": 2.5}, "steps must be a whole number >= 1"),
        ({"lr": float("nan")}, "lr must be a finite number > 0"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of adam, sgd"),
        ({"verbose": 3}, "verbose must be 0, 1 or 2"),
        ({"strategy": "mirrored", "conv_steps": 2}, "strategy mirrored distributes the fc fine-tuning only"),
        ({"proposals": "rpn", "rpn_scales": "400"}, "rpn_scales must be among scales (688,)"),
    ],
)
def test_a_refused_setting_names_its_field(settings, message):
    with pytest.raises(SettingError) as refused:
        DetectorTrainingConfig(**settings)
    assert str(refused.value).startswith(message) and not refused.value.during_run


def test_a_refusal_can_name_the_settings_otherwise():
    with pytest.raises(SettingError) as refused:
        DetectorTrainingConfig(strategy="multi-worker", proposals="rpn")
    flags = refused.value.named(lambda field: "--" + field.replace("_", "-"))
    assert flags.startswith("--strategy multi-worker distributes") and "got --conv-steps 0 --proposals rpn" in flags
    assert isinstance(refused.value, ValueError)
