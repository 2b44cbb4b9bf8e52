"""Quotas and rate limits per user, against a real server.

Each limit is set low on a server of its own; the excess gets HTTP 429 with a
``Retry-After`` header, or the error ack, both with ``rate_limited`` and the
whole seconds to wait in ``error.retry_after``. One test runs the per-user
limits with Redis storage shared by two servers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import socketio

from tests.functional.chat_support import ChatClient, open_room
from tests.functional.conftest import Lab, StdJsonPacket, assert_rate_limited
from tests.support import RunningServer, in_seconds


async def inside_one_window(window_s: float, burst_s: float) -> None:
    """Wait, if need be, until a burst of ``burst_s`` seconds fits before the
    next wall-clock boundary of ``window_s``. The sliding-window counter
    weighs the previous window's hits by how much of it the window still
    covers, so a burst that crosses a boundary may get one hit more than the
    limit: a test of an exact limit runs its burst inside one window."""
    into = time.time() % window_s
    if into > window_s - burst_s:
        await asyncio.sleep(window_s - into + 0.01)


async def post(
    server: RunningServer, path: str, user: str, body: dict[str, Any]
) -> tuple[int, Any, str | None]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + path, headers=server.headers(user), json=body) as response,
    ):
        return response.status, await response.json(), response.headers.get("Retry-After")


async def test_calls_open_at_once_are_capped_and_freed_by_a_cancel(lab: Lab) -> None:
    server = await lab.start(calls_open_max=3)
    ids = []
    for _ in range(3):
        status, body, _ = await post(
            server,
            "/api/calls",
            "spammer",
            {"partner_id": "victim", "scheduled_at": in_seconds(3600)},
        )
        assert status == 201, body
        ids.append(body["call"]["id"])
    status, body, retry = await post(
        server, "/api/calls", "spammer", {"partner_id": "victim", "scheduled_at": in_seconds(60)}
    )
    assert status == 429
    assert retry is not None and int(retry) == assert_rate_limited(body)
    # Someone else still books, and so does the victim (calls they did not book).
    assert (await server.schedule("victim", "spammer", 3600))["id"]
    assert (await server.schedule("other", "victim", 3600))["id"]
    # A special gift books a call too: refused the same way, and no gift is stored.
    status, body, _ = await post(
        server,
        "/api/gifts",
        "spammer",
        {
            "receiver_id": "victim",
            "kind": "special",
            "message": "hi",
            "scheduled_at": in_seconds(3600),
        },
    )
    assert status == 429
    assert_rate_limited(body)
    status, gifts = await server.request("GET", "/api/gifts?box=received", "victim")
    assert status == 200 and gifts["gifts"] == [], gifts
    # Cancelling one frees a place.
    status, body = await server.request("DELETE", f"/api/calls/{ids[0]}", "spammer")
    assert status == 200, body
    assert (await server.schedule("spammer", "victim", 3600))["id"]


async def test_calls_booked_per_day(lab: Lab) -> None:
    server = await lab.start(calls_per_day=2)
    for _ in range(2):
        call = await server.schedule("spammer", "victim", 3600)
        status, _ = await server.request("DELETE", f"/api/calls/{call['id']}", "spammer")
        assert status == 200
    status, body, retry = await post(
        server, "/api/calls", "spammer", {"partner_id": "victim", "scheduled_at": in_seconds(60)}
    )
    assert status == 429
    wait = assert_rate_limited(body)
    # The window is a day: the wait is hours, never more than the day.
    assert 60 < wait <= 24 * 3600 and retry == str(wait), (wait, retry)
    assert (await server.schedule("someone", "victim", 3600))["id"]


async def test_gifts_per_minute(lab: Lab) -> None:
    server = await lab.start(gifts_per_minute=3)
    gift = {"receiver_id": "victim", "kind": "general", "message": "hi"}
    await inside_one_window(60.0, burst_s=10.0)
    for _ in range(3):
        status, body, _ = await post(server, "/api/gifts", "spammer", gift)
        assert status == 201, body
    status, body, retry = await post(server, "/api/gifts", "spammer", gift)
    assert status == 429
    wait = assert_rate_limited(body)
    assert 1 <= wait <= 60 and retry == str(wait)
    status, body, _ = await post(server, "/api/gifts", "friend", gift)
    assert status == 201, body
    status, box = await server.request("GET", "/api/gifts?box=received", "victim")
    assert status == 200 and len(box["gifts"]) == 4, box


async def test_signals_per_second_per_connection(lab: Lab) -> None:
    server = await lab.start(signals_per_s=5)
    call = await server.schedule("alice", "bob", 1)
    alice = await lab.connect(server, "alice")
    bob = await lab.connect(server, "bob")
    await alice.join(call["id"])
    await bob.join(call["id"])
    candidate = {
        "call_id": call["id"],
        "type": "candidate",
        "candidate": {"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host"},
    }
    acks = [await bob.emit("signal", candidate) for _ in range(8)]
    assert acks[:5] == [{"ok": True}] * 5, acks
    for ack in acks[5:]:
        assert assert_rate_limited(ack) == 1
    # The partner got the five that were accepted, and the other side is not limited.
    assert len(await alice.wait_for("signal", 5)) == 5
    await alice.quiet(["signal"])
    assert await alice.emit("signal", {**candidate}) == {"ok": True}


async def test_chat_messages_per_second(lab: Lab) -> None:
    server = await lab.start(chat_per_s=3)
    room_id = await open_room(server, "alice", "bob")
    alice = await ChatClient(server, "alice").connect()
    try:
        await inside_one_window(1.0, burst_s=0.5)
        acks = [
            await alice.emit(
                "send", {"room_id": room_id, "content": f"m{i}", "client_msg_id": f"c{i}"}
            )
            for i in range(5)
        ]
    finally:
        await alice.close()
    assert all(a["ok"] is True for a in acks[:3]), acks
    for ack in acks[3:]:
        assert assert_rate_limited(ack) == 1
    status, body = await server.request("GET", f"/api/chat/rooms/{room_id}/messages", "bob")
    assert status == 200 and len(body["messages"]) == 3, body


async def connect_raw(server: RunningServer, user: str) -> tuple[socketio.AsyncClient, list[Any]]:
    sio = socketio.AsyncClient(reconnection=False, serializer=StdJsonPacket)
    errors: list[Any] = []

    async def on_error(data: Any = None) -> None:
        errors.append(data)

    sio.on("connect_error", on_error, namespace="/call")
    try:
        await sio.connect(
            server.url,
            namespaces=["/call"],
            auth={"token": server.token(user)},
            transports=["websocket"],
            wait_timeout=5,
        )
    except socketio.exceptions.ConnectionError:
        await sio.disconnect()
    return sio, errors


async def test_connections_per_user(lab: Lab) -> None:
    server = await lab.start(connections_per_user=2)
    first, _ = await connect_raw(server, "alice")
    second, _ = await connect_raw(server, "alice")
    try:
        assert first.connected and second.connected
        third, errors = await connect_raw(server, "alice")
        assert not third.connected
        assert len(errors) == 1 and errors[0]["message"] == "rate_limited", errors
        assert_rate_limited({"ok": False, "error": errors[0]["data"]})
        other, _ = await connect_raw(server, "bob")
        assert other.connected
        await other.disconnect()
        # A connection that goes frees its place.
        await first.disconnect()
        for _ in range(50):
            again, errors = await connect_raw(server, "alice")
            if again.connected:
                break
        assert again.connected, errors
        await again.disconnect()
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_redis_storage_holds_across_processes(lab: Lab, redis_url: str) -> None:
    shared = {"redis_url": redis_url, "redis_prefix": f"test-{uuid.uuid4().hex[:12]}"}
    one = await lab.start(gifts_per_minute=2, **shared)
    two = await lab.start(gifts_per_minute=2, **shared)
    gift = {"receiver_id": "victim", "kind": "general", "message": "hi"}
    await inside_one_window(60.0, burst_s=10.0)
    assert (await post(one, "/api/gifts", "spammer", gift))[0] == 201
    assert (await post(two, "/api/gifts", "spammer", gift))[0] == 201
    status, body, retry = await post(one, "/api/gifts", "spammer", gift)
    assert status == 429 and retry is not None
    assert_rate_limited(body)
    status, body, _ = await post(two, "/api/gifts", "spammer", gift)
    assert status == 429
    assert_rate_limited(body)


async def test_held_signals_are_capped_in_bytes_per_user_across_calls(lab: Lab) -> None:
    """F5: signals held for absent (here made-up) partners count against their
    sender, every call together, not 64 per call."""
    server = await lab.start(held_bytes_max=10_000)
    mallory = await lab.connect(server, "mallory")
    first = await server.schedule("mallory", "ghost1", 1)
    second = await server.schedule("mallory", "ghost2", 1)
    sdp = "v=0 " + "s" * 4_000
    await mallory.join(first["id"])
    for _ in range(2):
        ack = await mallory.emit("signal", {"call_id": first["id"], "type": "offer", "sdp": sdp})
        assert ack == {"ok": True}, ack
    await mallory.join(second["id"])  # leaves the first; what it holds stays held
    ack = await mallory.emit("signal", {"call_id": second["id"], "type": "offer", "sdp": sdp})
    assert ack["ok"] is False and ack["error"]["code"] == "rate_limited", ack
    # Small enough to fit: still held.
    small = {"call_id": second["id"], "type": "offer", "sdp": "v=0 small"}
    assert await mallory.emit("signal", small) == {"ok": True}
    # Another user holds as before.
    alice = await lab.connect(server, "alice")
    call = await server.schedule("alice", "bob", 1)
    await alice.join(call["id"])
    ack = await alice.emit("signal", {"call_id": call["id"], "type": "offer", "sdp": sdp})
    assert ack == {"ok": True}, ack
    # The ghost who comes back gets what was held, and the weight is freed.
    ghost = await lab.connect(server, "ghost1")
    await ghost.join(first["id"])
    assert len(await ghost.wait_for("signal", 2)) == 2
    await mallory.join(second["id"])
    ack = await mallory.emit("signal", {"call_id": second["id"], "type": "offer", "sdp": sdp})
    assert ack == {"ok": True}, ack
