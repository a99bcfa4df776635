import ast
import json
import os
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from export import images as image_ops
from export import saved_model, serving_check, verify
from keras_spp.data.voc import decode_image_bytes as load_image_bytes
from keras_spp.models import backbone, spp_classifier
from tests.export.conftest import CLASSES, MAX_SIDE, MIN_SIDE, encode, keras_full_view, photo

ATOL = 1e-4  # on probabilities and scores, as verify states


def serve(loaded, images, signature="serving_default"):
    fn = loaded.signatures[signature]
    if signature == "serving_default":
        out = fn(image_bytes=tf.constant(images, tf.string))
    else:
        out = fn(images=tf.constant(images, tf.float32))
    return {k: v.numpy() for k, v in out.items()}


def test_writes_tf_servings_layout_with_the_label_map(exported):
    out, _, _ = exported
    assert os.path.basename(out) == "1"
    with open(os.path.join(out, "assets", "labels.txt"), encoding="utf-8") as f:
        assert f.read().splitlines() == CLASSES
    for need in (
        "saved_model.pb",
        "variables/variables.index",
        "assets.extra/tf_serving_warmup_requests",
        "assets.extra/reference/reference.json",
    ):
        assert os.path.exists(os.path.join(out, need)), need
    # Written beside the version folder under another name, then renamed: nothing else is left.
    assert os.listdir(os.path.dirname(out)) == ["1"]


def test_verify_passes_saved_model_cli_and_a_tensorflow_only_child(exported):
    out, _, _ = exported
    report = verify.verify(out)
    assert report["ok"], verify.summary(report)
    signature = {
        "probabilities": ["DT_FLOAT", [-1, 7]],
        "classes": ["DT_INT32", [-1, 5]],
        "labels": ["DT_STRING", [-1, 5]],
        "scores": ["DT_FLOAT", [-1, 5]],
    }
    shown = report["signatures"]
    assert shown["serving_default"]["inputs"] == {"image_bytes": ["DT_STRING", [-1]]}
    assert shown["serving_default"]["outputs"] == signature
    assert shown["classify_images"]["inputs"] == {"images": ["DT_FLOAT", [-1, -1, -1, 3]]}
    assert shown["classify_images"]["outputs"] == signature
    check = report["serving_check"]
    assert check["modules"]["keras_spp"] is False
    assert check["tolerance"]["probabilities"] == {"atol": ATOL}
    for loader in ("tf1_session", "tf2_load"):
        rows = {row["case"]: row for row in check["loaders"][loader]}
        assert all(row["ok"] for row in rows.values()), rows
        sizes = rows["images of several sizes, JPEG and PNG, in one batch"]["details"]
        assert sizes["probabilities"]["max_abs_diff"] <= ATOL
    assert check["device_placements"] == [] and check["xla_compiled_calls"] > 0
    assert "PASSED" in verify.summary(report)


def test_serving_check_imports_tensorflow_alone():
    with open(serving_check.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"base64", "json", "os", "sys", "numpy", "tensorflow"}, imported


