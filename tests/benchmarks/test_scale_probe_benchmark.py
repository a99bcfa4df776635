import json
import shutil

import pytest

from benchmarks import scale_probe
from recipes import train_classifier
from tests.recipes.test_train_classifier import SMALL, colour_folder  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def runs(colour_folder, tmp_path_factory):  # noqa: F811
    """A finished SPP run of train_classifier at 48 and 40 px, barely trained (so that its
    errors are neither 0 nor the same at every size), and the same folder marked as a pool5 run."""
    root = tmp_path_factory.mktemp("runs")
    args = ["--dataset", f"folder:{colour_folder}", "--epochs", "1", "--lr", "2e-5", "--views", "center"]
    args += ["--sizes", "48,40", "--verbose", "0", "--out", str(root / "spp-alternate-seed0")]
    assert train_classifier.main(SMALL + args) == 0
    shutil.copytree(root / "spp-alternate-seed0", root / "pool-seed0")
    results = json.loads((root / "pool-seed0" / "results.json").read_text())
    results["config"]["head"] = "pool"
    (root / "pool-seed0" / "results.json").write_text(json.dumps(results))
    return root


def test_each_spp_run_is_probed_at_each_size_and_its_own_size_repeats_its_validation(runs, tmp_path, capsys):
    out = tmp_path / "probe.json"
    assert scale_probe.main(["--runs", str(runs), "--sizes", "32,48,64", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    (probe,) = report["runs"]  # the pool5 run takes one size only and is left out
    assert probe["variant"] == "spp-alternate" and probe["crop"] == 48 and probe["validation_images"] == 12
    # The crop at its own size is what fit's last validation measured, with the same weights.
    assert probe["error_pct"]["48"] == pytest.approx(100 * (1 - probe["val_accuracy_logged"]), abs=0.01)
    assert 0 < probe["error_pct"]["48"] < 100, probe
    assert all(0 <= probe["error_pct"][s] <= 100 for s in ("32", "64"))
    assert report["summary"]["spp-alternate"]["64"] == {
        "by_seed": {"0": probe["error_pct"]["64"]},
        "mean": probe["error_pct"]["64"],
    }


def test_a_folder_without_finished_runs_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="holds no finished SPP runs"):
        scale_probe.main(["--runs", str(tmp_path)])


@pytest.mark.parametrize("sizes", ["", "90,x", "0,112"])
def test_sizes_must_be_positive_sides(tmp_path, sizes, capsys):
    with pytest.raises(SystemExit):
        scale_probe.parse_args(["--runs", str(tmp_path), "--sizes", sizes])
    assert "--sizes must be comma-separated positive sides" in capsys.readouterr().err
