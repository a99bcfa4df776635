import json
import subprocess
import sys


def test_benchmark_times_both_policies_and_prints_json(tmp_path):
    out = tmp_path / "precision.json"
    stdout = subprocess.run(
        [sys.executable, "-m", "benchmarks.precision", "--width", "0.0625", "--fc-units", "16", "--batch", "4",
         "--size", "48", "--steps", "2", "--windows", "12", "--image", "60,80", "--repeats", "1", "--rounds", "2", "--out", str(out)],
        capture_output=True, text=True, check=True,
    ).stdout
    report = json.loads(stdout)
    assert report == json.loads(out.read_text())
    assert set(report["policies"]) == {"float32", "mixed_bfloat16"}
    for timings in report["policies"].values():
        for name in ("train_step_ms", "window_features_ms_per_image"):
            assert 0 < timings[name]["min"] <= timings[name]["median"] <= timings[name]["max"]
    speedup = report["speedup_over_float32"]
    assert speedup["train_step_ms"] == round(report["policies"]["float32"]["train_step_ms"]["median"]
                                             / report["policies"]["mixed_bfloat16"]["train_step_ms"]["median"], 2)
    assert isinstance(report["machine"]["bf16"], list)
