"""The detection recipes end to end on a tiny real dataset (MNIST digits in VOC layout)."""

import json
import os
import re

import keras
import numpy as np
import pytest

from keras_spp.detection import pipeline
from keras_spp.detection.detector import Detector
from keras_spp.detection.pipeline_config import DetectorTrainingConfig
from keras_spp.detection.spp_net_detector import load_spp_net_detector
from keras_spp.models import zf5
from recipes import detect, train_detector


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("detector")
    keras.utils.set_random_seed(0)
    pretrained = zf5(10, width=0.125, fc_units=32)
    pretrained.save(root / "classifier.keras")
    out = root / "run"
    result = pipeline.train_detector(
        DetectorTrainingConfig(
            pretrained=str(root / "classifier.keras"),
            data_dir=str(root / "data"),
            mnist_images=(6, 3),
            steps=20,
            batch_size=32,
            conv_steps=3,
            negative_iou=(0, 0.5),
            out=str(out),
            verbose=0,
        )
    )
    assert result.detector is not None and result.replicas_in_sync == 1
    assert set(result.peak_rss_bytes) == {"before_training", "proposals_and_rpn", "heads", "evaluation"}
    assert result.evaluation is not None and len(result.svm_stats) == 10 and result.rpn_report is None
    return root, out


def test_training_writes_a_detector_and_its_evaluation(trained):
    root, out = trained
    for name in (
        "detector/model.keras",
        "detector/detector.json",
        "detector.keras",
        "results.json",
        "history.csv",
        "history_conv.csv",
        "curves.png",
        "detections.png",
    ):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    # Each stage's peak memory, and the caches' disk estimated before any work.
    assert set(results["peak_rss_bytes"]) == {"before_training", "proposals_and_rpn", "heads", "evaluation"}
    assert all(100e6 < v < 20e9 for v in results["peak_rss_bytes"].values())
    assert results["cache_bytes_estimate"]["window_features"] > 0
    assert results["images"] == {"train": 6, "test": 3}
    assert results["config"]["negative_iou"] == "0,0.5"
    assert len(results["svm"]) == 10
    detector = Detector.load(out / "detector")
    # The saved detector, loaded again, scores the held-out images as the run reported.
    from keras_spp.data.detection_sources import load_detection
    from keras_spp.detection import proposal_cache
    from keras_spp.detection.evaluation_settings import evaluation_summary

    test, _ = load_detection("mnist-detection", "test", data_dir=str(root / "data"), num_trainval=6, num_test=3)
    proposals = proposal_cache.proposals_for(
        test,
        cache_dir=proposal_cache.proposal_cache(str(root / "data"), "mnist-detection"),
        search=proposal_cache.trained_search_params(detector.metadata["proposals"]),
    )
    again = evaluation_summary(detector, test, proposals)
    for key in ("softmax", "softmax+bb", "svm", "svm+bb", "softmax+bb+vote", "svm+bb+vote"):
        assert again[key]["map_voc07"] == pytest.approx(results["evaluation"][key]["map_voc07"], abs=1e-6), key
    # The one-file model beside the folder: the same detector.
    model = load_spp_net_detector(out / "detector.keras")
    assert model.class_names == detector.class_names and model.metadata == detector.metadata
    in_one_file = evaluation_summary(model, test, proposals)
    for key in ("softmax+bb", "svm+bb+vote"):
        assert in_one_file[key]["map_voc07"] == again[key]["map_voc07"], key
    assert detector.class_names == tuple(str(d) for d in range(10))
    assert detector.metadata["scales"] == [688]
    assert detector.metadata["conv_steps"] == 3 and results["seconds"]["conv_fine_tune"] > 0


