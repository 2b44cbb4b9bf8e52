"""A real HAProxy in front of two real server processes (sharing a scratch
database on the session's MariaDB, and its Redis): both users of a call reach the same process
because their ``/call`` connections carry ``?call_id=<id>``, and when that
process is killed mid-call they reconnect through HAProxy to the other one,
which ends the call on time.

Which process holds a connection is read from each process's own
``/metrics`` (``signaling_connections{namespace="/call"}``), asked directly,
not through HAProxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.functional.chat_support import ChatClient, history, open_room
from tests.functional.conftest import StdJsonPacket, TimedClient, both_in, now, parse_iso
from tests.functional.test_two_processes import (
    TOLERANCE_S,
    Cluster,
    two_servers,
)
from tests.haproxy import RunningHAProxy, run_haproxy
from tests.support import RunningServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: The calls test schedules at least this many calls, and more (up to
#: MAX_CALLS) until each process owns at least MIN_PER_PROCESS of them.
CALLS = 6
MAX_CALLS = 16
MIN_PER_PROCESS = 2
CALL_SOCKETS = re.compile(r'^signaling_connections\{namespace="/call"\} (\S+)$', re.MULTILINE)


@dataclass
class RoutedClient(TimedClient):
    """A timed /call client for one call: ``?call_id=<id>`` in its handshake,
    as PROTOCOL.md asks, and socket.io's own reconnection (quick, to the same
    address: through HAProxy), counting each time the namespace connects."""

    call_id: int | None = None
    connects: int = 0
    sio: socketio.AsyncClient = field(
        default_factory=lambda: socketio.AsyncClient(
            reconnection=True,
            reconnection_delay=0.05,
            reconnection_delay_max=0.2,
            randomization_factor=0,
            serializer=StdJsonPacket,
        )
    )

    def __post_init__(self) -> None:
        super().__post_init__()

        async def connected() -> None:
            async with self._arrived:
                self.connects += 1
                self._arrived.notify_all()

        self.sio.on("connect", connected, namespace=self.namespace)

    async def connect(self, token: str | None = None) -> RoutedClient:
        query = "" if self.call_id is None else f"?call_id={self.call_id}"
        await self.sio.connect(
            self.server.url + query,
            namespaces=[self.namespace],
            auth={"token": token or self.server.token(self.user_id)},
            transports=["websocket"],
            wait_timeout=5,
        )
        return self

    async def reconnected(self, times: int = 1, timeout: float = 10) -> None:
        """Wait until socket.io has reconnected the namespace ``times`` times."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: self.connects >= 1 + times), timeout
            )


@dataclass
class Balanced:
    """Two server processes, HAProxy in front, and what the test opened."""

    cluster: Cluster
    proxy: RunningHAProxy
    stack: contextlib.AsyncExitStack

    @property
    def front(self) -> RunningServer:
        """REST and Socket.IO through HAProxy."""
        return RunningServer(self.cluster.one.settings.replace(port=self.proxy.port))

    @property
    def backends(self) -> dict[str, RunningServer]:
        return {"one": self.cluster.one, "two": self.cluster.two}

    async def caller(self, user_id: str, call_id: int) -> RoutedClient:
        client = RoutedClient(self.front, user_id, call_id=call_id)
        await client.connect()
        self.stack.push_async_callback(client.close)
        return client

    async def call_sockets(self) -> dict[str, int]:
        """/call connections each process holds, from its own /metrics."""
        counts: dict[str, int] = {}
        for name, server in self.backends.items():
            status, text = await server.request("GET", "/metrics")
            assert status == 200, text
            match = CALL_SOCKETS.search(text)
            assert match, text
            counts[name] = int(float(match[1]))
        return counts


@pytest.fixture
async def balanced(
    tmp_path: Path,
    shared_database: str,
    redis_url: str,
) -> AsyncIterator[Balanced]:
    with two_servers(tmp_path, shared_database, redis_url) as cluster:
        ports = {"one": cluster.one.settings.port, "two": cluster.two.settings.port}
        with run_haproxy(ports, tmp_path / "haproxy") as proxy:
            await proxy.all_up()
            async with contextlib.AsyncExitStack() as stack:
                yield Balanced(cluster, proxy, stack)


