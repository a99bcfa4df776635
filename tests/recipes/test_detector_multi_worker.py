"""``train_detector --strategy multi-worker``: two workers on loopback fine-tune the
heads as one process does, each caching its own share of the images."""

import concurrent.futures
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_spp.data.detection_sources import load_detection
from keras_spp.detection.detector import Detector
from keras_spp.models import zf5
from tests.recipes.test_multi_worker import TIMEOUT, free_loopback_ports, worker_env


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mw-detector")
    keras.utils.set_random_seed(0)
    zf5(10, width=0.125, fc_units=32).save(root / "classifier.keras")
    # The data and the proposals exist before the three runs start, which share them.
    rng = np.random.default_rng(0)
    proposals = {}
    for split in ("trainval", "test"):
        examples, _ = load_detection("mnist-detection", split, data_dir=str(root / "data"), num_trainval=6, num_test=3)
        for e in examples:
            near = np.repeat(e.boxes, 12, axis=0) + rng.normal(0, 3, (12 * len(e.boxes), 4))
            y, x = rng.uniform(0, e.height - 2, (60, 2)), rng.uniform(0, e.width - 2, (60, 2))
            far = np.stack([y.min(1), x.min(1), y.max(1) + 2, x.max(1) + 2], 1)
            proposals[e.image_id] = np.concatenate([near, far]).astype(np.float32)
    np.savez(root / "proposals.npz", **proposals)
    return root


def command(root, out, *flags):
    return [
        sys.executable,
        "-m",
        "recipes.train_detector",
        "--pretrained",
        str(root / "classifier.keras"),
        "--data-dir",
        str(root / "data"),
        "--mnist-images",
        "6,3",
        "--proposals-from",
        str(root / "proposals.npz"),
        "--steps",
        "12",
        "--batch-size",
        "16",
        "--dropout",
        "0",
        "--optimizer",
        "sgd",
        "--lr",
        "0.01",
        "--negative-iou",
        "0,0.5",
        "--out",
        str(out),
        "--verbose",
        "0",
        *flags,
    ]


def test_two_workers_fine_tune_like_one_process(setup, tmp_path):
    root = setup
    single_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    runs = {}
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    try:
        runs["single"] = subprocess.Popen(command(root, tmp_path / "single"), env=single_env, **pipe)
        ports = free_loopback_ports(2)
        for i in range(2):
            runs[f"worker {i}"] = subprocess.Popen(
                command(root, tmp_path / "multi", "--strategy", "multi-worker"), env=worker_env(ports, i), **pipe
            )
        with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
            reads = {name: pool.submit(run.communicate, timeout=3 * TIMEOUT) for name, run in runs.items()}
        outputs = {name: read.result()[0] for name, read in reads.items()}
        for name, run in runs.items():
            assert run.returncode == 0, f"{name} failed:\n{outputs[name][-4000:]}"
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.kill()
                run.wait()
    multi = tmp_path / "multi"
    # Each worker cached its own half of the six images first.
    assert "window features (worker 0 of 2)" in outputs["worker 0"]
    assert "window features (worker 1 of 2)" in outputs["worker 1"]
    # The chief writes the detector; the other worker only its training log.
    assert (multi / "detector").is_dir() and not (multi / "worker-1" / "detector").exists()
    chief_log = (multi / "history.csv").read_text()
    assert (multi / "worker-1" / "history.csv").read_text() == chief_log
    # The global batches are one process's, split between the workers and all-reduced:
    # the same fc layers up to float32 summation order.
    single = Detector.load(tmp_path / "single" / "detector").model
    chief = Detector.load(multi / "detector").model
    for name in ("fc6", "fc7", "fc8"):
        for a, b in zip(single.get_layer(name).get_weights(), chief.get_layer(name).get_weights()):
            np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4, err_msg=name)
    # Split between two replicas, one a worker: without that, two workers that each
    # trained alone on every batch would also end as one process.
    assert json.loads((multi / "results.json").read_text())["replicas_in_sync"] == 2
    assert json.loads((tmp_path / "single" / "results.json").read_text())["replicas_in_sync"] == 1


def test_strategies_refuse_what_they_do_not_distribute(setup, tmp_path):
    from recipes import train_detector

    with pytest.raises(SystemExit, match="--strategy mirrored distributes the fc fine-tuning only"):
        train_detector.main(command(setup, tmp_path / "o", "--strategy", "mirrored", "--conv-steps", "2")[3:])
    with pytest.raises(SystemExit, match="--proposals rpn"):
        train_detector.main(command(setup, tmp_path / "o", "--strategy", "multi-worker", "--proposals", "rpn")[3:])
