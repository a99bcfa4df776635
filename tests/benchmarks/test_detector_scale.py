"""benchmarks/detector_scale.py: per-N runs in child processes, every stage measured,
resumable, and the growth exponents."""

import json

import pytest

from benchmarks import detector_scale

TINY = ["--windows", "16", "--proposals", "40", "--scale", "96", "--steps", "4", "--rpn-steps", "4", "--fc-units", "8"]


def test_two_sizes_are_measured_then_skipped_when_resumed(tmp_path, monkeypatch, capsys):
    out = tmp_path / "scale.json"
    args = ["--sizes", "3,5", "--work", str(tmp_path / "work"), "--out", str(out), *TINY]
    assert detector_scale.main(args) == 0
    report = json.loads(out.read_text())
    assert [r["n_images"] for r in report["runs"]] == [3, 5]
    for run in report["runs"]:
        assert run["peak_rss_bytes"] > 100e6 and run["seconds"] > 0 and run["disk_bytes"] > 0
        assert set(run["stages"]) == {"proposals", "rpn", "features", "fine_tuning", "box_regression", "svms"}
        for stage in run["stages"].values():
            assert {"seconds", "cpu_seconds", "peak_rss_bytes", "disk_bytes"} <= set(stage)
        assert run["feature_dim"] == 12800  # full-width ZF-5 at levels 6,3,2,1, the paper's
    assert run["stages"]["features"]["disk_bytes"] > run["stages"]["rpn"]["disk_bytes"]
    assert set(report["growth"]) >= {"seconds_exponent", "peak_rss_bytes_exponent", "peak_rss_largest_over_smallest"}
    assert not list((tmp_path / "work").rglob("*.npz"))  # each run's caches are removed
    # Resumed: both sizes are recorded, nothing runs again.
    monkeypatch.setattr(detector_scale, "_child", lambda *a: pytest.fail("a recorded size ran again"))
    assert detector_scale.main(args) == 0
    # Other settings are refused rather than mixed into the same file.
    with pytest.raises(SystemExit, match="other settings"):
        detector_scale.main([*args, "--steps", "5"])


def test_growth_exponents():
    runs = [
        {"n_images": n, "seconds": 2.0 * n, "cpu_seconds": 3.0 * n, "peak_rss_bytes": 1e9, "disk_bytes": 5 * n}
        for n in (250, 500, 1000)
    ]
    growth = detector_scale.growth(runs)
    assert growth["seconds_exponent"] == pytest.approx(1.0, abs=1e-3)
    assert growth["peak_rss_bytes_exponent"] == pytest.approx(0.0, abs=1e-3)
    assert growth["peak_rss_largest_over_smallest"] == 1.0