async def stored_as(
    server: RunningServer, user_id: str, call_id: int, state: str
) -> dict[str, Any]:
    """The call as REST shows it once it is stored in ``state`` (users are
    told first; the database follows within milliseconds)."""
    body: Any = None
    for _ in range(50):
        status, body = await server.request("GET", f"/api/calls/{call_id}", user_id)
        assert status == 200, body
        if body["call"]["state"] == state:
            return dict(body["call"])
        await asyncio.sleep(0.02)
    raise AssertionError(f"call {call_id} never stored as {state}: {body}")


async def a_whole_call(a: TimedClient, b: TimedClient, call_id: int) -> None:
    """Join, signals both ways, connected, countdown, live, ended on time."""
    await both_in(a, b, call_id)
    offer = {"call_id": call_id, "type": "offer", "sdp": "v=0 offer"}
    assert await b.emit("signal", offer) == {"ok": True}
    assert await a.take("signal") == {**offer, "from": b.user_id}
    answer = {"call_id": call_id, "type": "answer", "sdp": "v=0 answer"}
    assert await a.emit("signal", answer) == {"ok": True}
    assert await b.take("signal") == {**answer, "from": a.user_id}
    await a.ok("connected", call_id)
    await b.ok("connected", call_id)
    countdown = await a.take("countdown")
    assert await b.take("countdown") == countdown
    live = await a.take("live")
    assert await b.take("live") == live
    ends_at = parse_iso(live["ends_at"])
    for peer in (a, b):
        assert await peer.take("ended") == {"call_id": call_id, "reason": "time_limit"}
        arrived = peer.arrived_at["ended"][-1]
        assert -0.05 < (arrived - ends_at).total_seconds() < TOLERANCE_S, (arrived, ends_at)


async def test_haproxy_sends_both_users_of_a_call_to_one_process(balanced: Balanced) -> None:
    front = balanced.front
    owners: dict[int, str] = {}  # call id -> the process holding both its sockets
    pairs: list[tuple[RoutedClient, RoutedClient, int]] = []

    def owned_by(name: str) -> int:
        return list(owners.values()).count(name)

    while len(owners) < CALLS or (
        len(owners) < MAX_CALLS and min(map(owned_by, balanced.backends)) < MIN_PER_PROCESS
    ):
        n = len(owners)
        call = await front.schedule(f"caller{n}", f"callee{n}", in_s=2.0)
        before = await balanced.call_sockets()
        a = await balanced.caller(f"caller{n}", call["id"])
        b = await balanced.caller(f"callee{n}", call["id"])
        after = await balanced.call_sockets()
        gained = {name: after[name] - before[name] for name in after}
        # Both sockets of the call on one process, none on the other.
        assert sorted(gained.values()) == [0, 2], (call["id"], gained)
        owners[call["id"]] = max(gained, key=lambda name: gained[name])
        pairs.append((a, b, call["id"]))
    for name in balanced.backends:
        assert owned_by(name) >= MIN_PER_PROCESS, owners

    # Every call runs to its end through HAProxy, all at once, on both processes.
    await asyncio.gather(*(a_whole_call(a, b, call_id) for a, b, call_id in pairs))
    for a, _, call_id in pairs:
        stored = await stored_as(front, a.user_id, call_id, "ended")
        assert stored["end_reason"] == "time_limit", stored
    # The sockets stayed where HAProxy put them.
    counts = await balanced.call_sockets()
    for name in balanced.backends:
        assert counts[name] == 2 * owned_by(name), (counts, owners)


