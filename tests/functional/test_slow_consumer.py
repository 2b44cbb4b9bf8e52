"""A connection that stops reading is closed once what waits
for it passes SIGNALING_SEND_BUDGET, and its sender is told, against a real
server. The slow consumer is a raw websocket client that never reads after
joining (aiohttp's client stops reading its socket when its buffer fills)."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import aiohttp
from engineio.async_socket import AsyncSocket

from signaling.engineio_fence import CountingQueue
from tests.functional.conftest import Lab
from tests.support import RunningServer


async def raw_join(
    session: aiohttp.ClientSession, server: RunningServer, user: str, call_id: int
) -> aiohttp.ClientWebSocketResponse:
    """A /call connection spoken by hand up to the ``join`` ack."""
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    ws = await session.ws_connect(url, autoping=False)
    opened = await ws.receive_str(timeout=5)
    assert opened.startswith("0{"), opened
    await ws.send_str("40/call," + json.dumps({"token": server.token(user)}))
    connected = await ws.receive_str(timeout=5)
    assert connected.startswith("40/call,"), connected
    await ws.send_str("42/call,1" + json.dumps(["join", {"call_id": call_id}]))
    ack = await ws.receive_str(timeout=5)
    assert ack.startswith("43/call,1"), ack
    assert json.loads(ack[len("43/call,1") :])[0]["ok"] is True, ack
    return ws


def queued_for_slow_consumers() -> int:
    """Characters still queued for closed Engine.IO sockets that overflowed
    their budget (this process's, found through the garbage collector)."""
    gc.collect()
    return sum(
        o.queue.queued
        for o in gc.get_objects()
        if isinstance(o, AsyncSocket)
        and o.closed
        and isinstance(o.queue, CountingQueue)
        and o.queue.overflowed
    )


async def test_a_partner_who_stops_reading_is_disconnected_and_the_sender_told(
    lab: Lab,
) -> None:
    budget = 256 * 1024
    server = await lab.start(send_budget=budget, signals_per_s=0)
    call = await server.schedule("alice", "bob", 1)
    async with aiohttp.ClientSession() as session:
        alice = await raw_join(session, server, "alice", call["id"])
        bob = await lab.connect(server, "bob")
        await bob.join(call["id"])
        offer = {"call_id": call["id"], "type": "offer", "sdp": "v=0 " + "s" * 60_000}
        acks: list[Any] = []
        # The kernel's socket buffers take the first megabytes; then the queue grows.
        for _ in range(1000):
            ack = await bob.emit("signal", offer)
            acks.append(ack)
            if ack != {"ok": True}:
                break
        last = acks[-1]
        assert last["ok"] is False and last["error"]["code"] == "rate_limited", acks[-3:]
        assert last["error"]["retry_after"] >= 1
        # The slow consumer is gone: its partner hears it left, and its socket closes.
        left = await bob.take("partner_left", 5)
        assert left["call_id"] == call["id"], left
        for _ in range(10_000):
            message = await alice.receive(timeout=5)
            if message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.ERROR,
            ):
                break
        else:
            raise AssertionError("the slow consumer's socket stayed open")
        await alice.close()
        # What waited for it is let go at once, not when the closed socket's
        # ping task next wakes (up to 25 s later).
        assert queued_for_slow_consumers() < budget // 8
        # Bob goes on: his next signal is held for alice, and the server is healthy.
        await asyncio.sleep(0.1)
        ack = await bob.emit("signal", {**offer, "sdp": "v=0 small"})
        assert ack == {"ok": True}, ack
    status, body = await server.request("GET", "/api/health")
    assert status == 200, body


async def test_a_reading_partner_is_never_limited(lab: Lab) -> None:
    """The same volume to a partner who reads: every signal arrives."""
    server = await lab.start(send_budget=256 * 1024, signals_per_s=0)
    call = await server.schedule("alice", "bob", 1)
    alice = await lab.connect(server, "alice")
    bob = await lab.connect(server, "bob")
    await alice.join(call["id"])
    await bob.join(call["id"])
    offer = {"call_id": call["id"], "type": "offer", "sdp": "v=0 " + "s" * 60_000}
    for _ in range(200):
        assert await bob.emit("signal", offer) == {"ok": True}
    assert len(await alice.wait_for("signal", 200)) == 200
