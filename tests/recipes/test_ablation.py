import json
import os
import signal
import subprocess
import sys
import time

import pytest

from recipes import ablation
from tests.recipes.test_train_classifier import SMALL, colour_folder  # noqa: F401 (a fixture)


def run(variant, seed, center, full=None, ten=None, epochs=10):
    errors = {"center": center, **({"full": full} if full is not None else {}), **({"ten_view": ten} if ten else {})}
    return {"variant": variant, "seed": seed, "epochs": epochs, "test_error_pct": errors, "train_seconds": 60.0}


def test_summary_verdicts_and_table():
    runs = [
        run("no SPP (pool5), single-size", 0, 26.0, ten=25.0),
        run("no SPP (pool5), single-size", 1, 24.0, ten=23.0),
        run("SPP, single-size", 0, 20.0, 18.0, 19.0, epochs=14),
        run("SPP, single-size", 1, 22.0, 20.0, 21.0, epochs=16),
        run("SPP, multi-size (alternating)", 0, 19.0, 17.0, 18.0),
        run("SPP, multi-size (alternating)", 1, 23.0, 21.0, 22.0),
    ]
    table = ablation.summarise(runs)
    assert table["SPP, single-size"]["center"]["mean"] == 21.0
    assert round(table["SPP, single-size"]["full"]["std"], 4) == 1.4142
    assert table["SPP, single-size"]["epochs"] == [14, 16]
    assert "full" not in table["no SPP (pool5), single-size"]
    found = {claim: (mean, gains, verdict) for claim, mean, gains, verdict in ablation.verdicts(table)}
    assert found["SPP improves accuracy"] == (4.0, [6.0, 2.0], "agrees, every seed")
    assert found["multi-size training improves accuracy"] == (0.0, [1.0, -1.0], "disagrees")
    assert found["the full image beats the centre crop"] == (2.0, [2.0, 2.0], "agrees, every seed")
    assert "multi-size (random sizes) improves accuracy" not in found  # not run
    args = ablation.parse_args(["--seeds", "0,1"])
    text = ablation.render(table, ablation.settings_of(args), 600)
    assert (
        "| SPP, single-size | 21.00 ± 1.41 (20.0, 22.0) | 19.00 ± 1.41 (18.0, 20.0) "
        "| 20.00 ± 1.41 (19.0, 21.0) | 14, 16 |" in text
    )
    assert "n/a (fixed input size)" in text
    assert "| SPP improves accuracy | +4.00 (+6.0, +2.0) | agrees, every seed |" in text


def test_verdicts_pair_runs_by_seed_and_wait_for_every_seed():
    runs = [
        run("SPP, single-size", 1, 22.0),
        run("SPP, single-size", 0, 20.0),
        run("SPP, multi-size (alternating, enlarged)", 0, 19.0),
        run("SPP, multi-size (alternating)", 0, 25.0),
        run("SPP, multi-size (alternating, enlarged)", 1, 23.0),
    ]
    found = {claim: (gains, verdict) for claim, _, gains, verdict in ablation.verdicts(ablation.summarise(runs))}
    claim = "multi-size training improves accuracy when no size is below the finest level"
    assert found[claim] == ([1.0, -1.0], "disagrees")  # seed 0: 20 - 19; seed 1: 22 - 23
    assert "the enlarged second size beats the shrunk one" not in found  # seed 1 of the alternating run is missing


@pytest.mark.parametrize(
    "variant, flags",
    [
        ("SPP, multi-size (alternating, enlarged)", "--sizes 112,139 --size-mode alternate --crop 112"),
        ("SPP, multi-size (alternating), levels 4,2,1", "--levels 4,2,1 --sizes 112,90 --size-mode alternate"),
    ],
)
def test_the_controlled_variants_change_one_thing_each(tmp_path, monkeypatch, variant, flags):
    commands = []

    def fake_run(cmd, check):
        commands.append(cmd)
        out = cmd[cmd.index("--out") + 1]
        history = [{"epoch": "0", "val_loss": "1.0", "val_accuracy": "0.5", "learning_rate": "0.001"}]
        results = {"history": history, "evaluation": {"center": {"top1_error_pct": 12.0, "examples": 10}}}
        os.makedirs(out)
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump({**results, "train_seconds": 1.0, "train_examples": 30}, f)

    monkeypatch.setattr(ablation.subprocess, "run", fake_run)
    args = ablation.parse_args(["--out", str(tmp_path), "--large", "112", "--small", "90"])
    entry = ablation.train_one(args, variant, 2)
    cmd = " ".join(commands[0])
    assert flags in cmd and "--seed 2" in cmd
    assert entry["test_error_pct"] == {"center": 12.0} and entry["epochs"] == 1


