import numpy as np

from benchmarks import serving
from tests.export.conftest import MAX_SIDE
from tests.export.conftest import MIN_SIDE


def test_percentiles_are_in_milliseconds():
    assert serving.percentiles([0.001] * 19 + [0.1]) == {"p50_ms": 1.0, "p95_ms": 5.95}


def test_latencies_of_every_path_for_an_export(exported):
    out, model, _ = exported
    fns = serving.paths(model, {"xla": out}, MIN_SIDE, MAX_SIDE)
    assert set(fns) == {"saved_model_session", "saved_model_load", "keras_graph", "keras_eager"}
    report = serving.latencies(fns, {"60x80": serving.jpeg(60, 80)}, repeats=2, min_side=MIN_SIDE, max_side=MAX_SIDE)
    row = report["60x80"]
    assert row["view"] == [64, 85]
    for name in fns:
        assert 0 < row[name]["p50_ms"] <= row[name]["p95_ms"]
        assert row[name]["max_abs_diff_vs_keras"] <= 1e-4
    assert np.isfinite(row["saved_model_session"]["first_call_ms"])
