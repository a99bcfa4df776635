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


def test_the_benchmark_times_the_main_jobs_pretraining_model_at_its_detection_scales():
    from benchmarks import precision
    from keras_spp.data.mnist_windows import CLASS_NAMES
    from recipes import main
    from recipes import train_classifier

    assert precision.DETECTION_SCALES == tuple(int(s) for s in main.DETECTION_SCALES.split(","))
    assert precision.DETECTION_WINDOW == int(main.DETECTION_WINDOW)
    args = train_classifier.parse_args(["--dataset", "mnist-windows", "--sizes", "48", "--width", "0.0625",
                                        "--fc-units", "16", "--dtype-policy", "mixed_bfloat16", "--no-jit"])
    want = train_classifier.build_model(args, len(CLASS_NAMES), total_steps=4)
    got = precision.pretraining_model("mixed_bfloat16", 0.0625, 16, 48)
    assert got.get_config() == want.get_config()

    def optimizer(model):
        return type(model.optimizer), {k: v for k, v in model.optimizer.get_config().items() if k != "name"}

    assert optimizer(got) == optimizer(want)
    assert got.jit_compile == want.jit_compile is False
