import types

import numpy as np

from benchmarks import serving
from tests.export.conftest import MAX_SIDE, MIN_SIDE


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
        assert row[name]["p50_ms"] > 0  # what the numbers mean: the fake-clock test below
        assert row[name]["max_abs_diff_vs_keras"] <= 1e-4
    assert np.isfinite(row["saved_model_session"]["first_call_ms"])


def test_latencies_time_each_call_of_each_path_alone(monkeypatch):
    """On a fake clock that only the paths advance: the warm-up call apart, each of the
    --repeats calls timed alone, paths interleaved, differences from the reference."""
    clock = {"now": 0.0}
    monkeypatch.setattr(serving, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    calls = []

    def path(name, first, durations, value):
        durations = iter([first, *durations])

        def fn(encoded, boxes):
            assert (encoded, boxes) == (b"jpeg", "boxes")
            calls.append(name)
            clock["now"] += next(durations)
            return np.full(3, value)

        return fn

    fns = {"a": path("a", 2.0, [0.001 * i for i in range(1, 21)], 1.0), "b": path("b", 0.5, [0.03] * 20, 1.25)}
    row = serving.latencies(fns, {"x": (b"jpeg", "boxes")}, repeats=20, reference="a")["x"]
    # 1..20 ms: the median 10.5, the 95th percentile (numpy's linear) 19.05.
    assert row["a"] == {"p50_ms": 10.5, "p95_ms": 19.05, "first_call_ms": 2000.0, "max_abs_diff_vs_keras": 0.0}
    assert row["b"] == {"p50_ms": 30.0, "p95_ms": 30.0, "first_call_ms": 500.0, "max_abs_diff_vs_keras": 0.25}
    assert calls == ["a", "b"] * 21
