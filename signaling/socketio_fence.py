"""The one module that touches python-socketio's private names.

``FencedServer`` is python-socketio's ``AsyncServer`` with the decoding and
dispatch of client packets (``_handle_eio_message``) done here, so that no
client packet can make the library raise (a traceback in the log, no answer)
or keep data for later (binary attachments, buffered until their count is
reached), and with public hooks for the policy, which lives in
``signaling.edge``:

- ``event_refusal(data)``: a reason to answer an event with an error instead
  of handling it;
- ``refuse_packet(eio_sid, kind, namespace, ack_id, message)``: a packet that
  is not handled (binary, malformed, unexpected);
- ``engineio_connected(eio_sid, environ)`` / ``engineio_disconnected(eio_sid, reason)``:
  an Engine.IO connection opened / closed (after the namespaces' handlers);
- ``send_socketio_packet(eio_sid, pkt)``: one packet to one connection.

``IndexedRooms`` is mixed into python-socketio's managers
(``IndexedAsyncManager`` for one process, ``PooledRedisManager`` for
several): it keeps the rooms of each connection, so that a disconnect leaves
its own rooms instead of walking every room of the namespace (the library's
``basic_disconnect`` copies and scans them all: every connection has a room
of its own, so each disconnect cost time in proportion to the sockets
connected).

``PooledRedisManager`` is python-socketio's ``AsyncRedisManager`` whose
``_redis_connect`` builds the client of a ``redis://`` or ``rediss://`` URL
from a pool the caller makes; every other scheme (sentinel, valkey, unix) is
connected by the library itself.

Every private name used here is pinned by ``tests/unit/test_fences.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlparse

import socketio
from socketio import packet

#: binary: a binary event, ack or attachment; malformed: not a Socket.IO packet
#: (or an event that is not ``[name, ...]``); refused: an event that
#: ``event_refusal`` refuses; unexpected: a packet type clients do not send.
RefusalKind = Literal["binary", "malformed", "refused", "unexpected"]

#: An ack id: as the library decoded it, or the digits of one it refused
#: (more than 100 of them); either is written back as it came.
AckId = int | str

#: The namespace and ack id of an event packet that does not decode. Any
#: attachment count and any number of digits: a client that sent an ack id
#: waits for its answer, however odd the rest of the packet.
_EVENT_HEADER = re.compile(r"[25](?:\d+-)?(?:(/[^,]*),)?(\d+)")


def event_header(text: str) -> tuple[str | None, AckId | None]:
    """The namespace and ack id at the start of an undecodable event packet."""
    found = _EVENT_HEADER.match(text)
    if found is None:
        return None, None
    namespace = found.group(1)
    if namespace is not None:
        namespace = namespace.split("?", 1)[0]
    return namespace or "/", found.group(2)


class FencedServer(socketio.AsyncServer):
    """python-socketio's server, decoding and dispatching client packets itself."""

    # ---------------------------------------------------------------- hooks

    def event_refusal(self, data: list[Any]) -> str | None:
        """Why the event ``data`` (``[name, *args]``) is refused; None handles it."""
        return None

    async def refuse_packet(
        self,
        eio_sid: str,
        kind: RefusalKind,
        namespace: str | None,
        ack_id: AckId | None,
        message: str,
    ) -> None:
        """A packet that is not handled; ``ack_id`` is its ack id, if it has one."""

    def engineio_connected(self, eio_sid: str, environ: dict[str, Any]) -> None:
        """A new Engine.IO connection (no namespace connected yet), with the
        environ of its first request (``environ["aiohttp.request"]``)."""

    def engineio_disconnected(self, eio_sid: str, reason: str) -> None:
        """An Engine.IO connection closed, for ``reason`` (``self.reason``)."""

    async def send_socketio_packet(self, eio_sid: str, pkt: packet.Packet) -> None:
        """Encode ``pkt`` and queue it on Engine.IO connection ``eio_sid``."""
        await self._send_packet(eio_sid, pkt)

    # ------------------------------------------------ python-socketio's own

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await super()._handle_eio_connect(eio_sid, environ)
        self.engineio_connected(eio_sid, environ)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: str) -> None:
        await super()._handle_eio_disconnect(eio_sid, reason)
        self.engineio_disconnected(eio_sid, reason)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        """Replaces the library's: the same dispatch, without binary packets
        (refused: nothing is buffered) and without raising on bad input."""
        if eio_sid not in self.environ:
            # Read before the server closed the connection (an auth timeout, a
            # slow consumer) and handled after: the library has forgotten it
            # (a CONNECT would raise KeyError), and nothing can answer it.
            return
        if not isinstance(data, str):
            # bytes: a binary attachment; anything else: Engine.IO decoded JSON
            kind: RefusalKind = "binary" if isinstance(data, bytes) else "malformed"
            await self.refuse_packet(eio_sid, kind, None, None, "not a Socket.IO packet")
            return
        try:
            pkt = self.packet_class(encoded_packet=data)
        except Exception:  # bad JSON, bad framing, too deep: nothing of it is used
            namespace, ack_id = event_header(data)
            await self.refuse_packet(
                eio_sid, "malformed", namespace, ack_id, "malformed Socket.IO packet"
            )
            return
        kind_of = pkt.packet_type
        if kind_of == packet.EVENT:
            namespace = pkt.namespace or "/"
            if not isinstance(pkt.data, list) or not pkt.data:
                await self.refuse_packet(
                    eio_sid, "malformed", namespace, pkt.id, "an event is [name, payload]"
                )
            elif (refusal := self.event_refusal(pkt.data)) is not None:
                await self.refuse_packet(eio_sid, "refused", namespace, pkt.id, refusal)
            else:
                await self._handle_event(eio_sid, namespace, pkt.id, pkt.data)
        elif kind_of == packet.ACK:
            await self._handle_ack(eio_sid, pkt.namespace, pkt.id, pkt.data)
        elif kind_of == packet.CONNECT:
            await self._handle_connect(eio_sid, pkt.namespace, pkt.data)
        elif kind_of == packet.DISCONNECT:
            await self._handle_disconnect(eio_sid, pkt.namespace, self.reason.CLIENT_DISCONNECT)
        elif kind_of in (packet.BINARY_EVENT, packet.BINARY_ACK):
            ack_id = pkt.id if kind_of == packet.BINARY_EVENT else None
            await self.refuse_packet(
                eio_sid, "binary", pkt.namespace or "/", ack_id, "binary payloads are not accepted"
            )
        else:  # CONNECT_ERROR comes from servers only; or an unknown type
            await self.refuse_packet(
                eio_sid, "unexpected", pkt.namespace or "/", None, "unexpected packet type"
            )


