"""``keras_spp.detection`` names its public API in ``__all__``, and every name imports."""

import importlib
import subprocess
import sys

import pytest

import keras_spp.detection as detection

MAIN = (
    "Detector",
    "DetectionSettings",
    "SppNetDetector",
    "convert_detector_folder",
    "LearnedProposals",
    "AnchorConfig",
    "generate_proposals",
    "RpnProposals",
    "rpn_head",
    "MultiScaleRoiFeatures",
    "spp_detector",
    "selective_search",
    "evaluate_detections",
    "per_class_nms",
    "WarpedWindowFeatures",
)


def test_the_main_objects_are_public():
    assert set(MAIN) <= set(detection.__all__)
    assert sorted(detection.__all__) == detection.__all__ and len(set(detection.__all__)) == len(detection.__all__)


@pytest.mark.parametrize("name", detection.__all__)
def test_every_public_name_imports_as_its_modules_object(name):
    value = getattr(detection, name)
    module = importlib.import_module(f"keras_spp.detection.{detection._EXPORTS[name]}")
    assert value is getattr(module, name)
    # A public function or class is defined where the map says (not re-exported from elsewhere).
    if callable(value) and hasattr(value, "__module__"):
        assert value.__module__ == module.__name__, name
    assert name in dir(detection)


def test_star_import_and_unknown_names():
    namespace = {}
    exec("from keras_spp.detection import *", namespace)
    assert set(detection.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="no attribute 'detect_all'"):
        detection.detect_all  # noqa: B018
    with pytest.raises(ImportError):
        exec("from keras_spp.detection import detect_all", {})


def test_submodules_still_import_by_name_and_the_package_loads_none():
    from keras_spp.detection import proposal_cache

    assert proposal_cache.__name__ == "keras_spp.detection.proposal_cache"
    code = (
        "import sys, keras_spp.detection; print(sorted(m for m in sys.modules if m.startswith('keras_spp.detection.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
