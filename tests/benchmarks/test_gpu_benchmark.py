import json
import os
import subprocess
import sys

import pytest

from benchmarks import gpu

CASES = {
    "spatial_pyramid_pool",
    "roi_pyramid_pool",
    "roi_pyramid_pool_backward",
    "spp_classifier_fit_step",
    "multiscale_roi_features",
}


def test_tiny_run_on_the_cpu_reports_every_case_and_no_gpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--tiny", "--repeats", "1"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    report = json.loads(out)
    assert report["gpu_found"] is False and report["note"] == gpu.NO_GPU
    assert report["tf_device"] == "/CPU:0" and report["device"].startswith("CPU")
    assert set(report["timings"]) == CASES
    for case in report["timings"].values():
        assert case["xla_compile"] == "ok", case
        assert case["first_call_ms"] > 0 and 0 < case["min_ms"] <= case["median_ms"]


def test_a_failed_compile_is_reported_not_raised():
    def build():
        def fn():
            raise ValueError("no kernel for this op\nmore detail")

        return fn

    assert gpu.run_case(build, repeats=1) == {"xla_compile": "error", "error": "ValueError: no kernel for this op"}


def test_repeats_below_one_exit_naming_the_flag():
    with pytest.raises(SystemExit, match="--repeats"):
        gpu.parse_args(["--repeats", "0"])
