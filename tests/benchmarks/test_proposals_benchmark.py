"""benchmarks.proposals' own helpers (the whole benchmark runs in
tests/recipes/test_train_detector.py on a trained detector)."""

import pytest

from benchmarks import proposals


def test_a_low_map_count_is_warned_about_with_the_fix(tmp_path, capsys):
    limit = tmp_path / "max_map_count"
    limit.write_text("65530\n")
    proposals._warn_on_map_count(str(limit))
    err = capsys.readouterr().err
    assert "vm.max_map_count is 65530" in err and "sysctl -w vm.max_map_count=1048576" in err
    limit.write_text("1048576\n")
    proposals._warn_on_map_count(str(limit))
    proposals._warn_on_map_count(str(tmp_path / "absent"))  # not Linux: nothing to say
    assert capsys.readouterr().err == ""


def test_targets_pair_each_claim_with_its_numbers():
    ss = {"recall@0.5": {"all": 0.98}, "voc07_map": 0.88, "served_max_abs_diff": 2e-6}
    rpn = {
        "recall@0.5": {"300": 0.99},
        "voc07_map": 0.90,
        "rpn_proposal_share": 0.05,
        "end_to_end_speedup_saved_model": 7.5,
        "end_to_end_speedup_keras": 7.0,
        "served_over_keras": 0.9,
        "served_max_abs_diff": 3e-6,
    }
    assert proposals.targets(ss, rpn) == {
        "rpn_recall_300_vs_ss_recall_2000": [0.99, 0.98],
        "rpn_map_vs_ss_map": [0.90, 0.88],
        "rpn_proposal_share_at_most_0.10": 0.05,
        "end_to_end_speedup_at_least_5": 7.5,
        "end_to_end_speedup_keras_at_least_5": 7.0,
        "served_over_keras_at_most_1": 0.9,
        "served_max_abs_diff_at_most_1e-4": 3e-6,
    }


def test_no_timed_images_or_rounds_is_refused_up_front(capsys):
    for flag in ("--timed", "--rounds", "--max-images"):
        with pytest.raises(SystemExit):
            proposals.parse_args([flag, "0"])
        assert f"{flag} must be at least 1; got 0" in capsys.readouterr().err
    assert proposals.parse_args(["--rounds", "3"]).rounds == 3
