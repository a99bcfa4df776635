"""What stays TensorFlow refuses another backend with one clear error."""

import pytest

from keras_spp.tensorflow_only import require_tensorflow
from tests.backends.conftest import BACKEND

pytestmark = pytest.mark.skipif(BACKEND == "tensorflow", reason="the refusals are for the other backends")
REFUSAL = r"runs on the TensorFlow backend only, and Keras runs on '(jax|torch)'.*KERAS_BACKEND=tensorflow"


def test_require_tensorflow_names_the_caller_and_the_way_out():
    with pytest.raises(RuntimeError, match="my feature " + REFUSAL):
        require_tensorflow("my feature")


def test_the_detector_export_and_recipes_refuse_other_backends(tmp_path):
    from export import saved_model
    from keras_spp import detection
    from recipes import detect, train_detector

    with pytest.raises(RuntimeError, match="keras_spp.detection.Detector " + REFUSAL):
        detection.Detector  # noqa: B018
    from keras_spp.detection.detector import Detector

    with pytest.raises(RuntimeError, match="^Detector " + REFUSAL):
        Detector(None, ["a"])
    # SppNetDetector's call and its window features run here (test_detector_call.py).
    from recipes import main

    with pytest.raises(RuntimeError, match=r"recipes.main \(its detector\) " + REFUSAL):
        main.main([])
    with pytest.raises(RuntimeError, match="export.saved_model " + r"\(SavedModels for TF Serving\) " + REFUSAL):
        saved_model.export(str(tmp_path / "m.keras"), "classifier", str(tmp_path / "out"))
    for recipe, argv in ((train_detector, []), (detect, ["x.jpg", "--detector", "d"])):
        with pytest.raises(RuntimeError, match=f"recipes.{recipe.__name__.split('.')[-1]} " + REFUSAL):
            recipe.main(argv)
