"""Fixtures and helpers of the functional call tests.

``tests/conftest.py`` gives the default ``server``; here are servers with other
settings (``lab.start(**overrides)``), clients that also note when each event
arrived (``peer("alice")`` on the default server, ``lab.connect(srv, "bob")``
on another), and the assertions every test file shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests import support
from tests.contract.mysql_scratch import ScratchDatabase
from tests.support import CALL_EVENTS, Client, RunningServer, serve_in_process

#: How long to listen before concluding that an event does not come.
QUIET_S = 0.3
#: How far from its planned instant a timer's event may arrive.
TIMER_TOLERANCE_S = 0.5


def now() -> datetime:
    return datetime.now(UTC)


def parse_iso(value: str) -> datetime:
    """A wire timestamp, which must be ISO 8601 with an explicit UTC zone."""
    assert isinstance(value, str), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), value
    return parsed


def assert_error(body: Any, code: str) -> None:
    """``body`` is PROTOCOL.md's error shape with ``code``, and nothing else."""
    assert isinstance(body, dict), body
    assert set(body) == {"ok", "error"}, body
    assert body["ok"] is False, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


def assert_rate_limited(body: Any) -> int:
    """PROTOCOL.md's error shape with ``rate_limited`` and ``retry_after``."""
    assert isinstance(body, dict) and body.get("ok") is False, body
    error = body["error"]
    assert set(error) == {"code", "message", "retry_after"}, body
    assert error["code"] == "rate_limited", body
    wait = error["retry_after"]
    assert isinstance(wait, int) and wait >= 1, body
    return wait


def assert_call_shape(call: Any) -> None:
    assert isinstance(call, dict), call
    assert set(call) == {
        "id",
        "caller_id",
        "callee_id",
        "scheduled_at",
        "state",
        "started_at",
        "ended_at",
        "end_reason",
    }, call
    assert isinstance(call["id"], int) and not isinstance(call["id"], bool), call
    parse_iso(call["scheduled_at"])


class StdJsonPacket(socketio.packet.Packet):
    """Packets encoded with the standard library, as in a client process of its
    own: the server's ``json=`` hook patches python-socketio's shared
    ``Packet`` class, which an in-process client would otherwise use too."""

    json = json


@dataclass
class TimedClient(Client):
    """A recording client that also notes the instant each event arrived."""

    arrived_at: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    _taken: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def _recorder(self, name: str) -> Any:
        record = super()._recorder(name)

        async def timed(data: Any) -> None:
            self.arrived_at[name].append(now())
            await record(data)

        return timed

    async def join(self, call_id: int) -> dict[str, Any]:
        """Join and insist that it worked; returns the ack."""
        ack = await self.emit("join", {"call_id": call_id})
        assert ack["ok"] is True, ack
        return dict(ack)

    async def ok(self, event: str, call_id: int) -> None:
        """``connected`` or ``leave``, which must succeed."""
        assert await self.emit(event, {"call_id": call_id}) == {"ok": True}

    async def quiet(self, names: Iterable[str] = CALL_EVENTS, within: float = QUIET_S) -> None:
        """Assert that no new event of ``names`` arrives within ``within`` seconds."""
        watched = tuple(names)
        seen = {n: len(self.events[n]) for n in watched}

        def changed() -> bool:
            return any(len(self.events[n]) > seen[n] for n in watched)

        async with self._arrived:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait_for(changed), within)
        assert not changed(), {n: self.events[n][seen[n] :] for n in watched if changed()}

    async def take(self, name: str, limit_s: float = 10) -> Any:
        """The next event ``name`` after those already taken with ``take``."""
        taken = self._taken[name]
        events = await self.wait_for(name, taken + 1, limit_s)
        self._taken[name] = taken + 1
        return events[taken]


