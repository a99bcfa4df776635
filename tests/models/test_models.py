import keras
import numpy as np
import pytest

from keras_spp import models
from keras_spp.layers import LocalResponseNormalization

# Table 1: (conv filters, kernel sizes, strides) and the map after each stage at 224.
TABLE_1 = {
    "zf5": ([96, 256, 384, 384, 256], [7, 5, 3, 3, 3], [2, 2, 1, 1, 1], 13, 256),
    "convnet5": ([96, 256, 384, 384, 256], [11, 5, 3, 3, 3], [4, 1, 1, 1, 1], 13, 256),
    "overfeat5": ([96, 256, 512, 512, 512], [7, 5, 3, 3, 3], [2, 1, 1, 1, 1], 18, 512),
    "overfeat7": ([96, 256] + [512] * 5, [7, 5] + [3] * 5, [2, 1] + [1] * 5, 18, 512),
}
# Map sizes at 224 px entering conv2 and conv3 (Table 1's 55/36 after conv1's stage;
# ZF-5's conv2 is strided, 27, then pooled to 13; Convnet*-5 pools conv2 to 27).
STAGE_SIZES = {"zf5": (55, 13), "convnet5": (55, 27), "overfeat5": (36, 18), "overfeat7": (36, 18)}


@pytest.mark.parametrize("name", list(TABLE_1))
def test_backbones_match_table_1(name):
    filters, kernels, strides, size, channels = TABLE_1[name]
    net = models.backbone(name)
    convs = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == filters
    assert [c.kernel_size[0] for c in convs] == kernels
    assert [c.strides[0] for c in convs] == strides
    assert net.compute_output_shape((1, 224, 224, 3)) == (1, size, size, channels)
    lrn = [layer for layer in net.layers if isinstance(layer, LocalResponseNormalization)]
    assert len(lrn) == (1 if name.startswith("overfeat") else 2)
    into_conv2 = net.get_layer("pad2" if name == "zf5" else "conv2").input
    into_conv3 = net.get_layer("conv3").input
    assert (into_conv2.shape[1], into_conv3.shape[1]) == (None, None)  # any size
    fixed = models.backbone(name, input_shape=(224, 224, 3))
    into_conv2 = fixed.get_layer("pad2" if name == "zf5" else "conv2").input
    assert (into_conv2.shape[1], fixed.get_layer("conv3").input.shape[1]) == STAGE_SIZES[name]
    if name == "zf5":
        assert fixed.get_layer("conv2").output.shape[1] == 27


@pytest.mark.parametrize("build", [models.zf5, models.convnet5, models.overfeat5, models.overfeat7])
def test_spp_heads_take_any_size_and_pool_heads_a_fixed_one(build):
    spp = build(7, head="spp", width=0.125, fc_units=32, levels=(4, 2, 1))
    assert spp.input_shape == (None, None, None, 3)
    for size in [(180, 180), (224, 300), (150, 97)]:
        out = spp(np.zeros((1, *size, 3), "float32"))
        assert out.shape == (1, 7)
        np.testing.assert_allclose(out.numpy().sum(), 1.0, rtol=1e-5)
    pool = build(7, head="pool", width=0.125, fc_units=32)
    assert pool.input_shape == (None, 224, 224, 3)
    assert pool.get_layer("flatten").output.shape[-1] == 6 * 6 * pool.layers[1].output_shape[-1]


def test_fc_layers_are_the_papers():
    net = models.zf5(1000, width=1.0)
    assert net.get_layer("fc6").units == 4096 and net.get_layer("fc7").units == 4096
    assert net.get_layer("fc6").input.shape[-1] == 12800
    assert net.get_layer("fc8").units == 1000


def test_pool5_rule_and_bad_arguments():
    small = models.zf5(3, head="pool", width=0.125, fc_units=8, image_size=112)  # conv5 6x6 -> pool 1/1
    assert small.get_layer("pool5").pool_size == (1, 1)
    with pytest.raises(ValueError, match="no single pool"):
        models.zf5(3, head="pool", width=0.125, image_size=180)  # conv5 10x10
    with pytest.raises(ValueError, match="`head`"):
        models.zf5(3, head="fc")
    with pytest.raises(ValueError, match="Unknown backbone"):
        models.backbone("vgg16")
    with pytest.raises(ValueError, match="`width`"):
        models.backbone("zf5", width=0)


def test_spp_classifier_on_a_keras_applications_backbone(tmp_path):
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(None, None, 3), alpha=0.35)
    net = models.spp_classifier(base, 4, levels=(2, 1), fc_units=16)
    for size in [(96, 96), (128, 80)]:
        assert net(np.zeros((2, *size, 3), "float32")).shape == (2, 4)
    path = str(tmp_path / "m.keras")
    net.save(path)
    x = np.random.default_rng(0).uniform(size=(1, 100, 70, 3)).astype("float32")
    np.testing.assert_allclose(keras.saving.load_model(path)(x).numpy(), net(x).numpy(), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(models.TABLE_1))
def test_min_input_side_is_where_tensorflow_shape_inference_starts_to_accept(name):
    import tensorflow as tf

    net = models.backbone(name, width=0.125)
    inner = net.layers[net.layers.index(net.get_layer("check_size")) + 1 :]  # the network behind the check

    def traces(side):
        def run(x):
            for layer in inner:
                x = layer(x)
            return x

        try:
            tf.function(run).get_concrete_function(tf.TensorSpec((1, side, side, 3), tf.float32))
            return True
        except ValueError:  # "Negative dimension size ..."
            return False

    side = models.backbones.min_input_side(name)
    assert traces(side) and not traces(side - 1)


def test_a_too_small_image_is_an_error_that_names_the_sizes_not_a_crash():
    import tensorflow as tf

    net = models.backbone("zf5", width=0.125)
    # Eagerly, a 1 x 1 image once reached oneDNN's max pool and killed the process.
    for height, width in [(1, 1), (28, 200), (200, 28)]:
        message = rf"at least 29 x 29 pixels.*\(height, width\) \({height}, {width}\)"
        with pytest.raises(ValueError, match=message):
            net(np.zeros((1, height, width, 3), np.float32))
    assert net(np.zeros((1, 29, 29, 3), np.float32)).shape[1:3] == (1, 1)
    dynamic = tf.function(lambda x: net(x), input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"at least 29 x 29 pixels"):
        dynamic(tf.zeros((1, 1, 1, 3)))
    assert dynamic(tf.zeros((2, 40, 29, 3))).shape[:3] == (2, 1, 1)


def test_minimum_input_size_config_round_trips_and_validates():
    from keras_spp.layers import MinimumInputSize

    layer = MinimumInputSize(17, name="check")
    again = MinimumInputSize.from_config(layer.get_config())
    assert again.min_side == 17 and again.name == "check"
    assert layer.compute_output_shape((2, None, 30, 3)) == (2, None, 30, 3)
    for bad in (0, -3, 2.5, True, "17"):
        with pytest.raises(ValueError, match="`min_side` must be a positive integer"):
            MinimumInputSize(bad)
