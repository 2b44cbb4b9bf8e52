"""The server's clock: countdown, live, the time limit and the join window."""

from __future__ import annotations

from datetime import datetime, timedelta

from signaling.questions import BUILT_IN_QUESTIONS
from tests.functional.conftest import (
    TIMER_TOLERANCE_S,
    Lab,
    PeerFactory,
    TimedClient,
    assert_error,
    call_state,
    now,
    parse_iso,
    to_countdown,
    to_live,
)
from tests.support import RunningServer

#: An event may not come before its instant (wire times are cut to milliseconds).
EARLY_SLACK = timedelta(milliseconds=5)


def assert_on_time(client: TimedClient, name: str, planned: datetime) -> None:
    """The last ``name`` event reached ``client`` at ``planned``, not before,
    and at most TIMER_TOLERANCE_S after."""
    arrived = client.arrived_at[name][-1]
    assert arrived >= planned - EARLY_SLACK, (name, arrived, planned)
    assert arrived <= planned + timedelta(seconds=TIMER_TOLERANCE_S), (name, arrived, planned)


def assert_near(value: str | None, planned: datetime) -> None:
    assert value is not None
    assert abs(parse_iso(value) - planned) <= timedelta(seconds=TIMER_TOLERANCE_S), (
        value,
        planned,
    )


async def test_a_whole_call_runs_on_the_servers_clock(
    server: RunningServer, peer: PeerFactory
) -> None:
    countdown_s, limit_s = server.settings.countdown_s, server.settings.limit_s
    call = await server.schedule("alice", "bob")
    alice, bob = await peer("alice"), await peer("bob")
    call_id = call["id"]

    countdown = await to_countdown(alice, bob, call_id)
    assert set(countdown) == {"call_id", "seconds", "live_at"}
    assert countdown["call_id"] == call_id and countdown["seconds"] == countdown_s
    live_at = parse_iso(countdown["live_at"])
    assert_on_time(alice, "countdown", live_at - timedelta(seconds=countdown_s))
    state = await call_state(server, "alice", call_id)
    assert state["state"] == "countdown" and state["started_at"] is None

    live = await alice.take("live")
    assert await bob.take("live") == live
    assert set(live) == {"call_id", "ends_at", "question"} and live["call_id"] == call_id
    assert set(live["question"]) == {"id", "text"}
    assert isinstance(live["question"]["id"], int)
    assert live["question"]["text"] in BUILT_IN_QUESTIONS
    ends_at = parse_iso(live["ends_at"])
    assert abs(ends_at - live_at - timedelta(seconds=limit_s)) <= timedelta(milliseconds=2)
    for client in (alice, bob):
        assert_on_time(client, "live", live_at)
    state = await call_state(server, "bob", call_id)
    assert state["state"] == "live"
    assert_near(state["started_at"], live_at)
    assert state["ended_at"] is None and state["end_reason"] is None

    for client in (alice, bob):
        assert await client.take("ended") == {"call_id": call_id, "reason": "time_limit"}
        assert_on_time(client, "ended", ends_at)
    state = await call_state(server, "alice", call_id)
    assert (state["state"], state["end_reason"]) == ("ended", "time_limit")
    assert_near(state["started_at"], live_at)
    assert_near(state["ended_at"], ends_at)

    # Over for good: no way back in, no signalling, no second ending.
    assert_error(await bob.emit("join", {"call_id": call_id}), "ended")
    signal = {"call_id": call_id, "type": "offer", "sdp": "v=0"}
    assert_error(await alice.emit("signal", signal), "ended")
    await alice.quiet(["ended", "live", "countdown"])


async def test_a_drop_during_live_neither_stops_nor_extends_the_clock(lab: Lab) -> None:
    server = await lab.start(limit_s=2.5)
    call = await server.schedule("alice", "bob")
    alice, bob = await lab.connect(server, "alice"), await lab.connect(server, "bob")
    live = await to_live(alice, bob, call["id"])
    ends_at = parse_iso(live["ends_at"])
    await bob.close()
    assert await alice.take("partner_left") == {"call_id": call["id"], "reason": "disconnected"}
    assert (await call_state(server, "alice", call["id"]))["state"] == "live"

    returned = await lab.connect(server, "bob")
    ack = await returned.join(call["id"])
    assert ack["role"] == "offerer" and ack["call"]["state"] == "live"
    assert await alice.take("partner_joined") == {"call_id": call["id"], "role": "answerer"}
    for client in (alice, returned):
        assert await client.take("ended") == {"call_id": call["id"], "reason": "time_limit"}
        assert_on_time(client, "ended", ends_at)
    await alice.quiet(["live", "countdown"], within=0.1)


async def test_a_window_that_closes_without_a_live_call_is_missed(lab: Lab) -> None:
    grace_s = 1.0
    server = await lab.start(join_grace_s=grace_s)
    call = await server.schedule("alice", "bob", in_s=0.5)
    closes_at = parse_iso(call["scheduled_at"]) + timedelta(seconds=grace_s)
    alice, bob = await lab.connect(server, "alice"), await lab.connect(server, "bob")
    await alice.join(call["id"])  # bob never comes

    for client in (alice, bob):
        assert await client.take("ended") == {"call_id": call["id"], "reason": "missed"}
        assert_on_time(client, "ended", closes_at)
    state = await call_state(server, "bob", call["id"])
    assert (state["state"], state["end_reason"]) == ("missed", "missed")
    assert state["started_at"] is None
    assert_near(state["ended_at"], closes_at)
    assert_error(await bob.emit("join", {"call_id": call["id"]}), "ended")


async def test_a_call_nobody_joins_is_missed_too(lab: Lab) -> None:
    server = await lab.start(join_grace_s=0.5)
    call = await server.schedule("alice", "bob", in_s=0.3)
    carol = await lab.connect(server, "carol")
    alice = await lab.connect(server, "alice")
    assert await alice.take("ended") == {"call_id": call["id"], "reason": "missed"}
    assert (await call_state(server, "alice", call["id"]))["state"] == "missed"
    await carol.quiet(["ended"], within=0.1)


async def test_cancelling_during_the_countdown_stops_it(lab: Lab) -> None:
    server = await lab.start(countdown_s=1.0)
    call = await server.schedule("alice", "bob")
    alice, bob = await lab.connect(server, "alice"), await lab.connect(server, "bob")
    countdown = await to_countdown(alice, bob, call["id"])
    status, body = await server.request("DELETE", f"/api/calls/{call['id']}", "alice")
    assert status == 200 and body["call"]["state"] == "cancelled", body
    for client in (alice, bob):
        assert await client.take("ended") == {"call_id": call["id"], "reason": "cancelled"}
    remaining = parse_iso(countdown["live_at"]) - now()
    await alice.quiet(["live"], within=remaining.total_seconds() + TIMER_TOLERANCE_S)
    state = await call_state(server, "bob", call["id"])
    assert (state["state"], state["started_at"]) == ("cancelled", None)