async def test_the_process_of_a_live_call_killed_both_users_move_and_it_ends_on_time(
    balanced: Balanced,
) -> None:
    front = balanced.front
    room_id = await open_room(front, "alice", "bob")
    call = await front.schedule("alice", "bob", in_s=2.0)
    call_id = call["id"]
    alice = await balanced.caller("alice", call_id)
    bob = await balanced.caller("bob", call_id)
    counts = await balanced.call_sockets()
    [owner] = [name for name, count in counts.items() if count == 2]
    [survivor] = [name for name in counts if name != owner]
    assert counts[survivor] == 0, counts

    # A chat message stored by the process that is about to die (alice's
    # /chat connection goes to it directly), received by bob through HAProxy.
    alice_chat = ChatClient(balanced.backends[owner], "alice")
    bob_chat = ChatClient(front, "bob")
    await alice_chat.connect()
    await bob_chat.connect()
    try:
        sent = await alice_chat.send(room_id, "before the failover", "m1")
        assert sent["seq"] == 1, sent
        got = (await bob_chat.wait_for("message"))[0]
        assert got["content"] == "before the failover" and got["seq"] == 1, got
    finally:
        await alice_chat.close()
        await bob_chat.close()

    await both_in(alice, bob, call_id)
    await bob.ok("connected", call_id)
    await alice.ok("connected", call_id)
    countdown = await alice.take("countdown")
    assert await bob.take("countdown") == countdown
    live = await alice.take("live")
    assert await bob.take("live") == live
    ends_at = parse_iso(live["ends_at"])

    balanced.cluster.kill(0 if owner == "one" else 1)
    killed_at = now()
    await balanced.proxy.wait_for({owner: "DOWN"}, timeout=1.5)  # health checks noticed

    # socket.io reconnects both through HAProxy, which finds the owner gone
    # and sends them to the survivor; both join again before ends_at.
    for peer in (alice, bob):
        await peer.reconnected(timeout=5)
    for peer in (alice, bob):
        ack = await peer.emit("join", {"call_id": call_id})
        assert ack["ok"] is True, ack
        assert ack["call"]["state"] == "live", ack
    rejoined_at = now()
    assert rejoined_at < ends_at, (killed_at, rejoined_at, ends_at)
    status, text = await balanced.backends[survivor].request("GET", "/metrics")
    match = CALL_SOCKETS.search(text)
    assert status == 200 and match and int(float(match[1])) == 2, text
    # Signals flow again between the two, now on one process.
    offer = {"call_id": call_id, "type": "offer", "sdp": "v=0 after the failover"}
    assert await bob.emit("signal", offer) == {"ok": True}
    signals = await alice.wait_for("signal")
    assert signals[-1] == {**offer, "from": "bob"}, signals

    # The call still ends at the ends_at announced before the kill, once.
    for peer in (alice, bob):
        ended = await peer.wait_for("ended", timeout=10)
        assert ended == [{"call_id": call_id, "reason": "time_limit"}], ended
        arrived = peer.arrived_at["ended"][-1]
        assert -0.05 < (arrived - ends_at).total_seconds() < TOLERANCE_S, (arrived, ends_at)
    stored = await stored_as(front, "bob", call_id, "ended")
    assert stored["end_reason"] == "time_limit", stored
    ended_at = parse_iso(stored["ended_at"])
    assert abs((ended_at - ends_at).total_seconds()) < TOLERANCE_S, (ended_at, ends_at)
    await asyncio.sleep(0.3)
    assert [len(p.events["ended"]) for p in (alice, bob)] == [1, 1]

    # No chat message lost: the one the dead process stored is in the
    # history, and the next one (through HAProxy, to the survivor) follows it.
    messages = await history(front, "alice", room_id)
    assert [(m["seq"], m["content"]) for m in messages] == [(1, "before the failover")], messages
    bob_chat = ChatClient(front, "bob")
    await bob_chat.connect()
    try:
        again = await bob_chat.send(room_id, "after the failover", "m2")
        assert again["seq"] == 2, again
    finally:
        await bob_chat.close()
    messages = await history(front, "bob", room_id)
    assert [m["seq"] for m in messages] == [2, 1], messages
