from recipes import ablation


def result(center, full=None, seconds=100.0):
    evaluation = {"center": {"top1_error_pct": center, "examples": 1000}}
    if full is not None:
        evaluation["full"] = {"top1_error_pct": full, "examples": 1000}
    return {"evaluation": evaluation, "train_seconds": seconds}


def test_summary_and_table():
    table = ablation.summarise(
        {
            "no SPP (pool5), single-size": [result(26.0), result(24.0)],
            "SPP, single-size": [result(20.0, 18.0), result(22.0, 20.0, 300.0)],
        }
    )
    assert table["SPP, single-size"]["center"]["mean"] == 21.0
    assert round(table["SPP, single-size"]["full"]["std"], 4) == 1.4142
    assert table["SPP, single-size"]["train_seconds"] == 200.0
    assert "full" not in table["no SPP (pool5), single-size"]
    text = ablation.render(table, "python -m recipes.ablation --seeds 0,1", [0, 1], 600)
    assert "| SPP, single-size | 21.00 ± 1.41 (20.0, 22.0) | 19.00 ± 1.41 (18.0, 20.0) | 200 |" in text
    assert "n/a (fixed input size)" in text
    assert "`python -m recipes.ablation --seeds 0,1`" in text
