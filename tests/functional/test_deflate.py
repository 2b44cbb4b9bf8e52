"""Websockets without permessage-deflate unless ``SIGNALING_WS_DEFLATE`` is on.

aiohttp negotiates the extension whenever a client offers it (every browser
does), which costs two zlib contexts, about 124 KB, per idle socket.
"""

from __future__ import annotations

import asyncio
import base64
import os

import aiohttp

from tests.functional.conftest import Lab, PeerFactory, both_in
from tests.support import RunningServer

OFFER = "permessage-deflate; client_max_window_bits"


async def handshake(server: RunningServer, extensions: str = OFFER) -> dict[str, str]:
    """A websocket upgrade offering ``extensions``; returns the 101's headers."""
    reader, writer = await asyncio.open_connection(server.settings.host, server.settings.port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {server.settings.host}:{server.settings.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Extensions: {extensions}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    status, *lines = head.decode("latin-1").strip().split("\r\n")
    assert status.startswith("HTTP/1.1 101"), status
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


async def socket_compression(server: RunningServer) -> int:
    """What aiohttp's client, which offers the extension, ends up with."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket", compress=15) as ws,
    ):
        assert (await ws.receive_str(timeout=5)).startswith("0{")
        return int(ws.compress)


async def test_no_deflate_by_default(server: RunningServer, peer: PeerFactory) -> None:
    assert server.settings.ws_deflate is False
    headers = await handshake(server)
    assert "sec-websocket-extensions" not in headers, headers
    assert await socket_compression(server) == 0
    # Clients that offered it work as before.
    call_id = int((await server.schedule("alice", "bob"))["id"])
    await both_in(await peer("alice"), await peer("bob"), call_id)


async def test_deflate_when_the_setting_is_on(lab: Lab) -> None:
    server = await lab.start(ws_deflate=True)
    headers = await handshake(server)
    assert headers.get("sec-websocket-extensions", "").startswith("permessage-deflate"), headers
    assert await socket_compression(server) == 15
    assert "sec-websocket-extensions" not in await handshake(server, "x-unknown-extension")
    alice, bob = await lab.connect(server, "alice"), await lab.connect(server, "bob")
    call_id = int((await server.schedule("alice", "bob"))["id"])
    await both_in(alice, bob, call_id)
    offer = {"call_id": call_id, "type": "offer", "sdp": "v=0 " + "a" * 50_000}
    assert await bob.emit("signal", offer) == {"ok": True}
    assert (await alice.wait_for("signal"))[-1] == {**offer, "from": "bob"}
