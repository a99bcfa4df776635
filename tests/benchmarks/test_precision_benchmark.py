import json
import subprocess
import sys


def test_benchmark_times_both_policies_and_prints_json(tmp_path):
    out = tmp_path / "precision.json"
    stdout = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.precision",
            "--width",
            "0.0625",
            "--fc-units",
            "16",
            "--batch",
            "4",
            "--size",
            "48",
            "--steps",
            "2",
            "--windows",
            "12",
            "--image",
            "60,80",
            "--repeats",
            "1",
            "--rounds",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    report = json.loads(stdout)
    assert report == json.loads(out.read_text())
    assert set(report["policies"]) == {"float32", "mixed_bfloat16"}
    for timings in report["policies"].values():
        for name in ("train_step_ms", "window_features_ms_per_image"):
            assert 0 < timings[name]["min"] <= timings[name]["median"] <= timings[name]["max"]
    assert set(report["speedup_over_float32"]) == {"train_step_ms", "window_features_ms_per_image"}
    assert isinstance(report["machine"]["bf16"], list)


def test_policies_take_turns_and_speedups_are_float32_medians_over_bfloat16s(monkeypatch, tmp_path):
    """With timers that return set milliseconds, the report's medians and speedups are
    known numbers, and the order of the calls shows the policies alternating."""
    from benchmarks import precision

    calls = []
    times = {
        ("float32", "train"): [30.0, 20.0, 10.0],
        ("mixed_bfloat16", "train"): [5.0, 10.0, 100.0],
        ("float32", "windows"): [9.0] * 6,
        ("mixed_bfloat16", "windows"): [4.0, 2.0, 3.0, 3.0, 1.0, 5.0],
    }

    def timer(policy, kind):
        values = iter(times[policy, kind])

        def time_it():
            calls.append((policy, kind))
            return next(values)

        return time_it

    monkeypatch.setattr(precision, "train_step_timer", lambda policy, *args, **kwargs: (timer(policy, "train"), policy))
    monkeypatch.setattr(precision, "window_features_timer", lambda policy, *args, **kwargs: timer(policy, "windows"))
    out = tmp_path / "precision.json"
    assert precision.main(["--rounds", "3", "--repeats", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["policies"]["float32"]["train_step_ms"] == {"median": 20.0, "min": 10.0, "max": 30.0}
    assert report["policies"]["mixed_bfloat16"]["window_features_ms_per_image"]["median"] == 3.0
    assert report["speedup_over_float32"] == {"train_step_ms": 2.0, "window_features_ms_per_image": 3.0}
    one_round = [
        ("float32", "train"),
        ("float32", "windows"),
        ("float32", "windows"),
        ("mixed_bfloat16", "train"),
        ("mixed_bfloat16", "windows"),
        ("mixed_bfloat16", "windows"),
    ]
    assert calls == one_round * 3


def test_the_benchmark_times_the_main_jobs_pretraining_model_at_its_detection_scales():
    from benchmarks import precision
    from keras_spp.data.mnist_windows import CLASS_NAMES
    from recipes import main, train_classifier

    assert precision.DETECTION_SCALES == tuple(int(s) for s in main.DETECTION_SCALES.split(","))
    assert precision.DETECTION_WINDOW == int(main.DETECTION_WINDOW)
    args = train_classifier.parse_args(
        [
            "--dataset",
            "mnist-windows",
            "--sizes",
            "48",
            "--width",
            "0.0625",
            "--fc-units",
            "16",
            "--dtype-policy",
            "mixed_bfloat16",
            "--no-jit",
        ]
    )
    want = train_classifier.build_model(args, len(CLASS_NAMES), total_steps=4)
    got = precision.pretraining_model("mixed_bfloat16", 0.0625, 16, 48)
    assert got.get_config() == want.get_config()

    def optimizer(model):
        return type(model.optimizer), {k: v for k, v in model.optimizer.get_config().items() if k != "name"}

    assert optimizer(got) == optimizer(want)
    assert got.jit_compile == want.jit_compile is False
