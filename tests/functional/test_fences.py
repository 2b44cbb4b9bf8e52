"""The fenced library paths (signaling/engineio_fence.py, socketio_fence.py)
through a real server: each test fails if the library stops behaving the way
the fence counts on, even where tests/unit/test_fences.py's pins still hold."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import socketio

from tests.functional.conftest import Lab, PeerFactory, StdJsonPacket, assert_error, both_in
from tests.functional.test_hostile import RawSocket, connect_error
from tests.support import RunningServer


async def polling_client(server: RunningServer, user_id: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False, serializer=StdJsonPacket)
    await client.connect(
        server.url,
        namespaces=["/call"],
        auth={"token": server.token(user_id)},
        transports=["polling"],
        wait_timeout=5,
    )
    return client


async def test_a_large_long_polling_upload_arrives_whole(server: RunningServer) -> None:
    """``translate_request`` hands python-engineio the upload the edge read.
    (The library reads ``Content-Length`` bytes with one ``read``, which on
    aiohttp returns what has arrived so far: a large upload was cut short.)"""
    client = await polling_client(server, "alice")
    try:
        for size in (200_000, 900_000):
            big = {"call_id": 1, "type": "offer", "sdp": "x" * size}
            ack = await client.call("signal", big, namespace="/call", timeout=10)
            assert_error(ack, "invalid")
            assert "sdp" in ack["error"]["message"], ack
    finally:
        await client.disconnect()


async def test_a_long_polling_client_disconnects_at_once(server: RunningServer) -> None:
    """``release_poll``: the pending poll of a client that closed is answered."""
    client = await polling_client(server, "alice")
    started = time.monotonic()
    await client.disconnect()
    assert time.monotonic() - started < 2


async def test_a_client_that_ignores_the_close_packet_is_cut_off(lab: Lab) -> None:
    """``close_now`` ends the transport itself, not only the session."""
    server = await lab.start(auth_timeout_s=0.3)
    async with contextlib.AsyncExitStack() as stack:
        raw = await RawSocket.open(stack, server)
        connect_error(await raw.connect("/"), "/")
        frames = []
        started = time.monotonic()
        while True:  # read without ever answering, closing or pinging
            message = await raw.ws.receive(timeout=3)
            frames.append(message.type)
            if message.type != aiohttp.WSMsgType.TEXT:
                break
        assert frames[-1] in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), frames
        assert time.monotonic() - started < 2


async def test_the_fenced_dispatch_handles_every_packet_a_client_sends(
    server: RunningServer,
) -> None:
    """connect, event with and without an ack, disconnect of one namespace:
    python-socketio's handlers still run behind the fence."""
    call_id = int((await server.schedule("alice", "bob"))["id"])
    alice = socketio.AsyncClient(reconnection=False, serializer=StdJsonPacket)
    bob = socketio.AsyncClient(reconnection=False, serializer=StdJsonPacket)
    seen: asyncio.Queue[Any] = asyncio.Queue()
    alice.on("partner_left", seen.put_nowait, namespace="/call")
    for client, user in ((alice, "alice"), (bob, "bob")):
        await client.connect(
            server.url,
            namespaces=["/call", "/chat"],
            auth={"token": server.token(user)},
            transports=["websocket"],
            wait_timeout=5,
        )
    try:
        assert (await alice.call("join", {"call_id": call_id}, namespace="/call"))["ok"]
        assert (await bob.call("join", {"call_id": call_id}, namespace="/call"))["ok"]
        await bob.emit("leave", {"call_id": call_id}, namespace="/call")  # no ack asked
        assert await asyncio.wait_for(seen.get(), 5) == {"call_id": call_id, "reason": "left"}
        await bob.disconnect()
    finally:
        await alice.disconnect()
        await bob.disconnect()


async def test_the_relay_fast_path_still_sends(server: RunningServer, peer: PeerFactory) -> None:
    """``send_socketio_packet`` (``emit_to_sid``)."""
    call_id = int((await server.schedule("alice", "bob"))["id"])
    alice, bob = await peer("alice"), await peer("bob")
    await both_in(alice, bob, call_id)
    offer = {"call_id": call_id, "type": "offer", "sdp": "v=0"}
    assert await bob.emit("signal", offer) == {"ok": True}
    assert await alice.take("signal") == {**offer, "from": "bob"}


async def _silent_until_closed(raw: RawSocket, seconds: float) -> bool:
    """Read without answering pings; True once the server closed the socket."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await raw.ws.receive(timeout=left)
        except TimeoutError:
            return False
        if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            return True
    return False


async def test_a_websocket_client_that_stops_answering_pings_is_closed(lab: Lab) -> None:
    """``serve_websocket`` reads without a timeout of its own: the ping
    service's close must still end the connection, reader and writer."""
    server = await lab.start(ping_interval_s=0.2, ping_timeout_s=0.3)
    async with contextlib.AsyncExitStack() as stack:
        answering = await RawSocket.open(stack, server)
        await answering.connect("/call", {"token": server.token("alice")})
        silent = await RawSocket.open(stack, server)
        await silent.connect("/call", {"token": server.token("bob")})
        # Meanwhile the other answers its pings (next() does) and is served on.
        answering_pings = asyncio.ensure_future(answering.closed_within(30))
        assert await _silent_until_closed(silent, 10)
        assert not answering_pings.done()
        answering_pings.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering_pings
        await answering.still_open()