def test_detect_draws_every_readable_image(trained, tmp_path, capsys):
    root, out = trained
    images = sorted((root / "data").glob("mnist_detection_*/JPEGImages/test_*"))[:2]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    code = detect.main(
        [str(p) for p in images]
        + [
            str(broken),
            "--detector",
            str(out / "detector"),
            "--min-score",
            "0",
            "--vote-iou",
            "0.5",
            "--out",
            str(tmp_path / "pictures"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "broken.jpg: skipped" in printed
    assert sorted(os.listdir(tmp_path / "pictures")) == sorted(p.stem + ".png" for p in images)


def test_precomputed_proposals_are_used(trained, tmp_path, capsys, monkeypatch):
    from keras_spp.data.voc import load_image
    from keras_spp.detection import proposals as proposals_lib
    from keras_spp.detection.detector import DetectionSettings, Detector

    def no_search(*args, **kwargs):
        raise AssertionError("selective search ran although proposals were given")

    monkeypatch.setattr(proposals_lib, "selective_search", no_search)
    root, out = trained
    image = sorted((root / "data").glob("mnist_detection_*/JPEGImages/test_*"))[0]
    boxes = np.array([[0, 0, 50, 50], [10, 10, 80, 90]], np.float32)
    np.savez(tmp_path / "boxes.npz", **{image.stem: boxes})
    flags = ["--detector", str(out / "detector"), "--min-score", "0", "--out", str(tmp_path / "p")]
    code = detect.main([str(image), "--proposals-from", str(tmp_path / "boxes.npz"), *flags])
    assert code == 0 and (tmp_path / "p" / f"{image.stem}.png").exists()
    printed = capsys.readouterr().out
    # What the detector finds among exactly these two windows, printed as detect prints it.
    detector = Detector.load(str(out / "detector"))
    settings = DetectionSettings(detector.settings.scoring, score_threshold=0.0, vote_iou=detector.settings.vote_iou)
    want_boxes, want_scores, want_classes = detector.detect(load_image(image), boxes, settings)
    assert f"{image}: 2 proposals, {len(want_boxes)} detections" in printed
    assert 0 < len(want_boxes) <= 2 * len(detector.class_names)  # per-class NMS of two windows
    for box, score, cls in zip(want_boxes, want_scores, want_classes):
        y1, x1, y2, x2 = box
        assert (
            f"{detector.class_names[cls]:>12} {score:6.3f}  y1={y1:.0f} x1={x1:.0f} y2={y2:.0f} x2={x2:.0f}" in printed
        )


def test_missing_pretrained_model_is_explained(tmp_path):
    with pytest.raises(SystemExit, match="train an SPP classifier first"):
        train_detector.main(
            [
                "--pretrained",
                str(tmp_path / "none.keras"),
                "--data-dir",
                str(tmp_path),
                "--mnist-images",
                "2,1",
                "--out",
                str(tmp_path / "o"),
            ]
        )


@pytest.mark.parametrize("value", ["0.1", "0.3,0.2", "0.1,0.6", "-0.1,0.5", "a,b"])
def test_bad_negative_iou_is_explained(tmp_path, value):
    with pytest.raises(SystemExit, match="--negative-iou must"):
        train_detector.main(
            ["--pretrained", str(tmp_path / "none.keras"), f"--negative-iou={value}", "--out", str(tmp_path / "o")]
        )


def test_detection_benchmark_prints_the_table_with_speedups(trained, tmp_path, capsys):
    from benchmarks import detection

    root, out = trained
    report_path = tmp_path / "detection.json"
    # The same detector stands in for the multi-scale one: its rows, twin included, come after.
    code = detection.main(
        [
            "--detector",
            str(out / "detector"),
            "--detector5",
            str(out / "detector"),
            "--data-dir",
            str(root / "data"),
            "--test",
            "2",
            "--train",
            "4",
            "--windows",
            "64",
            "--steps",
            "5",
            "--dense-images",
            "1",
            "--svd-ranks",
            "fc6=4,fc7=4",
            "--out",
            str(report_path),
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    methods = [row["method"] for row in report["rows"]]
    assert methods == ["R-CNN"] + ["SPP-net (same training windows)", "SPP-net", "SPP-net + SVD"] * 2
    assert report["dense_windows_per_image"] == detection.DENSE_WINDOWS
    for row in report["rows"]:
        assert 0 <= row["map_softmax+bb"] <= 1 and 0 <= row["map_svm+bb"] <= 1
        assert row["total_s"] > 0 and row["dense_total_s"] > 0
    assert report["rows"][-1]["svd_ranks"] == {"fc6": 4, "fc7": 4}
    assert "at 2000 windows/image" in report["table"]


def test_detect_searches_as_the_detector_was_trained_unless_told_otherwise():
    trained = {"max": 500, "min_size": 8, "max_side": 400, "base_k": 100}
    args = detect.parse_args(["x.jpg"])
    assert detect._search_params(args, trained) == {"min_size": 8, "max_proposals": 500, "max_side": 400, "base_k": 100}
    args = detect.parse_args(["x.jpg", "--min-proposal-size", "12", "--proposal-max-side", "0", "--proposal-k", "50"])
    assert detect._search_params(args, trained) == {
        "min_size": 12,
        "max_proposals": 500,
        "max_side": None,
        "base_k": 50,
    }
    # A detector saved without proposal settings searches with selective search's defaults.
    assert detect._search_params(detect.parse_args(["x.jpg"]), {}) == {
        "min_size": 20,
        "max_proposals": 2000,
        "max_side": None,
        "base_k": None,
    }


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--context", "0.5", "--context must be 0 (off) or at least 1"),
        ("--context", "nan", "--context must be 0 (off) or at least 1"),
        ("--max-train-windows", "-3", "--max-train-windows must be 0"),
    ],
)
def test_bad_context_and_window_budget_are_explained(tmp_path, flag, value, message):
    (tmp_path / "c.keras").write_text("")
    with pytest.raises(SystemExit, match=re.escape(message)):
        train_detector.main(["--pretrained", str(tmp_path / "c.keras"), flag, value, "--out", str(tmp_path / "o")])


def test_context_and_fewer_training_windows(trained, tmp_path):
    root, first = trained
    out = tmp_path / "ctx"
    pipeline.train_detector(
        DetectorTrainingConfig(
            pretrained=str(root / "classifier.keras"),
            data_dir=str(root / "data"),
            mnist_images="6,3",
            steps=10,
            batch_size=32,
            context=2,
            max_train_windows=30,
            out=str(out),
            verbose=0,
        )
    )
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["context"] == 2.0 and results["config"]["max_train_windows"] == 30
    detector = Detector.load(out / "detector")
    roi = detector.model.get_layer("roi_features")
    assert roi.context == 2.0 and roi.output_dim == 2 * roi.window_dim
    assert detector.model.get_layer("fc6").get_weights()[0].shape[0] == roi.output_dim
    # The cache holds a subset of each training image's windows (every one near an
    # object kept: see test_training's subsampling test).
    (cache,) = (out / "cache").iterdir()
    assert cache.name.endswith("-c2-n30")
    # (With --conv-steps, the tuned conv layers' features sit beside, under conv-*.)
    (full,) = [d for d in (first / "cache").iterdir() if not d.name.startswith("conv-")]
    fewer = 0
    for path in sorted(cache.glob("*.npz")):
        kept, every = np.load(path)["windows"], np.load(full / path.name)["windows"]
        assert {tuple(w) for w in kept} <= {tuple(w) for w in every}
        fewer += len(kept) < len(every)
    assert len(list(cache.glob("*.npz"))) == 6 and fewer > 0
    # The benchmark's twins: SPP-net's pools context as the detector does, R-CNN's
    # single vectors start from the classifier's own fc6.
    from benchmarks import detection

    code = detection.main(
        [
            "--detector",
            str(out / "detector"),
            "--data-dir",
            str(root / "data"),
            "--test",
            "2",
            "--train",
            "3",
            "--windows",
            "32",
            "--steps",
            "3",
            "--dense-images",
            "1",
            "--out",
            str(tmp_path / "detection.json"),
        ]
    )
    assert code == 0
    rows = json.loads((tmp_path / "detection.json").read_text())["rows"]
    assert [row["method"] for row in rows] == ["R-CNN", "SPP-net (same training windows)", "SPP-net", "SPP-net + SVD"]


@pytest.fixture(scope="module")
def trained_rpn(trained):
    root, _ = trained
    out = root / "rpn-run"
    result = pipeline.train_detector(
        DetectorTrainingConfig(
            pretrained=str(root / "classifier.keras"),
            data_dir=str(root / "data"),
            mnist_images=(6, 3, 2),
            test_split="val",
            steps=10,
            batch_size=32,
            proposals="rpn",
            rpn_scales=(688,),
            rpn_steps=8,
            rpn_proposals=50,
            rpn_train_proposals=80,
            out=str(out),
            verbose=0,
        )
    )
    assert result.detector.proposer is not None and result.rpn_report["held_out_recall"]
    return root, out


def test_rpn_detector_trains_and_finds_its_own_proposals(trained_rpn):
    from keras_spp.data.voc import load_image

    root, out = trained_rpn
    for name in ("detector/rpn.keras", "history_rpn.csv", "curves_rpn.png", "detections.png"):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert results["held_out_split"] == "val" and results["images"] == {"train": 6, "test": 2}
    assert results["rpn"]["anchor_stats"]["records"] == 6
    assert results["rpn"]["anchor_stats"]["positives_mean"] >= 1  # every object has its best anchor
    assert set(results["rpn"]["held_out_recall"]) == {"50", "100", "300", "1000", "all"}
    assert results["seconds"]["rpn_training"] > 0
    detector = Detector.load(out / "detector")
    assert detector.proposer is not None and detector.proposer.scales == (688,)
    assert detector.metadata["proposals"]["method"] == "rpn"
    (image_path,) = sorted((root / "data").glob("mnist_detection_*_val2/JPEGImages/val_000000.jpg"))
    image = load_image(image_path)
    boxes, scores, classes = detector.detect(image)
    # The same as detecting on the RPN's own proposals the long way (conv5 run again).
    proposals = detector.proposer.proposals_for([_Example(image_path)], load_image)[0]["x"]
    assert 0 < len(proposals) <= 50
    again = detector.detect(image, proposals)
    np.testing.assert_allclose(boxes, again[0], atol=1e-3)
    np.testing.assert_allclose(scores, again[1], atol=1e-5)


class _Example:
    def __init__(self, path):
        self.image_path, self.image_id = path, "x"


def test_rpn_detector_detects_without_opencv(trained_rpn, tmp_path):
    import subprocess
    import sys

    root, out = trained_rpn
    image = sorted((root / "data").glob("mnist_detection_*_val2/JPEGImages/val_*"))[0]
    script = (
        "import sys; sys.modules['cv2'] = None\n"  # import cv2 now fails
        "from recipes import detect\n"
        f"raise SystemExit(detect.main([{str(image)!r}, '--detector', {str(out / 'detector')!r}, "
        f"'--min-score', '0', '--out', {str(tmp_path)!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "RPN proposals" in done.stdout and (tmp_path / f"{image.stem}.png").exists()


def test_a_detector_without_rpn_asks_for_proposals(trained):
    _, out = trained
    detector = Detector.load(out / "detector")
    with pytest.raises(ValueError, match="--proposals rpn"):
        detector.detect(np.zeros((64, 64, 3), np.uint8))


def test_a_corrupt_pretrained_model_is_named(trained, tmp_path):
    root, _ = trained
    (tmp_path / "c.keras").write_bytes(b"not a zip")
    with pytest.raises(SystemExit, match=r"--pretrained .*c\.keras is not a \.keras archive"):
        train_detector.main(
            [
                "--pretrained",
                str(tmp_path / "c.keras"),
                "--data-dir",
                str(root / "data"),
                "--mnist-images",
                "6,3",
                "--out",
                str(tmp_path / "o"),
            ]
        )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--rpn-scales", "400"], "--rpn-scales must be among --scales"),
        (["--rpn-steps", "0"], "argument --rpn-steps: takes a whole number >= 1; got '0'"),
        (["--mnist-images", "1,2,3,4"], "--mnist-images must be two or three counts"),
    ],
)
def test_bad_rpn_flags_are_explained(tmp_path, flags, message, capsys):
    (tmp_path / "c.keras").write_text("")
    with pytest.raises(SystemExit) as stopped:
        train_detector.main(
            ["--pretrained", str(tmp_path / "c.keras"), "--proposals", "rpn", *flags, "--out", str(tmp_path / "o")]
        )
    # A value the flag's type refuses ends the parse (exit 2, the message on stderr);
    # a combination of flags is refused with the message itself.
    assert re.search(re.escape(message), str(stopped.value) + capsys.readouterr().err)


def test_proposals_benchmark_compares_selective_search_and_the_rpn(trained, trained_rpn, tmp_path):
    from benchmarks import proposals as benchmark

    root, ss_out = trained
    _, rpn_out = trained_rpn
    out = tmp_path / "proposals.json"
    assert (
        benchmark.main(
            [
                "--ss-detector",
                str(ss_out / "detector"),
                "--rpn-detector",
                str(rpn_out / "detector"),
                "--data-dir",
                str(root / "data"),
                "--timed",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["images"] == 3 and report["timed_images"] == 2 and report["split"] == "test"
    ss, rpn = report["selective_search"], report["rpn"]
    # The export serves what the Keras detector finds, for both kinds of proposals.
    assert ss["served_max_abs_diff"] <= 1e-4 and rpn["served_max_abs_diff"] <= 1e-4
    assert 0 < rpn["proposals_per_image"] <= 50  # --rpn-proposals of the fixture
    assert rpn["scales"] == [688] and ss["settings"]["max_proposals"] == 2000
    assert set(rpn["recall@0.5"]) == {"50", "100", "300", "1000", "all"}
    for key in ("proposals_s", "end_to_end_keras_s", "end_to_end_saved_model_s"):
        assert key in ss and key in rpn
    assert {"end_to_end_speedup_keras", "end_to_end_speedup_saved_model", "rpn_proposal_share"} <= set(rpn)


def test_proposals_benchmark_refuses_a_detector_without_rpn(trained):
    from benchmarks import proposals as benchmark

    _, ss_out = trained
    with pytest.raises(SystemExit, match="has no RPN: train it with --proposals rpn"):
        benchmark.main(["--ss-detector", str(ss_out / "detector"), "--rpn-detector", str(ss_out / "detector")])


def _short_run(root, out, *flags):
    return [
        "--pretrained",
        str(root / "classifier.keras"),
        "--data-dir",
        str(root / "data"),
        "--mnist-images",
        "6,3",
        "--steps",
        "10",
        "--batch-size",
        "32",
        "--out",
        str(out),
        "--verbose",
        "0",
        *flags,
    ]


def test_a_cache_over_its_budget_is_refused_before_any_work(trained, tmp_path, capsys):
    root, _ = trained
    out = tmp_path / "budget"
    with pytest.raises(SystemExit, match=r"needs an estimated .* GB .*cache budget.*--max-train-windows"):
        train_detector.main(_short_run(root, out, "--cache-budget", "1e-6"))
    assert not (out / "cache").exists() or not any((out / "cache").rglob("*.npz"))
    assert not (out / "detector").exists()


def test_a_non_finite_loss_stops_the_run_and_saves_no_detector(trained, tmp_path):
    root, _ = trained
    out = tmp_path / "nan"
    with pytest.raises(SystemExit, match=r"fine-tuning fc6-fc8: the loss became (nan|inf).*nothing was saved"):
        train_detector.main(_short_run(root, out, "--optimizer", "sgd", "--lr", "1e30"))
    assert not (out / "detector").exists() and not (out / "results.json").exists()


def test_the_conv5_store_trains_the_same_detector(trained, tmp_path):
    root, _ = trained
    runs = {}
    for store in ("features", "conv5"):
        out = tmp_path / store
        argv = _short_run(root, out, "--window-store", store, "--seed", "4")
        if store == "features":  # the command line
            assert train_detector.main(argv) == 0
        else:  # the library, with the settings the flags make
            config = train_detector.make_config(train_detector.parse_args(argv))
            assert config.window_store == "conv5" and config.seed == 4
            pipeline.train_detector(config)
        runs[store] = json.loads((out / "results.json").read_text())
    # The same features bit for bit, so the same training, regressors and SVMs.
    assert runs["features"]["svm"] == runs["conv5"]["svm"]
    assert runs["features"]["box_regression_windows"] == runs["conv5"]["box_regression_windows"]
    a = Detector.load(tmp_path / "features" / "detector").model.get_weights()
    b = Detector.load(tmp_path / "conv5" / "detector").model.get_weights()
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--window-size", "0"], "argument --window-size: takes a whole number >= 1"),
        (["--scales", "0"], "argument --scales: takes comma-separated whole numbers, each >= 1"),
        (["--levels", "6,0"], "argument --levels: takes comma-separated whole numbers, each >= 1"),
        (["--batch-size", "0"], "argument --batch-size: takes a whole number >= 2"),
        (["--max-train", "0"], "argument --max-train: takes a whole number >= 1"),
        (["--lr", "nan"], "argument --lr: takes a finite number > 0"),
        (["--rpn-aspect-ratios", "1,0"], "argument --rpn-aspect-ratios"),
        (["--out", "README.md"], "argument --out: takes a folder to write into"),
    ],
)
def test_bad_values_end_the_parse_before_any_work(flags, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        train_detector.main(flags)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_a_folder_as_pretrained_model_is_named(tmp_path):
    with pytest.raises(SystemExit, match="--pretrained must be a classifier's .keras file; .* is a folder"):
        train_detector.main(["--pretrained", str(tmp_path), "--out", str(tmp_path / "o")])
