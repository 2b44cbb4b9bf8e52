"""Who a connection comes from, and how many connections one client address
may hold open outside every namespace (before it shows a token).

A connection without a token costs the server a socket, buffers and a
heartbeat until ``auth_timeout_s`` closes it; without a bound per address one
client could open thousands at once (F6). The bound counts only connections
outside every namespace: a user's authenticated connections are bounded by
``connections_per_user`` instead, so many users behind one NAT are not
refused for being many.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address

from aiohttp import web

Network = IPv4Network | IPv6Network


class ClientAddresses:
    """The client address of a request: the peer's, or, when the peer is one
    of ``trusted_proxies``, the nearest address in ``X-Forwarded-For`` that is
    not a trusted proxy (each proxy appends the address it saw, so entries
    left of that one may be the client's own inventions)."""

    def __init__(self, trusted_proxies: Iterable[Network] = ()) -> None:
        self.trusted_proxies = tuple(trusted_proxies)

    def of(self, request: web.BaseRequest) -> str:
        peer = request.remote or ""
        if not self._trusted(peer):
            return peer
        hops = [
            hop.strip()
            for header in request.headers.getall("X-Forwarded-For", ())
            for hop in header.split(",")
        ]
        nearest = peer
        for hop in reversed(hops):
            try:
                nearest = str(ip_address(hop))
            except ValueError:
                # Not an address: a trusted proxy would not write it, so the
                # hop before it is the last one to believe.
                return nearest
            if not self._trusted(nearest):
                return nearest
        return nearest

    def _trusted(self, address: str) -> bool:
        if not self.trusted_proxies:
            return False
        try:
            parsed = ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in self.trusted_proxies)


class PendingConnections:
    """Engine.IO connections outside every namespace, counted per client
    address; ``per_address`` at most (0: no bound)."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self._address_of: dict[str, str] = {}
        self._pending: dict[str, set[str]] = {}

    def full(self, address: str) -> bool:
        """Whether ``address`` may open no more connections now."""
        return 0 < self.per_address <= len(self._pending.get(address, ()))

    def opened(self, eio_sid: str, address: str) -> None:
        """A new connection from ``address``: outside every namespace."""
        self._address_of[eio_sid] = address
        self.outside(eio_sid)

    def outside(self, eio_sid: str) -> None:
        """``eio_sid`` is outside every namespace (new, or it left its last one)."""
        address = self._address_of.get(eio_sid)
        if address is not None:
            self._pending.setdefault(address, set()).add(eio_sid)

    def inside(self, eio_sid: str) -> None:
        """``eio_sid`` entered a namespace."""
        address = self._address_of.get(eio_sid)
        if address is None:
            return
        sids = self._pending.get(address)
        if sids is not None:
            sids.discard(eio_sid)
            if not sids:
                del self._pending[address]

    def closed(self, eio_sid: str) -> None:
        self.inside(eio_sid)
        self._address_of.pop(eio_sid, None)

    def count(self, address: str) -> int:
        return len(self._pending.get(address, ()))
