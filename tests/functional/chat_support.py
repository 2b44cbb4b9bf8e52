"""Helpers of the chat and gift functional tests: /chat clients that record
``message`` and ``read``, and a room made the way users make one (gifts both
ways)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import Client, RunningServer

CHAT_EVENTS = ("message", "read")
#: How long to listen before concluding that an event does not come.
QUIET_S = 0.3


@dataclass
class ChatClient(Client):
    """A python-socketio client of /chat that records what it receives."""

    namespace: str = "/chat"

    def __post_init__(self) -> None:
        for name in CHAT_EVENTS:
            self.sio.on(name, self._recorder(name), namespace=self.namespace)

    async def ok(self, event: str, payload: Any) -> dict[str, Any]:
        ack = await self.emit(event, payload)
        assert isinstance(ack, dict) and ack.get("ok") is True, ack
        return ack

    async def send(self, room_id: int, content: str, client_msg_id: str) -> dict[str, Any]:
        ack = await self.ok(
            "send", {"room_id": room_id, "content": content, "client_msg_id": client_msg_id}
        )
        return dict(ack["message"])

    async def nothing_more(self, name: str, count: int) -> None:
        """No further ``name`` event beyond ``count`` arrives for a while."""
        await asyncio.sleep(QUIET_S)
        assert len(self.events[name]) == count, self.events[name]


ChatClientFactory = Callable[[str], Awaitable[ChatClient]]


@pytest.fixture
async def chat_client(server: RunningServer) -> AsyncIterator[ChatClientFactory]:
    """``await chat_client("alice")``: a connected /chat client, closed after."""
    made: list[ChatClient] = []

    async def make(user_id: str) -> ChatClient:
        made.append(await ChatClient(server, user_id).connect())
        return made[-1]

    yield make
    for c in made:
        await c.close()


async def send_gift(
    server: RunningServer, sender: str, receiver: str, **fields: Any
) -> tuple[int, Any]:
    body = {"receiver_id": receiver, "kind": "general", "message": "for you", **fields}
    return await server.request("POST", "/api/gifts", sender, json=body)


async def open_room(server: RunningServer, user1: str, user2: str) -> int:
    """Gifts both ways, then the room id from the room list."""
    for sender, receiver in ((user1, user2), (user2, user1)):
        status, body = await send_gift(server, sender, receiver)
        assert status == 201, body
    return await room_between(server, user1, user2)


async def room_between(server: RunningServer, user1: str, user2: str) -> int:
    status, body = await server.request("GET", "/api/chat/rooms", user1)
    assert status == 200, body
    ids = [room["id"] for room in body["rooms"] if room["partner_id"] == user2]
    assert len(ids) == 1, body
    return int(ids[0])


async def history(server: RunningServer, user: str, room_id: int, query: str = "") -> Any:
    status, body = await server.request("GET", f"/api/chat/rooms/{room_id}/messages{query}", user)
    assert status == 200, body
    return body["messages"]
