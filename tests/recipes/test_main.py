"""The main job composes the recipes with arguments each of them accepts."""

import pytest

from recipes import demo, main, train_classifier, train_detector


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def stage(name, code=0):
        def run(argv):
            seen.append((name, argv))
            return code

        return run

    monkeypatch.setattr(demo, "main", stage("demo"))
    monkeypatch.setattr(train_classifier, "main", stage("classifier"))
    monkeypatch.setattr(train_detector, "main", stage("detector"))
    # The stages run here, not in child processes, so that the stubs above are seen.
    monkeypatch.setattr(main, "run_stage", lambda recipe, argv: recipe.main(argv))
    return seen


def test_stages_run_in_order_with_arguments_their_recipes_parse(calls, tmp_path):
    assert main.main(["--epochs", "3", "--detector-steps", "50", "--out", str(tmp_path)]) == 0
    assert [name for name, _ in calls] == ["demo", "classifier", "detector"]
    classifier = train_classifier.parse_args(calls[1][1])
    assert classifier.dataset == "mnist-windows" and classifier.epochs == 3 and classifier.sizes == (112,)
    assert classifier.min_side == 128 and not classifier.flip  # the dataset's defaults
    assert classifier.dtype_policy == "auto"  # bfloat16 only where the hardware computes in it
    assert classifier.lr_schedule == "step" and classifier.lr_drop == 0.25
    detector = train_detector.parse_args(calls[2][1])
    assert detector.pretrained == str(tmp_path / "classifier" / "model.keras")
    assert detector.dataset == "mnist-detection" and detector.steps == 50
    assert main.DETECTION_SCALES == "200,288,400,560,800,1100" and detector.scales == (200, 288, 400, 560, 800, 1100)
    assert detector.window_size == 64 and detector.min_proposal_size == 4
    assert detector.proposals == "rpn" and detector.rpn_scales is None  # the scale nearest 800 px: 800
    assert detector.context == 2 and detector.negative_iou == "0,0.5" and detector.max_train_windows == 256


def test_selective_search_is_one_flag_away(calls, tmp_path):
    assert main.main(["--proposals", "selective-search", "--out", str(tmp_path)]) == 0
    detector = train_detector.parse_args(calls[2][1])
    assert detector.proposals == "selective-search" and detector.min_proposal_size == 4
    assert detector.proposal_max_side == 0 and detector.proposal_k == 100
    assert detector.scales == (200, 288, 400, 560, 800, 1100) and detector.context == 2


def test_defaults_12_pretraining_epochs_and_3000_fine_tuning_minibatches(calls, tmp_path):
    assert main.main(["--out", str(tmp_path)]) == 0
    assert train_classifier.parse_args(calls[1][1]).epochs == 12
    assert train_detector.parse_args(calls[2][1]).steps == 3000


def test_a_failing_stage_stops_the_job_with_its_code(monkeypatch, calls, tmp_path):
    monkeypatch.setattr(train_classifier, "main", lambda argv: 3)
    assert main.main(["--out", str(tmp_path)]) == 3
    assert [name for name, _ in calls] == ["demo"]


def test_each_stage_runs_in_a_process_of_its_own(tmp_path):
    # The child's exit code comes back: argparse's --help exits 0, a bad flag 2.
    assert main.run_stage(demo, ["--help"]) == 0
    assert main.run_stage(train_detector, ["--window-size", "0"]) == 2
