"""Whole calls on CallService with real timers (countdown 0.2 s, limit 0.4 s)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from persistence.models import CallRecord, CallState, EndReason
from signaling.wire import iso
from tests.unit.conftest import QUESTIONS
from tests.unit.doubles import ON_TIME_S, Harness, assert_on_time


def seconds_between(earlier: datetime | None, later: datetime | None) -> float:
    assert earlier is not None and later is not None
    return (later - earlier).total_seconds()


async def assert_ends_at_the_limit(harness: Harness, call: CallRecord) -> None:
    for user in ("alice", "bob"):
        (ended,) = await harness.outbox.wait_for(f"user:{user}", "ended")
        assert ended.payload == {"call_id": call.id, "reason": "time_limit"}
        assert_on_time(ended.at, call.ends_at)
    final = await harness.call(call.id)
    assert (final.state, final.end_reason) == (CallState.ENDED, EndReason.TIME_LIMIT)
    assert final.started_at == call.live_at
    assert await harness.stores.presence.members(call.id) == {}


async def test_both_connected_start_the_countdown_then_live_then_the_limit(
    harness: Harness,
) -> None:
    call = await harness.schedule()
    await harness.both_in(call.id)
    await harness.connected("a1", call.id)
    assert (await harness.call(call.id)).state is CallState.CONNECTING
    assert harness.outbox.sent("a1", "countdown") == []

    await harness.connected("b1", call.id)
    counting = await harness.call(call.id)
    assert counting.state is CallState.COUNTDOWN
    assert seconds_between(counting.live_at, counting.ends_at) == harness.rules.limit_s
    for sid in ("a1", "b1"):
        (countdown,) = harness.outbox.sent(sid, "countdown")
        assert countdown.payload == {
            "call_id": call.id,
            "seconds": harness.rules.countdown_s,
            "live_at": iso(counting.live_at),
        }
        # live_at is countdown_s after the decision, which came before this emit.
        until_live = seconds_between(countdown.at, counting.live_at)
        assert harness.rules.countdown_s - ON_TIME_S < until_live <= harness.rules.countdown_s

    for sid in ("a1", "b1"):
        (live,) = await harness.outbox.wait_for(sid, "live")
        assert_on_time(live.at, counting.live_at)
        assert live.payload["ends_at"] == iso(counting.ends_at)
        assert live.payload["question"]["text"] in QUESTIONS
    assert (await harness.call(call.id)).state is CallState.LIVE
    await assert_ends_at_the_limit(harness, counting)
    assert len(harness.outbox.sent("user:alice", "ended")) == 1


async def test_a_drop_during_the_countdown_cancels_it_until_both_are_back(
    harness: Harness,
) -> None:
    call = await harness.schedule()
    first = await harness.countdown(call.id)
    assert first.state is CallState.COUNTDOWN

    await harness.disconnect("b1")
    assert harness.outbox.payloads("a1", "partner_left") == [
        {"call_id": call.id, "reason": "disconnected"}
    ]
    waiting = await harness.call(call.id)
    assert (waiting.state, waiting.live_at, waiting.ends_at) == (CallState.WAITING, None, None)

    # Stay away past the cancelled countdown's instant: its armed job fires
    # and must find nothing to do.
    await asyncio.sleep(harness.rules.countdown_s + 0.1)
    assert [s for s in harness.outbox.log if s.event == "live"] == []
    assert (await harness.call(call.id)).state is CallState.WAITING

    ack = await harness.join("b2", "bob", call.id)
    assert ack["role"] == "offerer"
    await harness.connected("a1", call.id)
    assert (await harness.call(call.id)).state is CallState.CONNECTING
    await harness.connected("b2", call.id)
    second = await harness.call(call.id)
    assert second.state is CallState.COUNTDOWN
    assert first.live_at is not None and second.live_at is not None
    assert second.live_at > first.live_at

    for sid in ("a1", "b2"):
        (live,) = await harness.outbox.wait_for(sid, "live")
        assert_on_time(live.at, second.live_at)
    await assert_ends_at_the_limit(harness, second)


async def test_a_rejoin_during_the_countdown_restarts_the_negotiation(harness: Harness) -> None:
    call = await harness.schedule()
    await harness.countdown(call.id)
    await harness.join("a2", "alice", call.id)  # a second tab takes over

    restarted = await harness.call(call.id)
    assert (restarted.state, restarted.live_at) == (CallState.CONNECTING, None)
    await harness.connected("a2", call.id)
    await harness.connected("b1", call.id)
    counting = await harness.call(call.id)
    (live,) = await harness.outbox.wait_for("b1", "live")
    assert_on_time(live.at, counting.live_at)


async def test_once_live_a_drop_neither_stops_nor_extends_the_clock(harness: Harness) -> None:
    call = await harness.schedule()
    live = await harness.live(call.id)

    await harness.disconnect("b1")
    assert harness.outbox.payloads("a1", "partner_left") == [
        {"call_id": call.id, "reason": "disconnected"}
    ]
    assert (await harness.call(call.id)).state is CallState.LIVE

    ack = await harness.join("b2", "bob", call.id)
    assert (ack["role"], ack["call"]["state"]) == ("offerer", "live")
    assert ack["ends_at"] == iso(live.ends_at)
    assert len(harness.outbox.sent("a1", "partner_joined")) == 2
    await assert_ends_at_the_limit(harness, live)


async def test_leaving_a_live_call_hangs_up_for_both(harness: Harness) -> None:
    call = await harness.schedule()
    await harness.live(call.id)

    await harness.leave("a1", call.id)
    for user in ("alice", "bob"):
        assert harness.outbox.payloads(f"user:{user}", "ended") == [
            {"call_id": call.id, "reason": "left"}
        ]
    ended = await harness.call(call.id)
    assert (ended.state, ended.end_reason) == (CallState.ENDED, EndReason.LEFT)
    assert await harness.stores.presence.members(call.id) == {}

    # The limit's timer has nothing left to do, whenever it fires.
    assert await harness.timers.fire(call.id) == ended
    assert len(harness.outbox.sent("user:bob", "ended")) == 1


async def test_a_call_scheduled_inside_the_window_is_opened_at_once(harness: Harness) -> None:
    call = await harness.schedule(in_s=5)
    assert call.state is CallState.OPEN
    for user, partner in (("alice", "bob"), ("bob", "alice")):
        payload = {
            "call_id": call.id,
            "scheduled_at": iso(call.scheduled_at),
            "partner_id": partner,
        }
        assert harness.outbox.payloads(f"user:{user}", "call_soon") == [payload]
        # The stored notification is the event, from the one payload.
        notes = await harness.stores.notifications.list_for_user(user)
        assert [(n.kind, n.call_id, n.payload) for n in notes] == [("call_soon", call.id, payload)]


async def test_presence_is_written_only_with_the_change_that_follows_it(
    harness: Harness,
) -> None:
    """Joins and drops move a call between open, waiting and connecting in
    memory; the database hears of them only with the next durable change
    (here the countdown, whose instants must survive a restart)."""
    call = await harness.schedule()
    await harness.both_in(call.id)
    assert (await harness.stored(call.id)).state is CallState.OPEN
    assert (await harness.call(call.id)).state is CallState.CONNECTING  # as users were told
    await harness.connected("a1", call.id)
    await harness.connected("b1", call.id)
    stored = await harness.stored(call.id)
    assert stored.state is CallState.COUNTDOWN
    assert stored.live_at is not None and stored.ends_at is not None