@dataclass
class Lab:
    """Servers with other settings, and clients of them, closed after the test
    (clients first, then the servers, in reverse order of creation)."""

    tmp_path: Path
    stack: contextlib.AsyncExitStack
    _servers: int = 0

    async def start(self, **overrides: Any) -> RunningServer:
        self._servers += 1
        folder = self.tmp_path / f"server{self._servers}"
        folder.mkdir()
        return await self.stack.enter_async_context(
            serve_in_process(support.server_settings(folder, **overrides))
        )

    async def connect(
        self, server: RunningServer, user_id: str, token: str | None = None
    ) -> TimedClient:
        return await open_client(self.stack, server, user_id, token)


async def open_client(
    stack: contextlib.AsyncExitStack, server: RunningServer, user_id: str, token: str | None
) -> TimedClient:
    client = TimedClient(
        server, user_id, sio=socketio.AsyncClient(reconnection=False, serializer=StdJsonPacket)
    )
    await client.connect(token)
    stack.push_async_callback(client.close)
    return client


PeerFactory = Callable[[str], Awaitable[TimedClient]]


@pytest.fixture
async def shared_database(mysql_url: str) -> AsyncIterator[str]:
    """A scratch database on the session's MariaDB for this test, dropped
    afterwards: what server processes in children share."""
    scratch = ScratchDatabase(mysql_url)
    await asyncio.to_thread(scratch.create)
    try:
        yield scratch.url
    finally:
        await asyncio.to_thread(scratch.drop)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    async with contextlib.AsyncExitStack() as stack:
        yield Lab(tmp_path, stack)


@pytest.fixture
async def peer(server: RunningServer) -> AsyncIterator[PeerFactory]:
    """``await peer("alice")``: a connected, timed /call client of ``server``."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(user_id: str) -> TimedClient:
            return await open_client(stack, server, user_id, None)

        yield make


async def refused_connect(server: RunningServer, auth: Any) -> tuple[Exception, list[Any]]:
    """Try to connect to /call with ``auth``; returns the exception the client
    raised and what its ``connect_error`` handler received."""
    sio = socketio.AsyncClient(reconnection=False, serializer=StdJsonPacket)
    received: list[Any] = []

    async def on_error(data: Any = None) -> None:
        received.append(data)

    sio.on("connect_error", on_error, namespace="/call")
    try:
        await sio.connect(
            server.url, namespaces=["/call"], auth=auth, transports=["websocket"], wait_timeout=5
        )
    except socketio.exceptions.ConnectionError as exc:
        return exc, received
    finally:
        await sio.disconnect()
    raise AssertionError(f"the connection with auth={auth!r} was accepted")


async def both_in(a: TimedClient, b: TimedClient, call_id: int) -> dict[str, Any]:
    """``a`` waits, ``b`` joins as offerer, ``a`` hears partner_joined; returns b's ack."""
    first = await a.join(call_id)
    assert first["role"] == "waiting" and first["partner_present"] is False, first
    second = await b.join(call_id)
    assert second["role"] == "offerer" and second["partner_present"] is True, second
    assert await a.take("partner_joined") == {"call_id": call_id, "role": "answerer"}
    return second


async def to_countdown(a: TimedClient, b: TimedClient, call_id: int) -> dict[str, Any]:
    """Both in and connected; returns the countdown both received (the same)."""
    await both_in(a, b, call_id)
    await a.ok("connected", call_id)
    await b.ok("connected", call_id)
    countdown = await a.take("countdown")
    assert await b.take("countdown") == countdown
    return dict(countdown)


async def to_live(a: TimedClient, b: TimedClient, call_id: int) -> dict[str, Any]:
    """Both in, connected, through the countdown; returns the ``live`` event."""
    await to_countdown(a, b, call_id)
    live = await a.take("live")
    assert await b.take("live") == live
    return dict(live)


async def call_state(server: RunningServer, user_id: str, call_id: int) -> dict[str, Any]:
    status, body = await server.request("GET", f"/api/calls/{call_id}", user_id)
    assert status == 200, body
    return dict(body["call"])
