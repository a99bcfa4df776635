import json
import subprocess
import sys

import numpy as np

from benchmarks import pooling


def test_baselines_agree_with_the_op():
    from keras_spp.ops import roi_pyramid_pool

    features, boxes, indices = pooling.roi_problem(30, 7, 9, 4)
    exact = roi_pyramid_pool(features, boxes, indices).numpy()
    np.testing.assert_array_equal(pooling.segment_max_baseline(features, boxes)(features).numpy(), exact)
    approx = pooling.crop_and_resize_baseline(features, boxes, indices).numpy()
    assert approx.shape == exact.shape


def test_benchmark_prints_json_for_a_small_problem():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.pooling",
            "--boxes",
            "20",
            "--map",
            "6,7,4",
            "--repeats",
            "1",
            "--image-batch",
            "1",
            "--zf5-width",
            "0.0625",
            "--configs",
            "keras_spp_xla,segment_max",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    report = json.loads(out)
    roi = report["roi_pyramid_pool"]
    assert roi["keras_spp_xla"]["max_abs_diff_vs_exact"] == 0.0
    assert roi["speedup_xla_vs"]["segment_max"]["forward"] > 0
    assert set(report["image_level"]["xla"]) == {"pool5_6x6_ms", "spp_6_3_2_1_ms", "spp_overhead"}
    assert report["machine"]["cores"] >= 1


def test_speedups_are_each_configs_median_over_xlas(monkeypatch, tmp_path):
    """Children that report set medians: the speedups are known numbers, a failed
    child is reported as an error and left out of them."""
    medians = {"keras_spp_xla": (2.0, 8.0), "segment_max": (10.0, 12.0), "keras_spp_graph": (3.0, 4.0)}

    def run(cmd, **kwargs):
        name = cmd[cmd.index("--_one") + 1]
        if name == "crop_and_resize":
            return subprocess.CompletedProcess(cmd, 1, "", "Traceback ...\nRuntimeError: no kernel")
        forward, backward = medians[name]
        result = {"forward": {"median_ms": forward}, "forward_backward": {"median_ms": backward}}
        return subprocess.CompletedProcess(cmd, 0, json.dumps(result) + "\n", "")

    monkeypatch.setattr(pooling.subprocess, "run", run)
    monkeypatch.setattr(pooling, "image_level", lambda *args, **kwargs: {})
    out = tmp_path / "pooling.json"
    assert (
        pooling.main(["--configs", "keras_spp_xla,segment_max,crop_and_resize,keras_spp_graph", "--out", str(out)]) == 0
    )
    roi = json.loads(out.read_text())["roi_pyramid_pool"]
    assert roi["speedup_xla_vs"] == {
        "segment_max": {"forward": 5.0, "forward_backward": 1.5},
        "keras_spp_graph": {"forward": 1.5, "forward_backward": 0.5},
    }
    assert roi["crop_and_resize"] == {"error": ["RuntimeError: no kernel"]}


def test_the_backends_and_the_tf_only_baseline_are_compared_with_xla(monkeypatch, tmp_path):
    medians = {"keras_spp_xla": (2.0, 8.0), "tf_only_xla": (2.5, 8.0), "keras_spp_jax_jit": (1.0, 10.0)}
    backends = {}

    def run(cmd, **kwargs):
        name = cmd[cmd.index("--_one") + 1]
        backends[name] = kwargs["env"]["KERAS_BACKEND"]
        forward, backward = medians[name]
        result = {"forward": {"median_ms": forward}, "forward_backward": {"median_ms": backward}}
        return subprocess.CompletedProcess(cmd, 0, json.dumps(result) + "\n", "")

    monkeypatch.setattr(pooling.subprocess, "run", run)
    out = tmp_path / "pooling.json"
    pooling.main(["--configs", ",".join(medians), "--no-image-level", "--out", str(out)])
    report = json.loads(out.read_text())
    roi = report["roi_pyramid_pool"]
    assert backends == {"keras_spp_xla": "tensorflow", "tf_only_xla": "tensorflow", "keras_spp_jax_jit": "jax"}
    assert roi["keras_ops_port_over_tf_only"] == {"forward": 0.8, "forward_backward": 1.0}
    assert roi["jax_jit_over_tf_xla"] == {"forward": 0.5, "forward_backward": 1.25}
    assert report["image_level"] is None


def test_every_backend_and_the_baseline_run_exactly_on_a_small_problem():
    has_baseline = not subprocess.run(["git", "cat-file", "-e", f"{pooling.BASELINE_COMMIT}^{{commit}}"]).returncode
    configs = "keras_spp_xla,tf_only_xla,keras_spp_jax_jit,keras_spp_torch"
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.pooling", "--boxes", "12", "--map", "5,6,3", "--repeats", "1"]
        + ["--no-image-level", "--configs", configs],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    roi = json.loads(out)["roi_pyramid_pool"]
    for name in configs.split(","):
        if name == "tf_only_xla" and not has_baseline:  # a shallow clone: the run says why, and goes on
            assert "--baseline-commit" in roi[name]["error"][0], roi[name]
            continue
        assert roi[name]["max_abs_diff_vs_exact"] == 0.0, (name, roi[name])


def test_eager_memory_reports_the_peak_over_the_warm_up():
    result = pooling.eager_memory(30, 6, 7, 4, "2", levels=(2, 1))
    assert result["max_boxes_per_chunk"] == "2" and result["levels"] == [2, 1]
    assert result["output_mb"] == round(30 * 4 * 5 * 4 / 2**20, 1)
    assert result["peak_over_warm_up_mb"] >= 0


def test_side_by_side_rounds_run_each_config_in_turn_and_report_median_ratios(monkeypatch):
    medians = iter([10.0, 100.0, 5.0, 20.0, 100.0, 5.0, 10.0, 120.0, 4.0])
    calls = []

    def child(name, args, python=None, forward_only=False):
        calls.append((name, python, forward_only))
        result = {"forward": {"median_ms": next(medians)}}
        if name == "torchvision_roi_pool":
            result.update(torch="2.14.1", torchvision="0.29.1", threads=2)
        return result

    monkeypatch.setattr(pooling, "_run_child", child)
    args = pooling.parse_args(["--torchvision-python", "/tv/python", "--rounds", "3"])
    report = pooling._side_by_side(args)
    assert [c[0] for c in calls] == list(pooling.SIDE_BY_SIDE) * 3
    assert {c[1] for c in calls if c[0] == "torchvision_roi_pool"} == {"/tv/python"}
    assert all(c[2] for c in calls)
    assert report["torchvision_over_keras_spp_xla"] == [10.0, 5.0, 12.0]
    assert report["median_torchvision_over_keras_spp_xla"] == 10.0
    assert report["keras_spp_xla_over_write_bound"] == [2.0, 4.0, 2.5]
    assert report["torchvision"]["torchvision"] == "0.29.1"


def test_write_bound_reports_the_bytes_of_the_ops_output():
    result = pooling.run_write_bound(boxes=3, channels=4, repeats=1)
    assert result["bytes"] == 3 * 4 * 50 * 4 and result["gb_per_s"] >= 0
