"""Damaged files that the export reads or writes are errors naming them, and float
pixels out of the accepted range are refused by the graph."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from export import saved_model, serving_check, verify
from export.classifier import results_next_to
from export.kinds import label_names


def test_pixels_outside_0_255_are_an_invalid_argument_saying_what_is_accepted(exported):
    _, _, loaded = exported
    classify = loaded.signatures["classify_images"]
    for value in (1e38, 300.0, -1.0, np.inf):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"outside \[0, 255\].*accepted: RGB in \[0, 255\]"):
            classify(images=tf.fill([1, 40, 40, 3], np.float32(value)))
    edges = classify(images=tf.constant(np.stack([np.zeros((40, 40, 3)), np.full((40, 40, 3), 255)]), tf.float32))
    assert np.all(np.isfinite(edges["probabilities"].numpy()))


def fake_export(exported, tmp_path, reference_text):
    """A copy of the exported version folder whose reference.json is ``reference_text``."""
    out, _, _ = exported
    copy = tmp_path / "served" / "1"
    shutil.copytree(out, copy)
    (copy / verify.REFERENCE).write_text(reference_text)
    return str(copy)


@pytest.mark.parametrize(
    "text, message",
    [("{", "is not valid JSON"), ("[]", "not an export's reference"), ('{"kind": "classifier"}', "signatures")],
)
def test_a_damaged_reference_json_is_named_by_verify_and_serving_check(exported, tmp_path, capsys, text, message):
    folder = fake_export(exported, tmp_path, text)
    path = os.path.join(folder, verify.REFERENCE)
    assert verify.main([folder]) == 2
    err = capsys.readouterr().err
    assert path in err and message in err
    assert serving_check.main([folder]) == 2
    err = capsys.readouterr().err
    assert path in err and message in err


def test_a_savedmodel_the_loader_refuses_is_an_error_not_a_traceback(exported, tmp_path, capsys):
    out, _, _ = exported
    folder = tmp_path / "served" / "1"
    shutil.copytree(out, folder)
    for name in os.listdir(folder / "variables"):
        (folder / "variables" / name).write_bytes(b"cut")
    assert serving_check.main([str(folder)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_results_and_class_names_of_the_wrong_type_are_refused_naming_the_file(tmp_path, capsys):
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"results.json is not a training's results"):
        results_next_to(str(tmp_path / "model.keras"))
    (tmp_path / "results.json").write_text(json.dumps({"classes": "cat", "config": {"min_side": 64}}))
    with pytest.raises(ValueError, match=r"results.json next to .*model.keras: its class names must be a list"):
        label_names(None, results_next_to(str(tmp_path / "model.keras")), str(tmp_path / "model.keras"))
    (tmp_path / "model.keras").write_bytes(b"")
    args = ["--model", str(tmp_path / "model.keras"), "--kind", "classifier", "--out", str(tmp_path / "out" / "1")]
    assert saved_model.main(args) == 2
    assert "class names must be a list" in capsys.readouterr().err
