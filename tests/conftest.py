import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# MNIST comes from the cache that set-up filled, never from PyPI during a test (child
# processes inherit this too).
os.environ["KERAS_SPP_OFFLINE"] = "1"

import ipaddress  # noqa: E402
import socket  # noqa: E402

import hypothesis  # noqa: E402
import keras  # noqa: E402
import pytest  # noqa: E402

# TensorFlow calls are slow next to hypothesis's default deadline.
hypothesis.settings.register_profile("keras_spp", deadline=None, max_examples=40, derandomize=True)
hypothesis.settings.load_profile("keras_spp")


@pytest.fixture(autouse=True)
def _float32_policy():
    """Tests that switch to mixed precision must not leak it into others."""
    yield
    keras.mixed_precision.set_global_policy("float32")


def _is_local(address):
    """Whether a socket address stays on this machine (loopback or a Unix socket)."""
    if not isinstance(address, tuple):
        return True  # a Unix socket's path
    host = address[0]
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class NetworkAccess(RuntimeError):
    """Raised when a test reaches for a host other than this machine."""


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Tests never reach the network: a connection or a name lookup beyond loopback fails."""
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def guarded(method):
        def call(self, address, *args, **kwargs):
            if not _is_local(address):
                raise NetworkAccess(f"a test tried to connect to {address}: tests never reach the network")
            return method(self, address, *args, **kwargs)

        return call

    def guarded_lookup(host, *args, **kwargs):
        if not _is_local((host,)):
            raise NetworkAccess(f"a test tried to look up {host!r}: tests never reach the network")
        return getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", guarded(connect))
        patch.setattr(socket.socket, "connect_ex", guarded(connect_ex))
        patch.setattr(socket, "getaddrinfo", guarded_lookup)
        yield
