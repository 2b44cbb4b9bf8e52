"""Gifts and the question bank over REST, with the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.functional.chat_support import room_between, send_gift
from tests.support import RunningServer, in_seconds, serve_in_process

GIFT_FIELDS = {
    "id",
    "sender_id",
    "receiver_id",
    "kind",
    "message",
    "scheduled_at",
    "call_id",
    "opened",
    "opened_at",
    "created_at",
}


async def gifts(server: RunningServer, user: str, box: str) -> list[dict[str, Any]]:
    status, body = await server.request("GET", f"/api/gifts?box={box}", user)
    assert status == 200, body
    return list(body["gifts"])


async def rooms(server: RunningServer, user: str) -> list[dict[str, Any]]:
    status, body = await server.request("GET", "/api/chat/rooms", user)
    assert status == 200, body
    return list(body["rooms"])


async def test_a_general_gift_boxes_and_opening(server: RunningServer) -> None:
    status, body = await send_gift(server, "alice", "bob", message="a rose")
    assert status == 201, body
    gift = body["gift"]
    assert set(gift) == GIFT_FIELDS
    assert (gift["sender_id"], gift["receiver_id"], gift["kind"]) == ("alice", "bob", "general")
    assert gift["opened"] is False and gift["call_id"] is None and gift["scheduled_at"] is None
    assert [g["id"] for g in await gifts(server, "bob", "received")] == [gift["id"]]
    assert [g["id"] for g in await gifts(server, "alice", "sent")] == [gift["id"]]
    assert await gifts(server, "alice", "received") == []
    for user in ("alice", "bob"):
        status, body = await server.request("GET", f"/api/gifts/{gift['id']}", user)
        assert status == 200 and body["gift"] == gift
    status, body = await server.request("GET", f"/api/gifts/{gift['id']}", "carol")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await server.request("POST", f"/api/gifts/{gift['id']}/open", "alice")
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await server.request("POST", f"/api/gifts/{gift['id']}/open", "carol")
    assert status == 404
    status, body = await server.request("POST", f"/api/gifts/{gift['id']}/open", "bob")
    assert status == 200 and body["gift"]["opened"] is True and body["gift"]["opened_at"]
    status, again = await server.request("POST", f"/api/gifts/{gift['id']}/open", "bob")
    assert status == 200 and again["gift"] == body["gift"]
    status, body = await server.request("GET", "/api/gifts?box=elsewhere", "bob")
    assert status == 400 and body["error"]["code"] == "invalid"
    status, _ = await server.request("GET", "/api/gifts/999", "bob")
    assert status == 404


async def test_a_special_gift_books_a_call(server: RunningServer) -> None:
    at = in_seconds(3600)
    status, body = await send_gift(
        server, "alice", "bob", kind="special", message="coffee?", scheduled_at=at
    )
    assert status == 201, body
    gift = body["gift"]
    assert gift["kind"] == "special" and isinstance(gift["call_id"], int)
    for user in ("alice", "bob"):
        status, listed = await server.request("GET", "/api/calls", user)
        assert status == 200
        calls = {c["id"]: c for c in listed["calls"]}
        assert gift["call_id"] in calls
        call = calls[gift["call_id"]]
        assert (call["caller_id"], call["callee_id"], call["state"]) == (
            "alice",
            "bob",
            "scheduled",
        )
        assert call["scheduled_at"] == gift["scheduled_at"]
    expected = datetime.fromisoformat(at).astimezone(UTC)
    stored = datetime.fromisoformat(gift["scheduled_at"].replace("Z", "+00:00"))
    assert abs(stored - expected) < timedelta(milliseconds=1)


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "special"},
        {"kind": "special", "scheduled_at": None},
        {"kind": "special", "scheduled_at": "2001-01-01T00:00:00Z"},
        {"kind": "special", "scheduled_at": "tomorrow"},
        {"kind": "special", "scheduled_at": "2030-01-01T00:00:00"},  # no zone
        {"kind": "general", "scheduled_at": "2099-01-01T00:00:00Z"},
        {"kind": "bouquet"},
        {"message": "x" * 501},
        {"message": 5},
        {"receiver_id": "alice"},
        {"receiver_id": ""},
        {"surprise": True},
    ],
)
async def test_an_invalid_gift_stores_nothing(
    server: RunningServer, fields: dict[str, Any]
) -> None:
    status, body = await send_gift(server, "alice", "bob", **fields)
    assert status == 400 and body["error"]["code"] == "invalid", body
    assert await gifts(server, "alice", "sent") == []
    _, listed = await server.request("GET", "/api/calls", "alice")
    assert listed["calls"] == []


async def test_gifts_both_ways_open_one_room(server: RunningServer) -> None:
    await send_gift(server, "alice", "bob")
    await send_gift(server, "alice", "bob")
    assert await rooms(server, "alice") == [] and await rooms(server, "bob") == []
    status, _ = await send_gift(
        server, "bob", "alice", kind="special", scheduled_at=in_seconds(600)
    )
    assert status == 201
    room_id = await room_between(server, "alice", "bob")
    assert await room_between(server, "bob", "alice") == room_id
    await send_gift(server, "bob", "alice")
    assert [r["id"] for r in await rooms(server, "alice")] == [room_id]


async def test_crossing_gifts_create_the_room_exactly_once(server: RunningServer) -> None:
    pairs = [("alice", "bob"), ("bob", "alice")] * 5
    results = await asyncio.gather(*(send_gift(server, s, r) for s, r in pairs))
    assert all(status == 201 for status, _ in results)
    for user, partner in (("alice", "bob"), ("bob", "alice")):
        listed = await rooms(server, user)
        assert len(listed) == 1 and listed[0]["partner_id"] == partner
        assert listed[0]["last_message"] is None and listed[0]["unread_count"] == 0


# ------------------------------------------------------------------ questions


@pytest.fixture
async def admin_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = support.server_settings(tmp_path, admin_ids=frozenset({"admin"}))
    async with serve_in_process(settings) as running:
        yield running


async def test_admins_add_questions_others_may_not(admin_server: RunningServer) -> None:
    server = admin_server
    status, body = await server.request(
        "POST", "/api/questions", "admin", json={"text": "  What made you laugh today?  "}
    )
    assert status == 201, body
    question = body["question"]
    assert question["text"] == "What made you laugh today?" and question["id"] > 0
    status, body = await server.request("POST", "/api/questions", "alice", json={"text": "Sneaky?"})
    assert status == 403 and body["error"]["code"] == "forbidden"
    for bad in ({"text": ""}, {"text": "   "}, {"text": "x" * 501}, {"text": 3}, {}):
        status, body = await server.request("POST", "/api/questions", "admin", json=bad)
        assert status == 400 and body["error"]["code"] == "invalid", bad
    seen = set()
    for _ in range(200):
        status, body = await server.request("GET", "/api/questions/random", "alice")
        assert status == 200 and set(body["question"]) == {"id", "text"}
        seen.add(body["question"]["id"])
        if question["id"] in seen:
            break
    assert question["id"] in seen


def test_admin_ids_come_from_the_environment() -> None:
    from signaling.config import load_settings

    settings = load_settings(
        {"SIGNALING_JWT_SECRET": support.SECRET, "SIGNALING_ADMIN_IDS": " admin, 42 ,,ops "}
    )
    assert settings.admin_ids == frozenset({"admin", "42", "ops"})
    assert load_settings({"SIGNALING_JWT_SECRET": support.SECRET}).admin_ids == frozenset()