def test_images_of_three_sizes_and_both_formats_match_the_keras_model(exported):
    out, model, loaded = exported
    images = [photo(90, 140, 1), photo(200, 120, 2), photo(64, 64, 3)]
    encoded = [encode(images[0], "JPEG", quality=95), encode(images[1], "PNG"), encode(images[2], "PNG")]
    # JPEG is lossy: compare on its pixels, as training reads them (Pillow's, the same as
    # the served decoder's exact integer DCT).
    decoded = [load_image_bytes(e) for e in encoded]
    got = serve(loaded, encoded)
    want = np.stack([keras_full_view(model, image) for image in decoded])
    np.testing.assert_allclose(got["probabilities"], want, atol=ATOL)
    top = np.argsort(-want, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(got["classes"], top)
    assert [[label.decode() for label in row] for row in got["labels"]] == [[CLASSES[c] for c in row] for row in top]
    np.testing.assert_allclose(got["scores"], np.take_along_axis(want, top, axis=1), atol=ATOL)


def test_grey_and_rgba_pngs_are_read_as_rgb(exported):
    _, model, loaded = exported
    grey, rgba = photo(80, 100, 4, channels=1), photo(70, 90, 5, channels=4)
    got = serve(loaded, [encode(grey), encode(rgba)])["probabilities"]
    want = [keras_full_view(model, np.repeat(grey[..., None], 3, axis=-1)), keras_full_view(model, rgba[..., :3])]
    np.testing.assert_allclose(got, np.stack(want), atol=ATOL)


def test_corrupt_bytes_are_an_invalid_argument_naming_the_items(exported):
    _, _, loaded = exported
    good = encode(photo(50, 50))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"not JPEG or PNG data.*\[1 2\]"):
        serve(loaded, [good, b"GIF89a not supported", b""])
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid PNG data"):
        serve(loaded, [good[: len(good) // 2]])
    jpeg = encode(photo(50, 50), "JPEG")
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid JPEG data"):
        serve(loaded, [jpeg[: len(jpeg) // 3]])


def test_requests_of_the_wrong_rank_or_dtype_are_invalid_arguments_naming_the_input(exported):
    # A signature's shape is not enforced when called (nor by TF Serving); the graph checks it.
    _, _, loaded = exported
    good = encode(photo(50, 50))
    serving, floats = loaded.signatures["serving_default"], loaded.signatures["classify_images"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes: must have 1 dimension.*\[N\].*\[1 1\]"):
        serving(image_bytes=tf.constant([[good]]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images: must have 4 dimension.*\[50 50 3\]"):
        floats(images=tf.zeros([50, 50, 3]))
    # The dtype is checked before the graph runs (TF Serving checks it against the signature too).
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a string tensor but is a float tensor"):
        serving(image_bytes=tf.constant([1.0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor but is a uint8 tensor"):
        floats(images=tf.zeros([1, 50, 50, 3], tf.uint8))


def test_empty_batches_give_empty_outputs(exported):
    _, _, loaded = exported
    for got in (serve(loaded, []), serve(loaded, np.zeros((0, 10, 10, 3)), "classify_images")):
        assert {k: v.shape for k, v in got.items()} == {
            "probabilities": (0, 7),
            "classes": (0, 5),
            "labels": (0, 5),
            "scores": (0, 5),
        }


def test_views_above_the_max_side_are_shrunk_until_the_longer_side_fits(exported):
    _, model, loaded = exported
    panorama = photo(30, 300, 6)  # min side 64 would give 64 x 640; the max side 320 caps it to 32 x 320
    assert image_ops.full_view(panorama, MIN_SIDE, MAX_SIDE).shape == (32, 320, 3)
    got = serve(loaded, [encode(panorama)])["probabilities"][0]
    np.testing.assert_allclose(got, keras_full_view(model, panorama), atol=ATOL)
    # 1 : 100: its view would be 3 x 320, less than ZF-5's 29 pixels per side.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"too elongated.*\[3 320\].*at least 29"):
        serve(loaded, [encode(photo(4, 400, 7))])


def test_images_above_max_pixels_are_refused_before_decoding():
    big = encode(photo(40, 50), "PNG")
    assert image_ops.header_size(tf.constant(big)).numpy().tolist() == [40, 50]
    assert image_ops.header_size(tf.constant(encode(photo(33, 21), "JPEG"))).numpy().tolist() == [33, 21]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)more than 1000 pixels was refused.*40, 50"):
        image_ops.decode(tf.constant(big), max_pixels=1000)
    assert image_ops.decode(tf.constant(big), max_pixels=2000).shape == (40, 50, 3)


def test_float_images_signature_matches_the_bytes_one(exported):
    _, model, loaded = exported
    images = np.stack([photo(100, 75, 8), photo(100, 75, 9)])
    got = serve(loaded, images.astype(np.float32), "classify_images")
    want = np.stack([keras_full_view(model, image) for image in images])
    np.testing.assert_allclose(got["probabilities"], want, atol=ATOL)
    from_bytes = serve(loaded, [encode(image) for image in images])
    np.testing.assert_allclose(got["probabilities"], from_bytes["probabilities"], atol=ATOL)
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinite"):
        serve(loaded, np.full((1, 40, 40, 3), np.nan, np.float32), "classify_images")


def test_warmup_requests_are_predict_logs_of_the_reference_images(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    out, _, _ = exported
    logs = []
    for record in tf.data.TFRecordDataset(os.path.join(out, "assets.extra", "tf_serving_warmup_requests")):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log.predict_log.request)
    with open(os.path.join(out, "assets.extra", "reference", "reference.json"), encoding="utf-8") as f:
        files = json.load(f)["cases"][0]["inputs"]["image_bytes"]["files"]
    assert len(logs) == len(files) == 4
    for request, name in zip(logs, files, strict=True):
        assert request.model_spec.signature_name == "serving_default"
        with open(os.path.join(out, "assets.extra", "reference", name), "rb") as f:
            assert list(request.inputs["image_bytes"].string_val) == [f.read()]


def test_cli_refuses_bad_requests_with_clear_errors(exported, tmp_path, capsys):
    out, _, _ = exported
    model_path = os.path.join(os.path.dirname(os.path.dirname(out)), "run", "model.keras")
    lone = tmp_path / "lone"
    lone.mkdir()
    keras.saving.load_model(model_path).save(lone / "model.keras")  # no results.json beside it

    def run(*args):
        code = saved_model.main(["--model", str(args[0]), "--kind", "classifier", *args[1:]])
        return code, capsys.readouterr().err

    code, err = run(lone / "model.keras", "--out", str(tmp_path / "a" / "1"))
    assert code == 2 and "No label map" in err and "--labels" in err
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    code, err = run(lone / "model.keras", "--out", str(tmp_path / "a" / "1"), "--labels", str(labels))
    assert code == 2 and "No min side" in err and "--min-side" in err
    code, err = run(model_path, "--out", str(tmp_path / "a" / "latest"))
    assert code == 2 and "version folder" in err
    code, err = run(model_path, "--out", out)
    assert code == 2 and "--overwrite" in err
    code, err = run(model_path, "--out", str(tmp_path / "b" / "1"), "--labels", str(labels))
    assert code == 2 and "7 classes but the label map has 3 names" in err
    assert not (tmp_path / "b").exists()  # refused before anything was written
    with pytest.raises(SystemExit):
        saved_model.main(["--model", model_path, "--kind", "segmenter", "--out", str(tmp_path / "c" / "1")])
    assert "invalid choice: 'segmenter'" in capsys.readouterr().err


def test_a_corrupt_model_file_is_refused_naming_it(tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 cut short")
    code = saved_model.main(
        [
            "--model",
            str(tmp_path / "model.keras"),
            "--kind",
            "classifier",
            "--labels",
            str(labels),
            "--min-side",
            "64",
            "--out",
            str(tmp_path / "out" / "1"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--model" in err and "model.keras is not a .keras archive" in err
    assert not (tmp_path / "out").exists()


def test_a_fixed_size_model_is_refused(tmp_path):
    from export.classifier import ClassifierKind
    from keras_spp.models import pool5_classifier

    model = pool5_classifier("zf5", 3, width=0.0625, fc_units=8)
    with pytest.raises(ValueError, match="only 224x224 images.*SPP head"):
        ClassifierKind(
            model,
            {
                "labels": ["a", "b", "c"],
                "top_k": 5,
                "min_side": 64,
                "max_side": 320,
                "max_pixels": 10**6,
                "jit": True,
                "labels_file": str(tmp_path / "x.txt"),
            },
        )


def test_top_k_is_capped_at_the_number_of_classes(tmp_path):
    from export.classifier import ClassifierKind
    from keras_spp.models import backbone, spp_classifier

    keras.utils.set_random_seed(2)
    model = spp_classifier(backbone("zf5", width=0.0625), 3, fc_units=8)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    kind = ClassifierKind(
        model,
        {
            "labels": ["a", "b", "c"],
            "top_k": 5,
            "min_side": 48,
            "max_side": 320,
            "max_pixels": 10**6,
            "jit": False,
            "labels_file": str(labels),
        },
    )
    assert kind.signatures["serving_default"]["outputs"]["classes"] == ["DT_INT32", [-1, 3]]
    fn, _ = kind.endpoints["serving_default"]
    out = fn(tf.constant([encode(photo(50, 60))]))
    assert sorted(out["classes"].numpy()[0]) == [0, 1, 2]
    assert sorted(label.decode() for label in out["labels"].numpy()[0]) == ["a", "b", "c"]


SHOWN = """
MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:

signature_def['serving_default']:
  The given SavedModel SignatureDef contains the following input(s):
    inputs['image_bytes'] tensor_info:
        dtype: DT_STRING
        shape: (-1)
        name: serving_default_image_bytes:0
  The given SavedModel SignatureDef contains the following output(s):
    outputs['classes'] tensor_info:
        dtype: DT_INT32
        shape: (-1, 5)
        name: StatefulPartitionedCall_1:0
  Method name is: tensorflow/serving/predict
"""


def test_verify_reports_signatures_that_differ_from_the_declared_ones():
    shown = verify.parse_show_all(SHOWN)
    assert shown == {
        "tag_sets": ["serve"],
        "signatures": {
            "serving_default": {
                "inputs": {"image_bytes": ["DT_STRING", [-1]]},
                "outputs": {"classes": ["DT_INT32", [-1, 5]]},
                "method": "tensorflow/serving/predict",
            }
        },
    }
    want = {
        "signatures": {
            "serving_default": {
                "inputs": {"image_bytes": ["DT_STRING", [-1]]},
                "outputs": {"classes": ["DT_INT64", [-1, 5]]},
            },
            "classify_images": {"inputs": {}, "outputs": {}},
        }
    }
    assert sorted(verify.check_signatures(shown, want)) == [
        "serving_default: outputs['classes'] is ['DT_INT32', [-1, 5]], expected ['DT_INT64', [-1, 5]]",
        "signature 'classify_images' is missing",
    ]
    with pytest.raises(FileNotFoundError, match="not a version folder"):
        verify.verify(os.path.dirname(__file__))


def test_serving_check_compares_within_tolerance_and_up_to_near_ties():
    rules = {"scores": {"atol": 1e-4}, "classes": {"ties_by": "scores"}}
    case = {
        "outputs": {
            "scores": {"dtype": "float32", "shape": [1, 3], "values": [[0.5, 0.49995, 0.00005]]},
            "classes": {"dtype": "int32", "shape": [1, 3], "values": [[2, 0, 1]]},
        }
    }
    swapped = {"scores": np.array([[0.49996, 0.5, 0.0]]), "classes": np.array([[0, 2, 1]])}
    assert serving_check.compare(case, swapped, None, rules)[0]
    assert not serving_check.compare(case, {**swapped, "scores": np.array([[0.5, 0.4997, 0.0]])}, None, rules)[0]
    assert not serving_check.compare(case, {**swapped, "classes": np.array([[2, 1, 0]])}, None, rules)[0]
    assert not serving_check.compare(case, {"scores": np.zeros((2, 3)), "classes": np.zeros((2, 3))}, None, rules)[0]
    failing = {"error": {"type": "InvalidArgumentError", "contains": "not JPEG"}}
    error = {"type": "InvalidArgumentError", "message": "x\nnot JPEG or PNG"}
    assert serving_check.compare(failing, None, error, {})[0]
    assert not serving_check.compare(failing, {"scores": np.zeros(1)}, None, {})[0]
    assert not serving_check.compare(failing, None, {"type": "InternalError", "message": "not JPEG"}, {})[0]


def test_jit_auto_leaves_xla_out_of_a_bfloat16_model_whose_served_scores_then_match_keras(tmp_path):
    from export.saved_model import mixed_precision

    keras.utils.set_random_seed(2)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = spp_classifier(backbone("zf5", width=0.125), len(CLASSES), fc_units=32, dropout=0.0)
    keras.mixed_precision.set_global_policy("float32")
    assert mixed_precision(model)
    model.save(tmp_path / "model.keras")
    (tmp_path / "results.json").write_text(json.dumps({"classes": CLASSES, "config": {"min_side": MIN_SIDE}}))
    out = saved_model.export(str(tmp_path / "model.keras"), "classifier", str(tmp_path / "served" / "1"))
    assert json.loads(pathlib.Path(out, "assets.extra", "reference", "reference.json").read_text())["xla"] is False
    loaded = tf.saved_model.load(out)
    images = [photo(90, 120, 5), photo(64, 64, 6)]
    got = serve(loaded, [encode(image) for image in images])["probabilities"]
    want = np.stack([keras_full_view(model, image) for image in images])
    np.testing.assert_allclose(got, want, atol=1e-4)  # the same kernels as Keras's
    with pytest.raises(ValueError, match="`jit` must be True, False or 'auto'; got 'yes'"):
        saved_model.export(str(tmp_path / "model.keras"), "classifier", str(tmp_path / "other" / "1"), jit="yes")


def test_jit_auto_keeps_xla_for_a_float32_model(exported):
    out, model, _ = exported
    from export.saved_model import mixed_precision

    assert not mixed_precision(model)
    assert json.loads(pathlib.Path(out, "assets.extra", "reference", "reference.json").read_text())["xla"] is True
