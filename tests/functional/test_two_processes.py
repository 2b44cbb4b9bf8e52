"""Two real server processes sharing MariaDB and Redis: a call and a chat
across them, and a process killed mid-call."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.functional.chat_support import ChatClient
from tests.support import SECRET, Client, RunningServer, serve_in_child, server_settings

TOLERANCE_S = 0.6


@dataclass
class Cluster:
    one: RunningServer
    two: RunningServer
    processes: list[subprocess.Popen[bytes]]

    def kill(self, index: int) -> None:
        self.processes[index].send_signal(signal.SIGKILL)
        self.processes[index].wait(timeout=10)


@contextlib.contextmanager
def two_servers(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[Cluster]:
    env = {
        "SIGNALING_JWT_SECRET": SECRET,
        "SIGNALING_DATABASE_URL": database_url,
        "SIGNALING_REDIS_URL": redis_url,
        "SIGNALING_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:12]}",
        "SIGNALING_COUNTDOWN_S": "0.5",
        "SIGNALING_CALL_LIMIT_S": "3",
        # Far away: whatever happens on time here is the timers' doing.
        "SIGNALING_SWEEP_INTERVAL_S": "3600",
    }
    one = server_settings(tmp_path / "one")
    two = server_settings(tmp_path / "two")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    # The second process starts once the first has migrated the database.
    with serve_in_child(one, env) as first, serve_in_child(two, env) as second:
        yield Cluster(RunningServer(one), RunningServer(two), [first, second])


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def stored_once(server: RunningServer, call_id: int, state: str) -> dict[str, Any]:
    """The call as REST shows it once it reached ``state`` (users are told
    first; the database follows within milliseconds, or seconds on a loaded
    machine)."""
    for _ in range(250):
        status, body = await server.request("GET", f"/api/calls/{call_id}", "bob")
        assert status == 200, body
        if body["call"]["state"] == state:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"call {call_id} never stored as {state}: {body}")


async def both_joined(alice: Client, bob: Client, call_id: int) -> None:
    first = await alice.emit("join", {"call_id": call_id})
    assert first["ok"] and first["role"] == "waiting", first
    second = await bob.emit("join", {"call_id": call_id})
    assert second["ok"] and second["role"] == "offerer" and second["partner_present"], second
    assert (await alice.wait_for("partner_joined"))[0] == {"call_id": call_id, "role": "answerer"}


@pytest.mark.timeout(90)
async def test_a_call_and_a_chat_across_two_processes(
    tmp_path: Path, shared_database: str, redis_url: str
) -> None:
    with two_servers(tmp_path, shared_database, redis_url) as cluster:
        call = await cluster.one.schedule("alice", "bob")
        alice = await Client(cluster.one, "alice").connect()
        bob = await Client(cluster.two, "bob").connect()
        try:
            await both_joined(alice, bob, call["id"])
            offer = {"call_id": call["id"], "type": "offer", "sdp": "v=0 offer"}
            assert await bob.emit("signal", offer) == {"ok": True}
            assert (await alice.wait_for("signal"))[0] == {**offer, "from": "bob"}
            answer = {"call_id": call["id"], "type": "answer", "sdp": "v=0 answer"}
            assert await alice.emit("signal", answer) == {"ok": True}
            assert (await bob.wait_for("signal"))[0] == {**answer, "from": "alice"}
            for n in range(20):  # in order, across processes
                candidate = {"candidate": f"candidate:{n} 1 udp 1 127.0.0.1 {9000 + n} typ host"}
                await bob.emit(
                    "signal", {"call_id": call["id"], "type": "candidate", "candidate": candidate}
                )
            got = await alice.wait_for("signal", count=21)
            assert [s["candidate"]["candidate"].split()[0] for s in got[1:]] == [
                f"candidate:{n}" for n in range(20)
            ]
            for peer in (alice, bob):
                assert (await peer.emit("connected", {"call_id": call["id"]}))["ok"]
            countdowns = [(await p.wait_for("countdown"))[0] for p in (alice, bob)]
            assert countdowns[0] == countdowns[1]
            lives = [(await p.wait_for("live"))[0] for p in (alice, bob)]
            assert lives[0] == lives[1]
            ends_at = parse(lives[0]["ends_at"])
            for peer in (alice, bob):
                ended = await peer.wait_for("ended", timeout=10)
                assert ended == [{"call_id": call["id"], "reason": "time_limit"}]
            # Process one sent `ended` first and writes it just after.
            body = await stored_once(cluster.two, call["id"], "ended")
            assert abs((parse(body["call"]["ended_at"]) - ends_at).total_seconds()) < TOLERANCE_S
        finally:
            await alice.close()
            await bob.close()

        # Chat: gifts both ways make the room; a message sent on one process
        # reaches the partner connected to the other.
        for sender, receiver, server in (
            ("alice", "bob", cluster.one),
            ("bob", "alice", cluster.two),
        ):
            status, body = await server.request(
                "POST",
                "/api/gifts",
                sender,
                json={"receiver_id": receiver, "kind": "general", "message": "hi"},
            )
            assert status == 201, body
        status, body = await cluster.one.request("GET", "/api/chat/rooms", "alice")
        assert status == 200 and len(body["rooms"]) == 1, body
        room_id = body["rooms"][0]["id"]
        alice_chat = await ChatClient(cluster.one, "alice").connect()
        bob_chat = await ChatClient(cluster.two, "bob").connect()
        try:
            sent = await alice_chat.send(room_id, "across processes", "m1")
            assert sent["seq"] == 1, sent
            received = (await bob_chat.wait_for("message"))[0]
            assert received["content"] == "across processes" and received["sender_id"] == "alice"
            await bob_chat.ok("read", {"room_id": room_id, "seq": 1})
            assert (await alice_chat.wait_for("read"))[0] == {
                "room_id": room_id,
                "user_id": "bob",
                "seq": 1,
            }
        finally:
            await alice_chat.close()
            await bob_chat.close()


@pytest.mark.timeout(90)
async def test_a_process_killed_mid_call_and_the_call_still_ends_on_time(
    tmp_path: Path, shared_database: str, redis_url: str
) -> None:
    with two_servers(tmp_path, shared_database, redis_url) as cluster:
        call = await cluster.one.schedule("alice", "bob")
        alice = await Client(cluster.one, "alice").connect()
        bob = await Client(cluster.two, "bob").connect()
        try:
            await both_joined(alice, bob, call["id"])
            # Bob reports first, so process one (alice's) starts the countdown
            # and arms the timers; process two only heard about it over Redis.
            assert (await bob.emit("connected", {"call_id": call["id"]}))["ok"]
            assert (await alice.emit("connected", {"call_id": call["id"]}))["ok"]
            live = (await bob.wait_for("live"))[0]
            ends_at = parse(live["ends_at"])
            # `live` is sent first and written just after (a kill in between
            # would cut the countdown short, as a crash before `live` does).
            await stored_once(cluster.two, call["id"], "live")
            cluster.kill(0)
            ended = await bob.wait_for("ended", timeout=10)
            arrived = datetime.now(ends_at.tzinfo)
            assert ended == [{"call_id": call["id"], "reason": "time_limit"}]
            assert -0.05 < (arrived - ends_at).total_seconds() < TOLERANCE_S
            body = await stored_once(cluster.two, call["id"], "ended")
            assert body["call"]["end_reason"] == "time_limit"
            await asyncio.sleep(0.3)
            assert len(bob.events["ended"]) == 1  # once, though both processes had the timer
        finally:
            await alice.close()
            await bob.close()
