import os

import pytest

from keras_spp.data import mnist


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A private KERAS_SPP_DATA that shares only the real MNIST file."""
    cache = tmp_path / "cache"
    cache.mkdir()
    os.symlink(mnist.ensure_mnist(), cache / mnist.FILENAME)
    monkeypatch.setenv("KERAS_SPP_DATA", str(cache))
    return cache
