"""The suite's guard (tests/conftest.py): tests never reach the network."""

import socket
import threading

import pytest

from tests.conftest import NetworkAccess


@pytest.mark.parametrize("address", [("192.0.2.1", 80), ("2001:db8::1", 443, 0, 0), ("example.com", 80)])
def test_a_connection_beyond_this_machine_fails(address):
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s, pytest.raises(NetworkAccess, match="never reach"):
        s.connect(address)


def test_a_name_lookup_beyond_this_machine_fails():
    with pytest.raises(NetworkAccess, match="look up 'pypi.org'"):
        socket.getaddrinfo("pypi.org", 443)


def test_loopback_still_works():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        accepted = []
        thread = threading.Thread(target=lambda: accepted.append(server.accept()[0].recv(5)))
        thread.start()
        with socket.create_connection(server.getsockname(), timeout=10) as client:
            client.sendall(b"hello")
        thread.join(10)
    assert accepted == [b"hello"]