class IndexedRooms:
    """A python-socketio manager mix-in: each connection's rooms, indexed.

    python-socketio keeps ``rooms[namespace][room]`` (a bidict of sid to
    Engine.IO sid) and finds a connection's rooms by scanning every room of
    the namespace. Every room change goes through ``basic_enter_room`` and
    ``basic_leave_room`` (``basic_close_room`` too), which keep the index;
    ``basic_disconnect`` and ``get_rooms`` read it instead of scanning.
    """

    rooms: dict[str, dict[Any, Any]]
    callbacks: dict[str, Any]
    pending_connect: dict[str, list[str]]
    pending_disconnect: dict[str, list[str]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (namespace, sid) -> the connection's rooms, in the order entered
        #: (``None``, the namespace's room of every connection, included)
        self._rooms_of: dict[tuple[str, str], dict[Any, None]] = {}

    def basic_enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        self._rooms_of.setdefault((namespace, sid), {})[room] = None

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.pop(room, None)
            if not rooms:
                del self._rooms_of[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        """The library's, with its scan of every room replaced by the index."""
        if namespace not in self.rooms:
            return
        for room in list(self._rooms_of.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return [room for room in self._rooms_of.get((namespace, sid), ()) if room is not None]


class IndexedAsyncManager(IndexedRooms, socketio.AsyncManager):
    """python-socketio's manager of one process, with indexed rooms."""


#: Builds the Redis client of a ``redis://``/``rediss://`` URL with the
#: manager's ``redis_options``.
RedisClientFactory = Callable[[str, dict[str, Any]], Any]


class PooledRedisManager(IndexedRooms, socketio.AsyncRedisManager):
    """python-socketio's Redis manager with the client of plain Redis URLs
    built by ``client_for`` (the server's: a bounded pool that makes a burst
    of publishes wait; the library's default pool fails past its limit with
    "Too many connections" and drops the event)."""

    def __init__(
        self, url: str, *, channel: str, client_for: RedisClientFactory, **options: Any
    ) -> None:
        super().__init__(url, channel=channel, **options)
        self._client_for = client_for

    def _redis_connect(self) -> None:
        if urlparse(self.redis_url).scheme not in ("redis", "rediss"):
            super()._redis_connect()
            return
        self.redis = self._client_for(self.redis_url, self.redis_options)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True
