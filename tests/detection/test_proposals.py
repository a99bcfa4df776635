import importlib
import logging
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import scipy.io
import skimage.data
from PIL import Image

from keras_spp.data.detection_examples import DetectionExample
from keras_spp.data.voc import load_image
from keras_spp.detection import proposals
from keras_spp.detection.proposals import (
    compute_proposals,
    load_precomputed_proposals,
    proposal_cache_dir,
    selective_search,
)

MODULE_DIR = os.path.dirname(proposals.__file__)

# Small images keep each search at a few tenths of a second.
SIZES = {"astronaut": (128, 128), "chelsea": (100, 150), "coffee": (100, 150)}


def _small(name):
    height, width = SIZES[name]
    return cv2.resize(getattr(skimage.data, name)(), (width, height), interpolation=cv2.INTER_AREA)


def _synthetic():
    image = np.full([96, 128, 3], 40, np.uint8)
    image[10:50, 15:70] = (200, 30, 30)
    image[40:90, 60:120] = (30, 180, 60)
    cv2.circle(image, (100, 25), 15, (250, 250, 0), -1)
    return image


IMAGES = {name: _small(name) for name in SIZES}
IMAGES["synthetic"] = _synthetic()


def _example(image_id, path, image=None):
    height, width = image.shape[:2] if image is not None else (1, 1)
    return DetectionExample(image_id, str(path), height, width, np.zeros([0, 4]), [], [])


def _write_images(folder, names=("astronaut", "chelsea", "synthetic")):
    examples = []
    for name in names:
        path = folder / f"{name}.png"
        Image.fromarray(IMAGES[name]).save(path)  # lossless: the same pixels come back
        examples.append(_example(name, path, IMAGES[name]))
    return examples


def _opencv_rects(image, **configure):
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image[:, :, ::-1]))
    search.switchToSelectiveSearchFast(**configure)
    return np.asarray(search.process())


# --- selective_search ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_boxes_are_valid(name):
    image = IMAGES[name]
    boxes = selective_search(image, min_size=20, max_proposals=100)
    height, width = image.shape[:2]
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert 0 < len(boxes) <= 100
    y1, x1, y2, x2 = boxes.T
    assert np.all((0 <= y1) & (y2 <= height) & (0 <= x1) & (x2 <= width))
    assert np.all(y2 - y1 >= 20) and np.all(x2 - x1 >= 20)
    assert len(np.unique(boxes, axis=0)) == len(boxes)
    np.testing.assert_array_equal(boxes, np.round(boxes))


def test_rects_are_converted_from_x_y_w_h():
    image = IMAGES["astronaut"]
    rects = _opencv_rects(image)
    boxes = selective_search(image, min_size=0, max_proposals=None)
    x, y, w, h = rects.T
    expected = np.stack([y, x, y + h, x + w], axis=1).astype(np.float32)
    # Unseeded OpenCV ranks differently; the sets must agree.
    assert sorted(map(tuple, boxes.tolist())) == sorted(map(tuple, expected.tolist()))
    assert np.any(boxes[:, 3] == image.shape[1]) and np.any(boxes[:, 2] == image.shape[0])


def test_min_size_drops_exactly_the_small_boxes_keeping_order():
    image = IMAGES["coffee"]
    everything = selective_search(image, min_size=0, max_proposals=None)
    heights, widths = everything[:, 2] - everything[:, 0], everything[:, 3] - everything[:, 1]
    assert np.any(widths < 20)  # the filter has work to do
    for min_size in (5, 20, 37.5):
        kept = everything[(heights >= min_size) & (widths >= min_size)]
        np.testing.assert_array_equal(selective_search(image, min_size=min_size, max_proposals=None), kept)


def test_max_proposals_keeps_the_best_ranked():
    image = IMAGES["astronaut"]
    everything = selective_search(image, max_proposals=None)
    assert len(everything) > 50
    np.testing.assert_array_equal(selective_search(image, max_proposals=50), everything[:50])
    np.testing.assert_array_equal(selective_search(image, max_proposals=10**6), everything)
    assert selective_search(image, max_proposals=0).shape == (0, 4)


