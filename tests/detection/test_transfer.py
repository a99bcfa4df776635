import keras
import numpy as np

from keras_spp.detection.transfer import transferable_fc_weights
from keras_spp.models import zf5


def test_fc6_starts_from_the_classifier_for_windows_with_context():
    net = zf5(10, width=0.125, fc_units=16)
    kernel, bias = net.get_layer("fc6").get_weights()
    dim = kernel.shape[0]
    plain = transferable_fc_weights(net, dim)
    np.testing.assert_array_equal(plain["fc6"][0], kernel)
    np.testing.assert_array_equal(plain["fc7"][0], net.get_layer("fc7").get_weights()[0])
    doubled = transferable_fc_weights(net, 2 * dim)
    np.testing.assert_allclose(doubled["fc6"][0], np.concatenate([kernel / 2, kernel / 2]))
    np.testing.assert_array_equal(doubled["fc6"][1], bias)
    # The same features twice give the classifier's own fc6.
    x = np.random.default_rng(0).normal(size=(3, dim)).astype(np.float32)
    np.testing.assert_allclose(np.concatenate([x, x], 1) @ doubled["fc6"][0], x @ kernel, rtol=1e-5, atol=1e-5)
    assert transferable_fc_weights(net, 3 * dim) is None
    assert transferable_fc_weights(net, dim + 1) is None


def test_a_classifier_without_fc_layers_gives_nothing():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc8")(inputs))
    assert transferable_fc_weights(model, 8) is None