def test_a_summary_takes_the_files_settings_and_draws_the_runs(tmp_path, capsys):
    runs = []
    for variant, errors in (("SPP, single-size", (20.0, 22.0)), ("SPP, multi-size (alternating)", (19.0, 23.0))):
        for seed, error in enumerate(errors):
            curve = [{"epoch": e, "val_loss": 2.0 / (e + 1), "val_accuracy": 0.5} for e in range(5 + seed)]
            runs.append({**run(variant, seed, error, error - 1, error - 2), "validation_curve": curve})
    settings = {**ablation.settings_of(ablation.parse_args(["--width", "0.5"])), "max_train": 3000}
    (tmp_path / "ablation-zf5.json").write_text(json.dumps({"settings": settings, "runs": runs}))
    plot = tmp_path / "ablation.png"
    assert ablation.main(["--summary-only", "--results", str(tmp_path), "--plot", str(plot)]) == 0
    assert "Ablation on backbone zf5 (width 0.5)" in capsys.readouterr().out
    assert plot.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(SystemExit, match="records no runs"):
        ablation.main(["--summary-only", "--backbone", "convnet5", "--results", str(tmp_path)])


def test_a_record_of_other_settings_is_refused(tmp_path):
    path = tmp_path / "ablation-zf5.json"
    path.write_text(json.dumps({"settings": {"backbone": "zf5", "max_epochs": 3}, "runs": []}))
    with pytest.raises(SystemExit, match="holds runs with other settings"):
        ablation.load_record(str(path), ablation.settings_of(ablation.parse_args([])))


def test_unknown_variants_are_refused_with_the_accepted_ones(capsys):
    with pytest.raises(SystemExit):
        ablation.parse_args(["--variants", "spp-single,bogus"])
    assert (
        "accepted: all or pool, spp-single, spp-alternate, spp-random, spp-alternate-enlarged, spp-alternate-levels421"
        in capsys.readouterr().err
    )


def test_a_killed_runner_skips_what_it_recorded_and_resumes_the_rest(colour_folder, tmp_path):  # noqa: F811
    small = [a for i, a in enumerate(SMALL) if a != "--width" and (i == 0 or SMALL[i - 1] != "--width")]
    args = ["--variants", "spp-single,spp-alternate", "--seeds", "0", "--max-epochs", "3", "--stop-patience", "2"]
    args += ["--large", "48", "--small", "40", "--width", "0.125", "--results", str(tmp_path / "results")]
    args += ["--out", str(tmp_path / "runs"), "--", *small, "--dataset", f"folder:{colour_folder}"]
    args += ["--backup-every", "2"]
    record = tmp_path / "results" / "ablation-zf5.json"
    second_state = tmp_path / "runs" / "zf5" / "spp-alternate-seed0" / "backup" / "state.json"
    log = open(tmp_path / "first.log", "w")
    runner = subprocess.Popen(
        [sys.executable, "-m", "recipes.ablation", *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.time() + 900
    while time.time() < deadline:  # kill it (and its training child) mid-way through the second run
        if record.exists() and second_state.exists():
            break
        assert runner.poll() is None, (
            "the runner finished before it could be killed:\n" + (tmp_path / "first.log").read_text()
        )
        time.sleep(0.05)
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    log.close()
    first = json.loads(record.read_text())
    assert [r["variant"] for r in first["runs"]] == ["SPP, single-size"]

    again = subprocess.run([sys.executable, "-m", "recipes.ablation", *args], capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"== SPP, single-size, seed 0: recorded in {record}, skipped" in again.stdout
    assert "resuming from the backup" in again.stdout
    final = json.loads(record.read_text())
    assert final["runs"][0] == first["runs"][0]
    second = final["runs"][1]
    assert second["variant"] == "SPP, multi-size (alternating)" and 1 <= second["epochs"] <= 3
    assert set(second["test_error_pct"]) == {"center", "full", "ten_view"}
    assert [row["epoch"] for row in second["validation_curve"]] == list(range(second["epochs"]))
    assert "| SPP, multi-size (alternating) |" in again.stdout
