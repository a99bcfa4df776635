import json
import subprocess
import sys

import numpy as np

from benchmarks import pooling


def test_baselines_agree_with_the_op():
    from keras_spp.ops import roi_pyramid_pool

    features, boxes, indices = pooling.roi_problem(30, 7, 9, 4)
    exact = roi_pyramid_pool(features, boxes, indices).numpy()
    np.testing.assert_array_equal(pooling.segment_max_baseline(features, boxes)(features).numpy(), exact)
    approx = pooling.crop_and_resize_baseline(features, boxes, indices).numpy()
    assert approx.shape == exact.shape


def test_benchmark_prints_json_for_a_small_problem():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.pooling", "--boxes", "20", "--map", "6,7,4", "--repeats", "1",
         "--image-batch", "1", "--zf5-width", "0.0625", "--configs", "keras_spp_xla,segment_max"],
        capture_output=True, text=True, check=True,
    ).stdout
    report = json.loads(out)
    roi = report["roi_pyramid_pool"]
    assert roi["keras_spp_xla"]["max_abs_diff_vs_exact"] == 0.0
    assert roi["speedup_xla_vs"]["segment_max"]["forward"] > 0
    assert set(report["image_level"]["xla"]) == {"pool5_6x6_ms", "spp_6_3_2_1_ms", "spp_overhead"}
    assert report["machine"]["cores"] >= 1
