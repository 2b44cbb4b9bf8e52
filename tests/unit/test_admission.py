"""Client addresses behind proxies, and the count of connections outside
every namespace per address (signaling/admission.py)."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from signaling.admission import ClientAddresses, PendingConnections

PROXIES = ClientAddresses([ip_network("10.0.0.0/8"), ip_network("::1/128")])


def request_from(peer: str, *forwarded_for: str) -> web.BaseRequest:
    headers = [("X-Forwarded-For", value) for value in forwarded_for]
    request = make_mocked_request("GET", "/socket.io/", headers=headers)
    return request.clone(remote=peer)


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        # Not a proxy: its headers are its own inventions.
        ("203.0.113.9", ("198.51.100.1",), "203.0.113.9"),
        # A proxy: the nearest hop that is not a proxy.
        ("10.0.0.2", ("198.51.100.1",), "198.51.100.1"),
        ("10.0.0.2", ("198.51.100.1, 203.0.113.7",), "203.0.113.7"),
        ("10.0.0.2", ("198.51.100.1", "203.0.113.7, 10.0.0.5"), "203.0.113.7"),
        ("::1", ("2001:db8::1",), "2001:db8::1"),
        # Nothing forwarded, or only proxies: the last proxy is all there is.
        ("10.0.0.2", (), "10.0.0.2"),
        ("10.0.0.2", ("10.0.0.7",), "10.0.0.7"),
        # A hop that is not an address: nothing left of it is believed.
        ("10.0.0.2", ("198.51.100.1, unknown",), "10.0.0.2"),
        ("10.0.0.2", ("198.51.100.1, garbage, 10.0.0.3",), "10.0.0.3"),
    ],
)
def test_the_client_address(peer: str, forwarded_for: tuple[str, ...], client: str) -> None:
    assert PROXIES.of(request_from(peer, *forwarded_for)) == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    request = request_from("10.0.0.2", "198.51.100.1")
    assert ClientAddresses().of(request) == "10.0.0.2"


def test_connections_outside_a_namespace_are_counted_per_address() -> None:
    pending = PendingConnections(per_address=2)
    pending.opened("a", "203.0.113.1")
    assert not pending.full("203.0.113.1")
    pending.opened("b", "203.0.113.1")
    assert pending.full("203.0.113.1")
    assert not pending.full("203.0.113.2")
    pending.inside("a")  # showed its token
    assert not pending.full("203.0.113.1")
    pending.outside("a")  # left its last namespace
    assert pending.full("203.0.113.1")
    pending.closed("a")
    pending.closed("b")
    assert pending.count("203.0.113.1") == 0
    pending.outside("a")  # a connection already closed is not counted again
    assert pending.count("203.0.113.1") == 0


def test_zero_is_no_bound() -> None:
    pending = PendingConnections(per_address=0)
    for n in range(1000):
        pending.opened(str(n), "203.0.113.1")
    assert not pending.full("203.0.113.1")
