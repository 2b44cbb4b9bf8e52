"""The OpenVidu media backend against the simulator of OpenVidu 2's REST API
and webhooks (tests/openvidu_sim.py), with the real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from signaling.webhooks.openvidu import PATH, SECRET_HEADER
from tests.functional.conftest import Lab, TimedClient, assert_error, call_state
from tests.openvidu_sim import API, OpenViduSim
from tests.support import RunningServer

HOOK_SECRET = "hook-secret-for-tests"
#: The backend's per-call join budget (OpenViduMedia.join_budget_s) plus slack.
JOIN_BUDGET_S = 4.0


@pytest.fixture
async def sim() -> AsyncIterator[OpenViduSim]:
    simulator = OpenViduSim()
    await simulator.start()
    yield simulator
    await simulator.stop()


async def start(lab: Lab, sim: OpenViduSim, **overrides: Any) -> RunningServer:
    values: dict[str, Any] = {
        "media": "openvidu",
        "openvidu_url": sim.url,
        "openvidu_secret": sim.secret,
        "openvidu_webhook_secret": HOOK_SECRET,
        **overrides,
    }
    server = await lab.start(**values)
    sim.webhook_url = server.url + PATH
    sim.webhook_headers = {SECRET_HEADER: HOOK_SECRET}
    return server


async def until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def joined_pair(
    lab: Lab, server: RunningServer, call_id: int
) -> tuple[TimedClient, TimedClient, str, str]:
    """alice waits, bob joins; returns both clients and their tokens."""
    alice = await lab.connect(server, "alice")
    bob = await lab.connect(server, "bob")
    first = await alice.join(call_id)
    second = await bob.join(call_id)
    assert second["role"] == "offerer", second
    return alice, bob, first["openvidu_token"], second["openvidu_token"]


def session_of(call_id: int) -> str:
    return f"call-{call_id}"


async def post_webhook(
    server: RunningServer, body: Any, headers: dict[str, str] | None = None, raw: bytes = b""
) -> tuple[int, Any]:
    data = raw or json.dumps(body).encode()
    return await server.request(
        "POST",
        PATH,
        headers={"Content-Type": "application/json", **(headers or {})},
        data=data,
    )


# ------------------------------------------------------------------ tokens


async def test_join_acks_carry_tokens_of_one_session_per_call(lab: Lab, sim: OpenViduSim) -> None:
    server = await start(lab, sim)
    call_id = (await server.schedule("alice", "bob"))["id"]
    # The window is open: the session is created before anybody joins.
    await until(lambda: session_of(call_id) in sim.sessions, "the session")

    alice, _bob, alice_token, bob_token = await joined_pair(lab, server, call_id)
    assert alice_token != bob_token
    for user_id, token in (("alice", alice_token), ("bob", bob_token)):
        connection = sim.connection_for(token)
        assert connection.session_id == session_of(call_id)
        assert connection.status == "pending"
        assert json.loads(connection.server_data) == {"call_id": call_id, "user_id": user_id}

    # Joining again before using it hands out the same token.
    again = await alice.join(call_id)
    assert again["openvidu_token"] == alice_token
    assert len(sim.sessions[session_of(call_id)].connections) == 2

    created = [r for r in sim.requests("POST", API + "/sessions") if r.path.endswith("sessions")]
    assert [r.status for r in created] == [200]  # once per call

    other = (await server.schedule("alice", "bob", in_s=5))["id"]
    token = (await alice.join(other))["openvidu_token"]
    assert sim.connection_for(token).session_id == session_of(other)


async def test_a_used_token_is_replaced_on_rejoin(lab: Lab, sim: OpenViduSim) -> None:
    server = await start(lab, sim)
    call_id = (await server.schedule("alice", "bob"))["id"]
    alice, _bob, alice_token, _ = await joined_pair(lab, server, call_id)
    used = await sim.connect(alice_token)
    fresh = (await alice.join(call_id))["openvidu_token"]
    assert fresh != alice_token
    # The connection in use is dropped: one device, one connection.
    await until(lambda: used.id not in sim.sessions[session_of(call_id)].connections, "drop")


# ---------------------------------------------------------------- webhooks


async def test_webhook_without_the_secret_is_refused_and_changes_nothing(
    lab: Lab, sim: OpenViduSim
) -> None:
    server = await start(lab, sim)
    call_id = (await server.schedule("alice", "bob"))["id"]
    alice, bob, alice_token, bob_token = await joined_pair(lab, server, call_id)
    sim.hold_webhooks = True
    await sim.connect(alice_token)
    await sim.connect(bob_token)
    events = list(sim.held)
    assert {e["event"] for e in events} == {"participantJoined", "webrtcConnectionCreated"}

    for headers in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: HOOK_SECRET + "x"}):
        for event in events:
            status, body = await post_webhook(server, event, headers)
            assert status == 401, body
            assert_error(body, "unauthorized")
    await alice.quiet(("countdown",))
    assert (await call_state(server, "alice", call_id))["state"] == "connecting"

    # Authenticated but malformed: 400, still nothing changes.
    good = {SECRET_HEADER: HOOK_SECRET}
    for raw in (b"{not json", b"[1, 2]", b'{"event": "participantJoined"}', b"x" * 70_000):
        status, body = await post_webhook(server, None, good, raw=raw)
        assert status == 400, body
        assert_error(body, "invalid")
    await alice.quiet(("countdown",))

    # The same events with the secret start the countdown.
    assert await sim.deliver(events) == [200] * len(events)
    countdown = await alice.take("countdown")
    assert await bob.take("countdown") == countdown


@pytest.mark.parametrize("order", ["in_order", "twice", "reversed", "shuffled", "late_copies"])
async def test_webhooks_in_any_order_or_twice_give_the_same_outcome(
    lab: Lab, sim: OpenViduSim, order: str
) -> None:
    server = await start(lab, sim, countdown_s=0.5, limit_s=1.0)
    call_id = (await server.schedule("alice", "bob"))["id"]
    alice, bob, alice_token, bob_token = await joined_pair(lab, server, call_id)
    sim.hold_webhooks = True
    await sim.connect(alice_token)
    await sim.connect(bob_token)
    events = list(sim.held)
    assert len(events) == 6  # 2 joined, 2 publishers, 2 subscriptions
    if order == "twice":
        events = [e for e in events for _ in range(2)]
    elif order == "reversed":
        events.reverse()
    elif order == "shuffled":
        random.Random(5).shuffle(events)
    elif order == "late_copies":
        events = events + events[::-1]
    assert await sim.deliver(events) == [200] * len(events)

    countdown = await alice.take("countdown")
    assert await bob.take("countdown") == countdown
    live = await alice.take("live")
    assert await bob.take("live") == live
    for client in (alice, bob):
        assert await client.take("ended") == {"call_id": call_id, "reason": "time_limit"}
        await client.quiet(("countdown", "live", "ended"))
    assert (await call_state(server, "alice", call_id))["end_reason"] == "time_limit"
    # Copies delivered after the end change nothing either.
    assert await sim.deliver(events[:3]) == [200] * 3
    await alice.quiet(("countdown", "live", "ended"))


async def test_participant_left_before_live_cancels_the_countdown(
    lab: Lab, sim: OpenViduSim
) -> None:
    server = await start(lab, sim, countdown_s=1.5, limit_s=1.0)
    call_id = (await server.schedule("alice", "bob"))["id"]
    alice, bob, alice_token, bob_token = await joined_pair(lab, server, call_id)
    alice_media = await sim.connect(alice_token)
    await sim.connect(bob_token)
    await alice.take("countdown")
    await bob.take("countdown")

    await sim.leave(alice_media, "networkDisconnect")  # her media drops, her socket stays
    await until(lambda: any(e["event"] == "participantLeft" for e, _ in sim.delivered), "left")
    await until_state(server, call_id, "connecting")
    await alice.quiet(("live",), within=2.0)  # the countdown would have ended by now
    assert bob.events["live"] == []

    # A stale copy of her joining changes nothing: that connection is gone.
    stale = [e for e, _ in sim.delivered if e.get("connectionId") == alice_media.id][:2]
    await sim.deliver(stale)
    await alice.quiet(("countdown",))

    # She rejoins and her media comes and goes, but OpenVidu's events arrive
    # with the leaving first: that connection stays gone.
    token = (await alice.join(call_id))["openvidu_token"]
    assert token != alice_token
    sim.hold_webhooks = True
    second = await sim.connect(token)
    await sim.leave(second)
    held, sim.held, sim.hold_webhooks = sim.held, [], False
    assert held[-1]["event"] == "participantLeft"
    assert await sim.deliver([held[-1], *held[:-1]]) == [200] * len(held)
    await alice.quiet(("countdown",), within=0.5)
    assert (await call_state(server, "alice", call_id))["state"] == "connecting"

    # Once more, for real: the countdown starts anew and the call goes live.
    token = (await alice.join(call_id))["openvidu_token"]
    await sim.connect(token)
    await alice.take("countdown")
    await bob.take("countdown")
    await alice.take("live", 5)


async def until_state(server: RunningServer, call_id: int, state: str) -> None:
    deadline = time.monotonic() + 5
    while (await call_state(server, "alice", call_id))["state"] != state:
        assert time.monotonic() < deadline, f"the call never got {state}"
        await asyncio.sleep(0.05)


async def test_a_participant_who_is_not_in_the_call_is_disconnected(
    lab: Lab, sim: OpenViduSim
) -> None:
    server = await start(lab, sim)
    call_id = (await server.schedule("alice", "bob"))["id"]
    _alice, _bob, alice_token, _ = await joined_pair(lab, server, call_id)
    session = session_of(call_id)
    auth = {"Authorization": sim.expected_auth}
    intruders = []
    async with aiohttp.ClientSession(headers=auth) as http:
        for data in (
            json.dumps({"call_id": call_id, "user_id": "mallory"}),
            json.dumps({"call_id": call_id + 1000, "user_id": "alice"}),
            "alice",
        ):
            url = f"{sim.url}{API}/sessions/{session}/connection"
            async with http.post(url, json={"data": data}) as response:
                assert response.status == 200
                intruders.append((await response.json())["token"])
    legit = await sim.connect(alice_token)
    for token in intruders:
        connection = await sim.connect(token)
        await until(
            lambda c=connection: c.id not in sim.sessions[session].connections,  # type: ignore[misc]
            f"{connection.server_data} disconnected",
        )
        deleted = sim.requests("DELETE", connection.id)
        assert [r.status for r in deleted] == [204]
    assert legit.id in sim.sessions[session].connections


# ------------------------------------------------------------------ ending


async def test_the_session_is_closed_when_the_call_reaches_its_limit(
    lab: Lab, sim: OpenViduSim
) -> None:
    server = await start(lab, sim, countdown_s=0.3, limit_s=0.7)
    call_id = (await server.schedule("alice", "bob"))["id"]
    alice, _bob, alice_token, bob_token = await joined_pair(lab, server, call_id)
    await sim.connect(alice_token)
    await sim.connect(bob_token)
    await alice.take("live")
    assert session_of(call_id) in sim.sessions
    await alice.take("ended")
    await until(lambda: session_of(call_id) in sim.destroyed, "the session closed")
    deletes = sim.requests("DELETE", f"{API}/sessions/{session_of(call_id)}")
    assert [r.status for r in deletes] == [204]


async def test_the_session_is_closed_when_the_call_is_cancelled(lab: Lab, sim: OpenViduSim) -> None:
    server = await start(lab, sim)
    call_id = (await server.schedule("alice", "bob"))["id"]
    await until(lambda: session_of(call_id) in sim.sessions, "the session")
    status, body = await server.request("DELETE", f"/api/calls/{call_id}", "alice")
    assert status == 200, body
    await until(lambda: session_of(call_id) in sim.destroyed, "the session closed")
    # Closing a session OpenVidu no longer has is fine (404).
    lone = (await server.schedule("alice", "bob", in_s=5))["id"]
    await until(lambda: session_of(lone) in sim.sessions, "the second session")
    sim.sessions.pop(session_of(lone))
    status, _ = await server.request("DELETE", f"/api/calls/{lone}", "alice")
    assert status == 200
    await until(lambda: bool(sim.requests("DELETE", session_of(lone))), "the DELETE")
    assert [r.status for r in sim.requests("DELETE", session_of(lone))] == [404]


async def test_a_session_destroyed_by_openvidu_is_created_again(lab: Lab, sim: OpenViduSim) -> None:
    server = await start(lab, sim)
    call_id = (await server.schedule("alice", "bob"))["id"]
    alice = await lab.connect(server, "alice")
    token = (await alice.join(call_id))["openvidu_token"]
    media = await sim.connect(token)
    await sim.leave(media)  # the last participant left: OpenVidu closes the session
    await until(lambda: session_of(call_id) in sim.destroyed, "sessionDestroyed")
    await until(lambda: len(sim.delivered) >= 4, "the webhooks")
    fresh = (await alice.join(call_id))["openvidu_token"]
    assert sim.connection_for(fresh).session_id == session_of(call_id)
    assert session_of(call_id) in sim.sessions


# ---------------------------------------------------------------- failures


async def fail(sim: OpenViduSim, failure: str) -> None:
    if failure == "5xx":
        sim.fail_status = 503
    elif failure == "slow":
        sim.delay_s = 2.0  # more than the client's 1.5 s timeout
    else:
        await sim.go_down()


async def recover(sim: OpenViduSim) -> None:
    sim.fail_status, sim.delay_s = None, 0.0
    await sim.come_back()


async def join_unavailable(client: TimedClient, call_id: int) -> None:
    began = time.monotonic()
    ack = await client.emit("join", {"call_id": call_id}, timeout=JOIN_BUDGET_S + 5)
    assert_error(ack, "unavailable")
    assert time.monotonic() - began < JOIN_BUDGET_S + 1.0


@pytest.mark.parametrize("failure", ["5xx", "slow", "refused"])
async def test_openvidu_down_or_slow_answers_unavailable_and_a_later_join_works(
    lab: Lab, sim: OpenViduSim, failure: str
) -> None:
    server = await start(lab, sim)
    alice = await lab.connect(server, "alice")
    bob = await lab.connect(server, "bob")

    # Down when the window opens and when alice joins: no session, no token.
    await fail(sim, failure)
    call_id = (await server.schedule("alice", "bob"))["id"]
    await join_unavailable(alice, call_id)
    assert (await call_state(server, "alice", call_id))["state"] == "open"  # nobody in
    if failure == "5xx":
        posts = [r for r in sim.log if r.method == "POST" and r.path == f"{API}/sessions"]
        # Bounded retries: 3 attempts when the window opened, 3 on the join.
        assert [r.status for r in posts] == [503] * 6, posts
    await recover(sim)
    first = await alice.join(call_id)
    assert sim.connection_for(first["openvidu_token"]).session_id == session_of(call_id)

    # Down again when bob joins: his join fails and alice hears of no partner.
    await fail(sim, failure)
    await join_unavailable(bob, call_id)
    await alice.quiet(("partner_joined",))
    assert (await call_state(server, "alice", call_id))["state"] == "waiting"
    await recover(sim)
    second = await bob.join(call_id)
    assert second["role"] == "offerer"
    assert sim.connection_for(second["openvidu_token"]).session_id == session_of(call_id)
    assert await alice.take("partner_joined") == {"call_id": call_id, "role": "answerer"}
