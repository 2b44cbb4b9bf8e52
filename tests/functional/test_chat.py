"""Chat with the real server and real python-socketio clients of /chat."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.contract.message_backends import mongo_database_url, run_mongo_wire_server
from tests.functional.chat_support import (
    ChatClient,
    ChatClientFactory,
    chat_client,
    history,
    open_room,
)
from tests.support import RunningServer, serve_in_process

__all__ = ["chat_client"]  # a fixture, used by name


def assert_error(ack: Any, code: str) -> None:
    assert isinstance(ack, dict) and ack.get("ok") is False, ack
    assert ack["error"]["code"] == code, ack
    assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]


async def test_a_message_reaches_the_partner_and_the_senders_other_sockets(
    server: RunningServer, chat_client: ChatClientFactory
) -> None:
    room_id = await open_room(server, "alice", "bob")
    alice, alice_phone, bob = (
        await chat_client("alice"),
        await chat_client("alice"),
        await chat_client("bob"),
    )
    sent = await alice.send(room_id, "hello bob", "m-1")
    assert sent["seq"] == 1 and sent["sender_id"] == "alice" and sent["room_id"] == room_id
    assert set(sent) == {"room_id", "seq", "sender_id", "content", "created_at", "client_msg_id"}
    assert (await bob.wait_for("message")) == [sent]
    assert (await alice_phone.wait_for("message")) == [sent]
    await alice.nothing_more("message", 0)  # the sending socket has the ack
    assert await history(server, "bob", room_id) == [sent]


async def test_a_retried_send_is_stored_and_delivered_once(
    server: RunningServer, chat_client: ChatClientFactory
) -> None:
    room_id = await open_room(server, "alice", "bob")
    alice, bob = await chat_client("alice"), await chat_client("bob")
    first = await alice.send(room_id, "only once", "same-id")
    again = await alice.send(room_id, "only once", "same-id")
    assert again == first
    await bob.wait_for("message")
    await bob.nothing_more("message", 1)
    assert len(await history(server, "alice", room_id)) == 1
    # The same client_msg_id from the partner is another message.
    other = await bob.send(room_id, "mine", "same-id")
    assert other["seq"] == 2


@pytest.mark.parametrize(
    "payload",
    [
        {"content": "", "client_msg_id": "c"},
        {"content": "x" * 2001, "client_msg_id": "c"},
        {"content": "hi", "client_msg_id": ""},
        {"content": "hi", "client_msg_id": "c" * 65},
        {"content": "hi"},
        {"content": 5, "client_msg_id": "c"},
        {"content": "hi", "client_msg_id": "c", "extra": 1},
        {"content": "hi", "client_msg_id": "c", "room_id": "ROOM"},
        {"content": "hi", "client_msg_id": "c", "room_id": 0},
        {"content": "hi", "client_msg_id": "c", "room_id": True},
        "not an object",
    ],
)
async def test_invalid_sends_answer_invalid_and_store_nothing(
    server: RunningServer, chat_client: ChatClientFactory, payload: Any
) -> None:
    room_id = await open_room(server, "alice", "bob")
    alice, bob = await chat_client("alice"), await chat_client("bob")
    if isinstance(payload, dict):
        payload = {"room_id": room_id, **payload}
        if payload["room_id"] == "ROOM":
            payload["room_id"] = str(room_id)
    assert_error(await alice.emit("send", payload), "invalid")
    await bob.nothing_more("message", 0)
    assert await history(server, "alice", room_id) == []
    # Still usable afterwards, and the first stored message is seq 1.
    assert (await alice.send(room_id, "x" * 2000, "ok"))["seq"] == 1


async def test_only_the_rooms_two_users_may_act(
    server: RunningServer, chat_client: ChatClientFactory
) -> None:
    room_id = await open_room(server, "alice", "bob")
    alice, carol = await chat_client("alice"), await chat_client("carol")
    await alice.send(room_id, "private", "p1")
    send = {"room_id": room_id, "content": "let me in", "client_msg_id": "x"}
    assert_error(await carol.emit("send", send), "forbidden")
    assert_error(await carol.emit("sync", {"room_id": room_id, "after_seq": 0}), "forbidden")
    assert_error(await carol.emit("read", {"room_id": room_id, "seq": 1}), "forbidden")
    assert_error(await carol.emit("send", {**send, "room_id": room_id + 1000}), "not_found")
    status, body = await server.request("GET", f"/api/chat/rooms/{room_id}/messages", "carol")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await server.request(
        "POST", f"/api/chat/rooms/{room_id}/read", "carol", json={"seq": 1}
    )
    assert status == 404
    status, body = await server.request("GET", "/api/chat/rooms", "carol")
    assert status == 200 and body["rooms"] == []
    status, _ = await server.request("GET", "/api/chat/rooms")
    assert status == 401
    await alice.nothing_more("message", 0)
    assert [m["content"] for m in await history(server, "bob", room_id)] == ["private"]


async def test_read_receipts_and_unread_counts(
    server: RunningServer, chat_client: ChatClientFactory
) -> None:
    room_id = await open_room(server, "alice", "bob")
    alice, bob = await chat_client("alice"), await chat_client("bob")
    for i in range(3):
        await alice.send(room_id, f"m{i}", f"m{i}")
    await bob.wait_for("message", 3)

    async def unread(user: str) -> int:
        _, body = await server.request("GET", "/api/chat/rooms", user)
        return int(body["rooms"][0]["unread_count"])

    assert (await unread("bob"), await unread("alice")) == (3, 0)
    assert await bob.emit("read", {"room_id": room_id, "seq": 2}) == {"ok": True}
    assert (await alice.wait_for("read")) == [{"room_id": room_id, "user_id": "bob", "seq": 2}]
    await bob.nothing_more("read", 0)
    assert await unread("bob") == 1
    status, body = await server.request(
        "POST", f"/api/chat/rooms/{room_id}/read", "bob", json={"seq": 3}
    )
    assert status == 200 and body == {"ok": True, "room_id": room_id, "seq": 3}
    assert (await alice.wait_for("read", 2))[1]["seq"] == 3
    assert await unread("bob") == 0
    for bad in ({"seq": -1}, {"seq": "3"}, {}, {"seq": 1, "x": 1}):
        status, body = await server.request(
            "POST", f"/api/chat/rooms/{room_id}/read", "bob", json=bad
        )
        assert status == 400 and body["error"]["code"] == "invalid", bad
    assert_error(await bob.emit("read", {"room_id": room_id, "seq": 1.5}), "invalid")


async def test_sync_after_a_reconnect_returns_exactly_the_missed_messages(
    server: RunningServer, chat_client: ChatClientFactory
) -> None:
    room_id = await open_room(server, "alice", "bob")
    alice, bob = await chat_client("alice"), await chat_client("bob")
    for i in range(1, 3):
        await alice.send(room_id, f"seen {i}", f"s{i}")
    seen = await bob.wait_for("message", 2)
    await bob.close()
    missed = [await alice.send(room_id, f"missed {i}", f"x{i}") for i in range(1, 6)]
    bob_again = await chat_client("bob")
    ack = await bob_again.ok("sync", {"room_id": room_id, "after_seq": seen[-1]["seq"]})
    assert ack["messages"] == missed and ack["has_more"] is False
    assert [m["seq"] for m in ack["messages"]] == [3, 4, 5, 6, 7]
    assert (await bob_again.ok("sync", {"room_id": room_id, "after_seq": 7}))["messages"] == []
    assert_error(await bob_again.emit("sync", {"room_id": room_id, "after_seq": -1}), "invalid")


async def test_concurrent_senders_on_several_sockets_get_gapless_seqs(
    server: RunningServer, chat_client: ChatClientFactory
) -> None:
    room_id = await open_room(server, "alice", "bob")
    sockets = [await chat_client(user) for user in ("alice", "alice", "bob", "bob")]

    async def burst(client: ChatClient, n: int) -> list[int]:
        return [(await client.send(room_id, f"{n}-{i}", f"{n}-{i}"))["seq"] for i in range(25)]

    results = await asyncio.gather(*(burst(c, n) for n, c in enumerate(sockets)))
    assert sorted(s for seqs in results for s in seqs) == list(range(1, 101))
    assert all(seqs == sorted(seqs) for seqs in results)  # each socket's order kept
    page = await history(server, "alice", room_id, "?limit=100")
    assert [m["seq"] for m in page] == list(range(100, 0, -1))


async def test_history_pages_and_limits(
    server: RunningServer, chat_client: ChatClientFactory
) -> None:
    room_id = await open_room(server, "alice", "bob")
    alice = await chat_client("alice")
    for i in range(1, 61):
        await alice.send(room_id, f"m{i}", f"m{i}")
    assert [m["seq"] for m in await history(server, "bob", room_id)] == list(range(60, 10, -1))
    page = await history(server, "bob", room_id, "?limit=10")
    assert [m["seq"] for m in page] == list(range(60, 50, -1))
    page = await history(server, "bob", room_id, f"?limit=10&before_seq={page[-1]['seq']}")
    assert [m["seq"] for m in page] == list(range(50, 40, -1))
    assert await history(server, "bob", room_id, "?before_seq=1") == []
    assert len(await history(server, "bob", room_id, "?before_seq=&limit=")) == 50
    for query in ("?limit=0", "?limit=101", "?limit=x", "?before_seq=0", "?before_seq=-3"):
        status, body = await server.request(
            "GET", f"/api/chat/rooms/{room_id}/messages{query}", "bob"
        )
        assert status == 400 and body["error"]["code"] == "invalid", query


async def test_rooms_list_newest_activity_first(
    server: RunningServer, chat_client: ChatClientFactory
) -> None:
    with_bob = await open_room(server, "alice", "bob")
    with_carol = await open_room(server, "alice", "carol")
    alice = await chat_client("alice")
    await alice.send(with_bob, "to bob", "b1")
    await asyncio.sleep(0.01)
    carol = await chat_client("carol")
    last = await carol.send(with_carol, "to alice", "c1")
    status, body = await server.request("GET", "/api/chat/rooms", "alice")
    assert status == 200
    assert [r["id"] for r in body["rooms"]] == [with_carol, with_bob]
    first = body["rooms"][0]
    assert first["partner_id"] == "carol" and first["last_message"] == last
    assert first["unread_count"] == 1 and body["rooms"][1]["unread_count"] == 0
    await alice.send(with_bob, "again", "b2")
    _, body = await server.request("GET", "/api/chat/rooms", "alice")
    assert [r["id"] for r in body["rooms"]] == [with_bob, with_carol]


@pytest.fixture(scope="module")
def mongo_wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_mongo_wire_server(tmp_path_factory.mktemp("nx-chat")) as url:
        yield url


@pytest.fixture
async def mongo_chat_server(tmp_path: Path, mongo_wire: str) -> AsyncIterator[RunningServer]:
    settings = support.server_settings(tmp_path, message_store_url=mongo_database_url(mongo_wire))
    async with serve_in_process(settings) as running:
        yield running


async def test_chat_on_the_mongo_message_store(mongo_chat_server: RunningServer) -> None:
    server = mongo_chat_server
    room_id = await open_room(server, "alice", "bob")
    alice = await ChatClient(server, "alice").connect()
    bob = await ChatClient(server, "bob").connect()
    try:
        sent = [await alice.send(room_id, f"m{i}", f"m{i}") for i in range(3)]
        assert [m["seq"] for m in sent] == [1, 2, 3]
        assert await alice.send(room_id, "m0", "m0") == sent[0]
        assert await bob.wait_for("message", 3) == sent
        assert (await bob.ok("sync", {"room_id": room_id, "after_seq": 1}))["messages"] == sent[1:]
        assert await history(server, "bob", room_id) == sent[::-1]
        _, body = await server.request("GET", "/api/chat/rooms", "bob")
        assert body["rooms"][0]["unread_count"] == 3
        status, body = await server.request("GET", "/api/health")
        assert status == 200, body
    finally:
        await alice.close()
        await bob.close()