def test_repeated_calls_give_the_same_order_though_plain_opencv_does_not():
    image = IMAGES["chelsea"]
    first, second = _opencv_rects(image), _opencv_rects(image)
    # OpenCV ranks with C's rand(), which advances between calls.
    assert sorted(map(tuple, first.tolist())) == sorted(map(tuple, second.tolist()))
    assert not np.array_equal(first, second)
    results = [selective_search(image, max_proposals=None) for _ in range(3)]
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_seed_changes_the_order_not_the_boxes():
    image = IMAGES["astronaut"]
    a = selective_search(image, max_proposals=None, seed=0)
    b = selective_search(image, max_proposals=None, seed=12345)
    assert not np.array_equal(a, b)
    assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist()))
    np.testing.assert_array_equal(selective_search(image, max_proposals=None, seed=12345), b)


def test_same_boxes_in_two_fresh_processes(tmp_path):
    image = IMAGES["astronaut"]
    np.save(tmp_path / "image.npy", image)
    # The module imported on its own, as a top-level module: a fresh process without
    # TensorFlow starts in a fraction of a second instead of several.
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        sys.path.insert(0, sys.argv[1])
        from proposals import selective_search
        image = np.load(sys.argv[2])
        np.save(sys.argv[3], selective_search(image, max_proposals=None, seed=3))
        """
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, MODULE_DIR, str(tmp_path / "image.npy"), str(tmp_path / f"boxes{i}.npy")],
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr.decode()[-2000:]
    here = selective_search(image, max_proposals=None, seed=3)  # this process's rand() has moved on
    np.testing.assert_array_equal(np.load(tmp_path / "boxes0.npy"), here)
    np.testing.assert_array_equal(np.load(tmp_path / "boxes1.npy"), here)


@pytest.mark.parametrize("mode", ["quality", "single"])
def test_other_modes(mode):
    image = IMAGES["synthetic"]
    boxes = selective_search(image, mode=mode, max_proposals=None)
    assert len(boxes) > 0
    np.testing.assert_array_equal(selective_search(image, mode=mode, max_proposals=None), boxes)


def test_grayscale_is_repeated_to_three_channels():
    gray = cv2.cvtColor(IMAGES["coffee"], cv2.COLOR_RGB2GRAY)
    expected = selective_search(np.repeat(gray[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(selective_search(gray), expected)
    np.testing.assert_array_equal(selective_search(gray[:, :, None]), expected)


def test_non_contiguous_input():
    image = IMAGES["astronaut"]
    strided = np.repeat(image, 2, axis=1)[:, ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(selective_search(strided), selective_search(image))


@pytest.mark.parametrize(
    "shape, min_size, expected",
    [
        ((10, 10, 3), 20, 0),  # smaller than min_size: no search at all
        ((0, 30, 3), 0, 0),
        ((30, 0), 0, 0),
        ((60, 80, 3), 20, 1),  # constant: one region, the whole image
        ((10, 10, 3), 0, 1),
    ],
)
def test_small_and_constant_images(shape, min_size, expected):
    boxes = selective_search(np.full(shape, 77, np.uint8), min_size=min_size)
    assert boxes.shape == (expected, 4) and boxes.dtype == np.float32
    if expected:
        np.testing.assert_array_equal(boxes, [[0, 0, shape[0], shape[1]]])


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros([20, 20, 3], np.float32), "must be uint8"),
        (np.zeros([20, 20, 3], bool), "must be uint8"),
        (np.zeros([20, 20, 4], np.uint8), r"\[H, W, 3\] RGB or grayscale.*alpha"),
        (np.zeros([1, 20, 20, 3], np.uint8), r"got shape \(1, 20, 20, 3\)"),
        (np.zeros([20], np.uint8), "got shape"),
    ],
)
def test_bad_images(image, match):
    with pytest.raises(ValueError, match=match):
        selective_search(image)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "slow"}, r"`mode` must be one of \('fast', 'quality', 'single'\)"),
        ({"min_size": -1}, "`min_size`"),
        ({"min_size": float("nan")}, "`min_size`"),
        ({"min_size": "20"}, "`min_size`"),
        ({"max_proposals": -5}, "`max_proposals`"),
        ({"max_proposals": 2.5}, "`max_proposals`"),
        ({"seed": -1}, r"`seed` must be an integer in \[0, 4294967295\] \(it seeds C's srand\)"),
        ({"seed": 2**32}, "`seed`"),
        ({"base_k": 0}, r"`base_k` must be a positive integer \(e.g. 150\) or None"),
        ({"base_k": 2.5}, "`base_k`"),
        ({"base_k": True}, "`base_k`"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        selective_search(IMAGES["synthetic"], **kwargs)
    with pytest.raises(ValueError, match=match):
        proposal_cache_dir("cache", **kwargs)


# --- compute_proposals --------------------------------------------------------------


@pytest.fixture
def counting(monkeypatch):
    """Counts the searches run in this process."""
    calls = []
    original = proposals._selective_search_bgr

    def counted(bgr, **params):
        calls.append(bgr.shape)
        return original(bgr, **params)

    monkeypatch.setattr(proposals, "_selective_search_bgr", counted)
    return calls


def test_cache_computes_once_then_reads(tmp_path, counting):
    examples = _write_images(tmp_path)
    cache = tmp_path / "cache"
    first = compute_proposals(examples, cache, workers=1, progress=False, max_proposals=300)
    assert list(first) == ["astronaut", "chelsea", "synthetic"]
    for example in examples:
        expected = selective_search(IMAGES[example.image_id], max_proposals=300)
        np.testing.assert_array_equal(first[example.image_id], expected)
    assert len(counting) == 3 + 3

    folder = proposal_cache_dir(cache, max_proposals=300)
    files = sorted(name for name in os.listdir(folder) if not name.startswith("."))
    assert files == ["astronaut.npy", "chelsea.npy", "params.json", "synthetic.npy"]
    mtimes = {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in files}

    second = compute_proposals(examples[::-1], cache, workers=1, progress=False, max_proposals=300)
    assert len(counting) == 6
    assert list(second) == ["synthetic", "chelsea", "astronaut"]
    for image_id, boxes in first.items():
        np.testing.assert_array_equal(second[image_id], boxes)
    assert mtimes == {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in files}


def test_changed_parameters_use_another_folder(tmp_path, counting):
    examples = _write_images(tmp_path, names=("synthetic",))
    cache = tmp_path / "cache"
    compute_proposals(examples, cache, workers=1, progress=False)
    compute_proposals(examples, cache, workers=1, progress=False, min_size=20.0, mode="fast")  # same
    assert len(counting) == 1
    small = compute_proposals(examples, cache, workers=1, progress=False, min_size=5)
    assert len(counting) == 2
    compute_proposals(examples, cache, workers=1, progress=False, mode="single")
    compute_proposals(examples, cache, workers=1, progress=False, seed=9)
    compute_proposals(examples, cache, workers=1, progress=False, max_proposals=10)
    assert len(counting) == 5
    np.testing.assert_array_equal(small["synthetic"], selective_search(IMAGES["synthetic"], min_size=5))
    folders = {proposal_cache_dir(cache)} | {
        proposal_cache_dir(cache, **change)
        for change in ({"min_size": 5}, {"mode": "single"}, {"seed": 9}, {"max_proposals": 10})
    }
    assert len(folders) == 5 and folders == {str(path) for path in cache.iterdir()}
    params = (cache / os.path.basename(proposal_cache_dir(cache, seed=9)) / "params.json").read_text()
    assert '"seed": 9' in params and '"opencv"' in params


@pytest.fixture
def standalone(monkeypatch):
    """This module imported as the top-level module ``proposals``.

    Spawned workers import the module their task function lives in; through the
    package that means TensorFlow, seconds per worker. Imported this way they load
    only OpenCV, and run the same code.
    """
    monkeypatch.syspath_prepend(MODULE_DIR)
    monkeypatch.delitem(sys.modules, "proposals", raising=False)
    module = importlib.import_module("proposals")
    yield module
    sys.modules.pop("proposals", None)


def test_parallel_workers_match_this_process(tmp_path, standalone):
    examples = _write_images(tmp_path)
    parallel = standalone.compute_proposals(examples, tmp_path / "a", workers=2, progress=False, max_proposals=None)
    serial = compute_proposals(examples, tmp_path / "b", workers=1, progress=False, max_proposals=None)
    assert list(parallel) == list(serial)
    for image_id in serial:
        np.testing.assert_array_equal(parallel[image_id], serial[image_id])
    assert sorted(os.listdir(proposal_cache_dir(tmp_path / "a", max_proposals=None))) == sorted(
        os.listdir(proposal_cache_dir(tmp_path / "b", max_proposals=None))
    )


def test_unreadable_images_give_no_boxes_and_are_not_cached(tmp_path, caplog, counting):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    examples = [
        _example("broken", tmp_path / "broken.jpg"),
        _example("missing", tmp_path / "missing.jpg"),
        *_write_images(tmp_path, names=("synthetic",)),
    ]
    with caplog.at_level(logging.WARNING, logger="keras_spp.detection.proposals"):
        boxes = compute_proposals(examples, tmp_path / "cache", workers=1, progress=False)
    assert boxes["broken"].shape == (0, 4) and boxes["missing"].shape == (0, 4)
    assert len(boxes["synthetic"]) > 0
    assert str(tmp_path / "broken.jpg") in caplog.text and str(tmp_path / "missing.jpg") in caplog.text
    folder = proposal_cache_dir(tmp_path / "cache")
    assert sorted(os.listdir(folder)) == ["params.json", "synthetic.npy"]


def test_corrupt_cache_file_is_recomputed(tmp_path, caplog, counting):
    examples = _write_images(tmp_path, names=("synthetic",))
    first = compute_proposals(examples, tmp_path / "cache", workers=1, progress=False)
    path = os.path.join(proposal_cache_dir(tmp_path / "cache"), "synthetic.npy")
    with open(path, "wb") as file:
        file.write(b"\x93NUMPY garbage")
    with caplog.at_level(logging.WARNING, logger="keras_spp.detection.proposals"):
        again = compute_proposals(examples, tmp_path / "cache", workers=1, progress=False)
    assert path in caplog.text and len(counting) == 2
    np.testing.assert_array_equal(again["synthetic"], first["synthetic"])
    np.testing.assert_array_equal(np.load(path), first["synthetic"])


def test_images_are_decoded_as_every_other_part_of_keras_spp_decodes_them(tmp_path):
    # A 16-bit gray PNG: scaled to its top 8 bits (Pillow's convert("RGB") would clip it to white).
    gray = IMAGES["synthetic"][..., 1]
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    rgba = np.dstack([IMAGES["synthetic"], np.full(gray.shape, 9, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    examples = [_example("deep", tmp_path / "deep.png", gray), _example("rgba", tmp_path / "rgba.png", rgba)]
    boxes = compute_proposals(examples, tmp_path / "cache", workers=1, progress=False)
    for example in examples:
        expected = selective_search(load_image(example.image_path))
        np.testing.assert_array_equal(boxes[example.image_id], expected)
    np.testing.assert_array_equal(boxes["deep"], selective_search(gray))
    assert len(boxes["deep"]) > 1


def test_size_mismatch_is_logged(tmp_path, caplog):
    (example,) = _write_images(tmp_path, names=("synthetic",))
    wrong = DetectionExample("synthetic", example.image_path, 50, 50, np.zeros([0, 4]), [], [])
    with caplog.at_level(logging.WARNING, logger="keras_spp.detection.proposals"):
        boxes = compute_proposals([wrong], tmp_path / "cache", workers=1, progress=False)
    assert "96x128" in caplog.text and "50x50" in caplog.text
    assert len(boxes["synthetic"]) > 0


def test_ids_repeated_unsafe_and_invalid(tmp_path, counting):
    (example,) = _write_images(tmp_path, names=("synthetic",))
    odd = DetectionExample("a/b c", example.image_path, 96, 128, np.zeros([0, 4]), [], [])
    boxes = compute_proposals([odd, odd, example], tmp_path / "cache", workers=1, progress=False)
    assert list(boxes) == ["a/b c", "synthetic"] and len(counting) == 2
    loaded = load_precomputed_proposals(proposal_cache_dir(tmp_path / "cache"))
    assert set(loaded) == {"a/b c", "synthetic"}
    np.testing.assert_array_equal(loaded["a/b c"], boxes["synthetic"])

    clash = DetectionExample("synthetic", str(tmp_path / "other.png"), 96, 128, np.zeros([0, 4]), [], [])
    with pytest.raises(ValueError, match="appears with two files"):
        compute_proposals([example, clash], tmp_path / "cache", progress=False)
    with pytest.raises(ValueError, match="DetectionExample records"):
        compute_proposals(["synthetic.png"], tmp_path / "cache", progress=False)
    with pytest.raises(ValueError, match="`workers`"):
        compute_proposals([example], tmp_path / "cache", workers=0)
    assert compute_proposals([], tmp_path / "cache", progress=False) == {}


def test_any_id_gets_its_own_cache_file_inside_the_folder(tmp_path, counting):
    (example,) = _write_images(tmp_path, names=("synthetic",))
    ids = ["x" * 300, "x" * 301, "..", "a/../../escaped", ".hidden", "2008/000123"]
    examples = [DetectionExample(i, example.image_path, 96, 128, np.zeros([0, 4]), [], []) for i in ids]
    boxes = compute_proposals(examples, tmp_path / "cache", workers=1, progress=False)
    folder = proposal_cache_dir(tmp_path / "cache")
    names = sorted(os.listdir(folder))
    assert len(names) == len(ids) + 1 and not any(name.startswith(".") for name in names)
    assert sorted(os.listdir(tmp_path)) == ["cache", "synthetic.png"]  # nothing escaped
    again = compute_proposals(examples, tmp_path / "cache", workers=1, progress=False)
    assert len(counting) == len(ids)  # the second call read every file back
    read = load_precomputed_proposals(folder, ids)
    for image_id in ids:
        np.testing.assert_array_equal(again[image_id], boxes[image_id])
        np.testing.assert_array_equal(read[image_id], boxes[image_id])
    assert {".hidden", "2008/000123", ".."} <= set(load_precomputed_proposals(folder))


# --- load_precomputed_proposals -----------------------------------------------------

YXYX = {
    "000001": np.array([[10, 20, 110, 220], [0, 0, 5, 7]], np.float64),
    "000002": np.array([[3, 4, 50, 60]], np.float64),
    "000003": np.zeros([0, 4]),
}


def test_folder_and_npz_in_both_orders(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    for image_id, boxes in YXYX.items():
        np.save(folder / f"{image_id}.npy", boxes[:, [1, 0, 3, 2]])
    np.savez(tmp_path / "boxes.npz", **YXYX)

    from_folder = load_precomputed_proposals(folder, ["000002", "000001"], box_order="xyxy")
    assert list(from_folder) == ["000002", "000001"]
    from_npz = load_precomputed_proposals(tmp_path / "boxes.npz", None)
    assert list(from_npz) == list(YXYX)
    for image_id, expected in YXYX.items():
        assert from_npz[image_id].dtype == np.float32 and from_npz[image_id].shape == expected.shape
        np.testing.assert_array_equal(from_npz[image_id], expected)
    for image_id in from_folder:
        np.testing.assert_array_equal(from_folder[image_id], YXYX[image_id])
    assert sorted(load_precomputed_proposals(folder, box_order="xyxy")) == sorted(YXYX)
    shifted = load_precomputed_proposals(tmp_path / "boxes.npz", ["000002"], one_based=True)
    np.testing.assert_array_equal(shifted["000002"], [[2, 3, 50, 60]])


def test_rcnn_mat_file_is_one_based(tmp_path):
    ids = np.empty([1, 2], object)
    ids[0, 0], ids[0, 1] = "000005", "000007"
    cells = np.empty([1, 2], object)
    cells[0, 0] = np.array([[1, 1, 100, 200], [11, 21, 30, 40]], np.float64)  # 1-based, inclusive
    cells[0, 1] = np.zeros([0, 4])
    scipy.io.savemat(tmp_path / "voc_2007_test.mat", {"images": ids, "boxes": cells})

    boxes = load_precomputed_proposals(tmp_path / "voc_2007_test.mat", ["000007", "000005"])
    assert list(boxes) == ["000007", "000005"]
    np.testing.assert_array_equal(boxes["000005"], [[0, 0, 100, 200], [10, 20, 30, 40]])
    assert boxes["000007"].shape == (0, 4)
    raw = load_precomputed_proposals(tmp_path / "voc_2007_test.mat", ["000005"], box_order="xyxy", one_based=False)
    np.testing.assert_array_equal(raw["000005"], [[1, 1, 200, 100], [21, 11, 40, 30]])

    scipy.io.savemat(tmp_path / "other.mat", {"boxes": cells})
    with pytest.raises(ValueError, match="`boxes` and `images`"):
        load_precomputed_proposals(tmp_path / "other.mat")


def test_precomputed_errors(tmp_path):
    np.savez(tmp_path / "boxes.npz", **YXYX)
    with pytest.raises(KeyError, match=r"'000009'.*boxes\.npz"):
        load_precomputed_proposals(tmp_path / "boxes.npz", ["000001", "000009"])
    with pytest.raises(KeyError, match=r"'000009'.*000009\.npy"):
        load_precomputed_proposals(tmp_path, ["000009"])
    with pytest.raises(ValueError, match=r"`box_order` must be one of \('yxyx', 'xyxy'\)"):
        load_precomputed_proposals(tmp_path / "boxes.npz", box_order="xywh")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_precomputed_proposals(tmp_path / "nowhere.npz")
    np.savez(tmp_path / "bad.npz", a=np.zeros([3, 5]))
    with pytest.raises(ValueError, match=r"'a'.*\[K, 4\]"):
        load_precomputed_proposals(tmp_path / "bad.npz")
    np.savez(tmp_path / "nan.npz", a=np.array([[0, 0, 5, 5], [np.nan, 0, 5, 5], [0, 0, np.inf, 5]]))
    with pytest.raises(ValueError, match=r"image 'a' in .*nan\.npz: 2 of 3 boxes hold NaN or infinity"):
        load_precomputed_proposals(tmp_path / "nan.npz")


def test_max_side_searches_a_smaller_copy_and_maps_boxes_back():
    image = np.asarray(Image.fromarray(skimage.data.coffee()).resize((300, 200)))
    small = cv2.resize(image, (150, 100), interpolation=cv2.INTER_AREA)
    got = selective_search(image, min_size=20, max_side=150)
    assert len(got) and np.all(got[:, 2:] <= [200, 300]) and np.all(got >= 0)
    assert np.all(got[:, 2] - got[:, 0] >= 20) and np.all(got[:, 3] - got[:, 1] >= 20)
    # exactly the half-size search's boxes, doubled, in the same order
    np.testing.assert_array_equal(got, selective_search(small, min_size=10) * 2)
    assert proposal_cache_dir("c", max_side=150) != proposal_cache_dir("c")
    with pytest.raises(ValueError, match="max_side"):
        selective_search(image, max_side=0)


def test_base_k_sets_the_segmentation_scales():
    image = IMAGES["astronaut"]
    # OpenCV's default is k = 150, 300, 450: the same boxes in the same order.
    np.testing.assert_array_equal(selective_search(image, base_k=150), selective_search(image))
    fine = selective_search(image, min_size=0, max_proposals=None, base_k=50)
    rects = _opencv_rects(image, base_k=50, inc_k=50)
    expected = np.stack([rects[:, 1], rects[:, 0], rects[:, 1] + rects[:, 3], rects[:, 0] + rects[:, 2]], 1)
    # OpenCV's own call is not seeded, so its order differs; the boxes are the same.
    np.testing.assert_array_equal(np.unique(fine, axis=0), np.unique(expected, axis=0))
    # Finer segmentations give more regions, hence more boxes.
    assert len(fine) > len(selective_search(image, min_size=0, max_proposals=None))
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image[:, :, ::-1]))
    search.switchToSingleStrategy(k=50)
    x, y, w, h = np.asarray(search.process()).T
    single = selective_search(image, mode="single", min_size=0, max_proposals=None, base_k=50)
    np.testing.assert_array_equal(np.unique(single, axis=0), np.unique(np.stack([y, x, y + h, x + w], 1), axis=0))
    # Caches made before the option existed keep their folder; a set k gets its own.
    assert proposal_cache_dir("c", base_k=None) == proposal_cache_dir("c") != proposal_cache_dir("c", base_k=50)
