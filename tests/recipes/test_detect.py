"""recipes.detect refuses bad flags, missing inputs and a missing OpenCV with one line,
before it loads the detector or reads an image."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

from keras_spp.detection.detector import Detector
from recipes import detect


class Loaded(Exception):
    """Raised by the stand-in for Detector.load: the checks let the run through."""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A detector folder (its model never loaded), an image, and Detector.load stubbed."""

    def load(path):
        raise Loaded(path)

    monkeypatch.setattr(Detector, "load", load)
    detector = tmp_path / "detector"
    detector.mkdir()
    (detector / "model.keras").write_bytes(b"")
    (detector / "detector.json").write_text(json.dumps({"class_names": ["a"], "settings": {}, "rpn": None}))
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    return tmp_path, detector, image


def no_opencv(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now fails


def test_selective_search_without_opencv_is_refused_before_the_detector_loads(folder, monkeypatch):
    root, detector, image = folder
    no_opencv(monkeypatch)
    with pytest.raises(SystemExit) as exit:
        detect.main([str(image), "--detector", str(detector), "--out", str(root / "out")])
    message = str(exit.value.code)
    assert "has no RPN" in message and "opencv-contrib-python-headless" in message and "--proposals-from" in message
    assert not (root / "out").exists()


def test_opencv_without_its_contrib_modules_is_refused(folder, monkeypatch):
    root, detector, image = folder

    class PlainOpenCV:  # opencv-python: no cv2.ximgproc
        __version__ = "4"

    monkeypatch.setitem(sys.modules, "cv2", PlainOpenCV())
    with pytest.raises(SystemExit, match="contrib modules"):
        detect.main([str(image), "--detector", str(detector), "--out", str(root / "out")])


def test_an_rpn_detector_or_precomputed_proposals_need_no_opencv(folder, monkeypatch):
    root, detector, image = folder
    no_opencv(monkeypatch)
    np.savez(root / "boxes.npz", img=np.array([[0, 0, 10, 10]], np.float32))
    with pytest.raises(Loaded):
        detect.main([str(image), "--detector", str(detector), "--proposals-from", str(root / "boxes.npz")])
    (detector / "detector.json").write_text(json.dumps({"class_names": ["a"], "settings": {}, "rpn": {"k": 1}}))
    with pytest.raises(Loaded):
        detect.main([str(image), "--detector", str(detector)])


@pytest.mark.parametrize(
    "flag, value, takes",
    [
        ("--nms", "0", "a number in (0, 1]"),
        ("--nms", "nan", "a number in (0, 1]"),
        ("--max-detections", "0", "a whole number >= 1"),
        ("--vote-iou", "1.5", "a number in [0, 1]"),
        ("--min-score", "nan", "a finite number"),
        ("--max-proposals", "0", "a whole number >= 1"),
        ("--min-proposal-size", "-1", "a whole number >= 0"),
        ("--proposal-max-side", "-1", "a whole number >= 0"),
        ("--proposal-k", "0", "a whole number >= 1"),
    ],
)
def test_bad_numbers_end_the_parse_with_one_line(flag, value, takes, capsys):
    with pytest.raises(SystemExit) as exit:
        detect.parse_args(["x.jpg", flag, value])
    assert exit.value.code == 2
    assert f"error: argument {flag}: takes {takes}; got {value!r}" in capsys.readouterr().err


def test_paths_that_cannot_be_used_are_refused_before_the_detector_loads(folder, capsys):
    root, detector, image = folder
    (root / "a-file").write_text("")
    for argv, message in (
        ([str(root / "none.jpg")], f"argument images: takes an existing file; got {str(root / 'none.jpg')!r}"),
        ([str(root)], "argument images: takes an existing file"),
        ([str(image), "--detector", str(root)], "argument --detector: takes a folder written by train_detector"),
        ([str(image), "--out", str(root / "a-file")], "argument --out: takes a folder to write into"),
        ([str(image), "--proposals-from", str(root / "none.npz")], "argument --proposals-from: takes an existing"),
    ):
        argv = argv if "--detector" in argv else argv + ["--detector", str(detector)]
        with pytest.raises(SystemExit) as exit:
            detect.main(argv)
        assert exit.value.code == 2
        assert message in capsys.readouterr().err


def test_proposals_without_an_image_are_named_before_the_detector_loads(folder):
    root, detector, image = folder
    np.savez(root / "boxes.npz", other=np.array([[0, 0, 10, 10]], np.float32))
    with pytest.raises(SystemExit, match=r"--proposals-from .*boxes\.npz: .*img"):
        detect.main([str(image), "--detector", str(detector), "--proposals-from", str(root / "boxes.npz")])


def test_a_detector_that_does_not_load_is_named(folder, monkeypatch):
    root, detector, image = folder

    def corrupt(path):
        raise ValueError(f"{path}/detector.json is not what Detector.save writes")

    monkeypatch.setattr(Detector, "load", corrupt)
    (root / "boxes").mkdir()
    np.save(root / "boxes" / "img.npy", np.array([[0, 0, 10, 10]], np.float32))
    with pytest.raises(SystemExit, match=r"^--detector .*detector: .*not what Detector.save writes"):
        detect.main([str(image), "--detector", str(detector), "--proposals-from", str(root / "boxes")])
