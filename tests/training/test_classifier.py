import keras
import numpy as np
import pytest

from keras_spp.training.classifier import build_classifier, learning_rate_schedule


def test_learning_rate_schedules_by_optimizer_step():
    def rates(schedule="plateau", drop=0.25, total=100):
        lr = learning_rate_schedule(0.01, schedule, total, drop)
        return lr if isinstance(lr, float) else [float(lr(step)) for step in (0, 50, 79, 80, 81, 100)]

    assert rates() == 0.01  # plateau: a number that ReduceLROnPlateau lowers
    np.testing.assert_allclose(rates("step", drop=0.2), [0.01] * 4 + [0.001] * 2, rtol=1e-6)
    cosine = rates("cosine")
    np.testing.assert_allclose([cosine[0], cosine[1], cosine[-1]], [0.01, 0.01 * (0.5 * 0.99 + 0.01), 1e-4], rtol=1e-5)
    assert all(a > b for a, b in zip(cosine, cosine[1:]))
    with pytest.raises(ValueError, match="Unknown learning-rate schedule 'linear'; known: plateau, step, cosine"):
        learning_rate_schedule(0.01, "linear")


def test_a_classifier_is_built_under_its_policy_and_compiled_with_its_optimizer():
    model = build_classifier(
        "zf5",
        3,
        width=0.0625,
        fc_units=8,
        levels=(2, 1),
        image_size=48,
        dtype_policy="mixed_bfloat16",
        optimizer="adam",
        learning_rate=1e-3,
        jit_compile=False,
    )
    assert keras.config.dtype_policy().name == "float32"  # what is built next is unaffected
    assert model.get_layer("fc6").dtype_policy.name == "mixed_bfloat16"
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    sgd = build_classifier("zf5", 3, width=0.0625, fc_units=8, levels=(2, 1), image_size=48, momentum=0.5)
    assert isinstance(sgd.optimizer, keras.optimizers.SGD) and sgd.optimizer.momentum == 0.5
    assert sgd.get_layer("fc6").dtype_policy.name == "float32"
    with pytest.raises(ValueError, match="Unknown optimizer 'rmsprop'; known: sgd, adam"):
        build_classifier("zf5", 3, optimizer="rmsprop")
