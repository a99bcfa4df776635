"""A .keras file that is not a model is an error naming it, not Keras's "File not found"."""

import zipfile

import numpy as np
import pytest

from keras_spp.models import backbone, spp_classifier
from keras_spp.models.saving import load_keras_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model = spp_classifier(backbone("zf5", width=0.0625), 3, levels=(2, 1), fc_units=8)
    model.save(path)
    return path, model


def test_a_good_file_loads(saved):
    path, model = saved
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(load_keras_model(path, "--pretrained")(image), model(image), atol=1e-6)


def test_corrupt_files_are_value_errors_naming_the_file_and_flag(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    files = {"empty.keras": b"", "text.keras": b"not a model", "cut.keras": data[: len(data) // 2]}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as archive:
        archive.writestr("readme.txt", "no config")
    with zipfile.ZipFile(tmp_path / "bad_config.keras", "w") as archive:
        archive.writestr("config.json", "{not json")
        archive.writestr("metadata.json", "{}")
    for name, reason in (
        ("empty.keras", "empty"),
        ("text.keras", "not a .keras archive"),
        ("cut.keras", "not a .keras archive"),
        ("other.keras", "without config.json"),
        ("bad_config.keras", "Cannot load"),
    ):
        with pytest.raises(ValueError, match=reason) as error:
            load_keras_model(tmp_path / name, "--pretrained")
        assert "--pretrained" in str(error.value) and name in str(error.value)
    with pytest.raises(FileNotFoundError, match="--pretrained .*missing.keras"):
        load_keras_model(tmp_path / "missing.keras", "--pretrained")
