import json

import pytest

from benchmarks import backend_fit


def fake_results(args, seed, final):
    config = {
        "dataset": "mnist-scenes",
        "width": args.width,
        "sizes": [112],
        "epochs": args.epochs,
        "max_train": args.max_train,
        "seed": seed,
        "lr_schedule": "step",
        "dtype_policy": "float32",
    }
    history = [{"val_accuracy": 0.1}, {"val_accuracy": final}]
    return {
        "config": config,
        "history": history,
        "evaluation": {"center": {"top1_error_pct": 100 * (1 - final)}},
        "train_seconds": 20.0,
    }


def test_the_training_command_is_one_train_classifier_accepts():
    from recipes.train_classifier import parse_args

    args = backend_fit.parse_args(["--epochs", "3", "--max-train", "50"])
    parsed = parse_args(backend_fit.train_command(args, 1, "out")[3:])
    assert (parsed.epochs, parsed.max_train, parsed.seed, parsed.lr_schedule) == (3, 50, 1, "step")
    assert parsed.dataset == "mnist-scenes" and parsed.dtype_policy == "float32"


def test_finished_runs_are_read_and_others_trained_with_their_backend(tmp_path, monkeypatch):
    args = backend_fit.parse_args(["--runs", str(tmp_path), "--epochs", "4"])
    done = tmp_path / "jax-seed0"
    done.mkdir()
    (done / "results.json").write_text(json.dumps(fake_results(args, 0, 0.8)))
    stale = tmp_path / "torch-seed0"
    stale.mkdir()
    old = fake_results(args, 0, 0.3)
    old["config"]["epochs"] = 2  # another configuration: trained again
    (stale / "results.json").write_text(json.dumps(old))
    calls = []

    def run(cmd, check, env):
        calls.append(env["KERAS_BACKEND"])
        out = cmd[cmd.index("--out") + 1]
        with open(f"{out}/results.json", "w") as f:
            json.dump(fake_results(args, 0, 0.7), f)

    monkeypatch.setattr(backend_fit.subprocess, "run", run)
    assert backend_fit.run_once(args, "jax", 0)["final_val_accuracy"] == 0.8
    assert backend_fit.run_once(args, "torch", 0)["final_val_accuracy"] == 0.7
    assert calls == ["torch"]


def test_within_noise_compares_seed_spreads_with_a_binomial_floor():
    def runs(values):
        return {str(i): {"final_val_accuracy": v, "seconds_per_epoch": 1.0} for i, v in enumerate(values)}

    summary = backend_fit.summarise(
        {"tensorflow": runs([0.80, 0.82]), "jax": runs([0.81, 0.79]), "torch": runs([0.60, 0.62])}
    )
    assert summary["tensorflow"]["difference_from_tensorflow"] == 0.0
    assert summary["jax"]["within_noise"] and not summary["torch"]["within_noise"]
    # Identical seeds: the noise is the validation set's binomial spread, not zero.
    same = backend_fit.summarise({"tensorflow": runs([0.8, 0.8]), "jax": runs([0.81, 0.81])})
    assert same["jax"]["noise"] == pytest.approx(2 * (2 * 0.8 * 0.2 / 1000 / 2) ** 0.5, rel=0.05)
    assert same["jax"]["within_noise"]


@pytest.mark.parametrize("bad", [["--backends", "jax,torch"], ["--backends", "tensorflow,mxnet"], ["--seeds", "a"]])
def test_bad_arguments_are_refused(bad, capsys):
    with pytest.raises(SystemExit):
        backend_fit.parse_args(bad)
    assert "must" in capsys.readouterr().err
