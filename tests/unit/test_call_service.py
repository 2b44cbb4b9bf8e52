"""CallService driven directly: joins, relay, queues, takeovers, leaves, cancels."""

from __future__ import annotations

from typing import Any

import pytest

from persistence.models import CallState, EndReason, utcnow
from signaling.errors import ApiError
from signaling.wire import iso
from tests.contract.states import create_call, drive_to, ms
from tests.unit.doubles import Harness

CANDIDATE = {"candidate": "candidate:1 1 udp 2122260223 10.0.0.1 54400 typ host", "sdpMid": "0"}


def error_code(exc: pytest.ExceptionInfo[ApiError]) -> str:
    return exc.value.code


# ------------------------------------------------------------------ join


async def test_the_first_joiner_waits_and_the_second_offers(harness: Harness) -> None:
    call = await harness.schedule()
    assert call.state is CallState.OPEN  # the window was already open

    first = await harness.join("a1", "alice", call.id)
    assert first["ok"] is True
    assert (first["role"], first["partner_present"]) == ("waiting", False)
    assert first["call"]["state"] == "waiting" and first["call"]["id"] == call.id
    assert first["ice_servers"] == [{"urls": ["stun:stun.example.org:3478"]}]
    assert (first["countdown_s"], first["limit_s"]) == (0.2, 0.4)
    assert harness.outbox.sent("a1") == []

    second = await harness.join("b1", "bob", call.id)
    assert (second["role"], second["partner_present"]) == ("offerer", True)
    assert second["call"]["state"] == "connecting"
    assert harness.outbox.payloads("a1", "partner_joined") == [
        {"call_id": call.id, "role": "answerer"}
    ]
    assert harness.outbox.sent("b1") == []
    assert (await harness.call(call.id)).state is CallState.CONNECTING
    assert await harness.stores.presence.members(call.id) == {"alice": "a1", "bob": "b1"}


async def test_joining_before_the_window_is_too_early(harness: Harness) -> None:
    call = await harness.schedule(in_s=3600)
    with pytest.raises(ApiError) as exc:
        await harness.join("a1", "alice", call.id)
    assert error_code(exc) == "too_early"
    assert await harness.stores.presence.members(call.id) == {}
    assert (await harness.call(call.id)).state is CallState.SCHEDULED


async def test_a_join_opens_a_window_the_timer_has_not_opened_yet(harness: Harness) -> None:
    now = utcnow()
    call = await harness.stores.calls.create(
        "alice", "bob", now + ms(60), now - ms(1), now + ms(600)
    )

    ack = await harness.join("a1", "alice", call.id)
    assert ack["call"]["state"] == "waiting"
    assert harness.outbox.payloads("user:bob", "call_soon") == [
        {"call_id": call.id, "scheduled_at": iso(call.scheduled_at), "partner_id": "alice"}
    ]


async def test_joining_an_unknown_call_or_somebody_elses(harness: Harness) -> None:
    call = await harness.schedule()
    with pytest.raises(ApiError) as missing:
        await harness.join("a1", "alice", call.id + 100)
    with pytest.raises(ApiError) as foreign:
        await harness.join("c1", "carol", call.id)
    assert (error_code(missing), error_code(foreign)) == ("not_found", "forbidden")
    assert await harness.stores.presence.members(call.id) == {}


@pytest.mark.parametrize("state", [CallState.ENDED, CallState.MISSED, CallState.CANCELLED])
async def test_joining_a_call_that_is_over_is_ended(harness: Harness, state: CallState) -> None:
    call = await drive_to(harness.stores.calls, await create_call(harness.stores.calls), state)
    with pytest.raises(ApiError) as exc:
        await harness.join("a1", "alice", call.id)
    assert error_code(exc) == "ended"
    assert await harness.stores.presence.members(call.id) == {}


async def test_joining_a_live_call_past_its_limit_is_ended(harness: Harness) -> None:
    past = utcnow() - ms(10)
    call = await drive_to(
        harness.stores.calls,
        await create_call(harness.stores.calls, scheduled_at=past),
        CallState.LIVE,
        live_at=past,
        ends_at=past + ms(1),
    )
    with pytest.raises(ApiError) as exc:
        await harness.join("a1", "alice", call.id)
    assert error_code(exc) == "ended"


# ------------------------------------------------------------------ relay


async def test_signals_go_to_the_partner_only_and_in_order(harness: Harness) -> None:
    call = await harness.schedule()
    other = await harness.schedule("carol", "dave")
    await harness.both_in(call.id)
    await harness.join("c1", "carol", other.id)
    await harness.join("d1", "dave", other.id)

    sent: list[tuple[str, dict[str, Any]]] = [
        ("offer", {"sdp": "v=0 offer"}),
        *(("candidate", {"candidate": {**CANDIDATE, "sdpMLineIndex": i}}) for i in range(3)),
        ("end-of-candidates", {}),
    ]
    for kind, fields in sent:
        await harness.signal("a1", call.id, kind, **fields)
    await harness.signal("b1", call.id, "answer", sdp="v=0 answer")

    assert harness.outbox.payloads("b1", "signal") == [
        {"call_id": call.id, "from": "alice", "type": kind, **fields} for kind, fields in sent
    ]
    assert harness.outbox.payloads("a1", "signal") == [
        {"call_id": call.id, "from": "bob", "type": "answer", "sdp": "v=0 answer"}
    ]
    for sid in ("c1", "d1"):
        assert harness.outbox.sent(sid, "signal") == []


async def test_only_a_joined_participant_can_signal(harness: Harness) -> None:
    call = await harness.schedule()
    other = await harness.schedule("carol", "dave")
    await harness.both_in(call.id)
    await harness.join("c1", "carol", other.id)
    harness.connections.users_by_sid["a2"] = "alice"  # connected, not joined

    outcomes = {}
    for sid, call_id in (("c1", call.id), ("a2", call.id), ("a1", call.id + 100)):
        with pytest.raises(ApiError) as exc:
            await harness.signal(sid, call_id, "offer", sdp="v=0")
        outcomes[sid] = error_code(exc)
    assert outcomes == {"c1": "forbidden", "a2": "conflict", "a1": "not_found"}
    assert [s for s in harness.outbox.log if s.event == "signal"] == []


async def test_signals_for_an_absent_partner_wait_for_their_join(harness: Harness) -> None:
    call = await harness.schedule()
    await harness.join("a1", "alice", call.id)
    for i in range(3):
        await harness.signal(
            "a1", call.id, "candidate", candidate={**CANDIDATE, "sdpMLineIndex": i}
        )
    assert [s for s in harness.outbox.log if s.event == "signal"] == []

    await harness.join("b1", "bob", call.id)
    queued = harness.outbox.payloads("b1", "signal")
    assert [p["candidate"]["sdpMLineIndex"] for p in queued] == [0, 1, 2]
    assert all(p["from"] == "alice" for p in queued)

    await harness.signal("a1", call.id, "end-of-candidates")
    assert harness.outbox.events("b1") == ["signal"] * 4
    await harness.join("b2", "bob", call.id)  # a takeover does not replay them
    assert harness.outbox.sent("b2", "signal") == []


async def test_the_queue_for_an_absent_partner_is_bounded(harness: Harness) -> None:
    call = await harness.schedule()
    await harness.join("a1", "alice", call.id)
    limit = harness.rules.signal_queue_max
    for i in range(limit):
        await harness.signal(
            "a1", call.id, "candidate", candidate={**CANDIDATE, "sdpMLineIndex": i}
        )
    with pytest.raises(ApiError) as exc:
        await harness.signal("a1", call.id, "end-of-candidates")
    assert error_code(exc) == "rate_limited"

    await harness.join("b1", "bob", call.id)
    assert [p["type"] for p in harness.outbox.payloads("b1", "signal")] == ["candidate"] * limit


# ------------------------------------------------------------------ takeover, leave, drop


async def test_a_second_connection_takes_over(harness: Harness) -> None:
    call = await harness.schedule()
    await harness.both_in(call.id)

    ack = await harness.join("a2", "alice", call.id)
    assert ack["role"] == "offerer"
    assert harness.outbox.payloads("a1", "ended") == [{"call_id": call.id, "reason": "replaced"}]
    # bob joined second, so this is the first partner_joined he hears of
    assert harness.outbox.payloads("b1", "partner_joined") == [
        {"call_id": call.id, "role": "answerer"}
    ]
    assert await harness.stores.presence.members(call.id) == {"alice": "a2", "bob": "b1"}

    with pytest.raises(ApiError) as exc:
        await harness.signal("a1", call.id, "offer", sdp="v=0 stale")
    assert error_code(exc) == "conflict"

    await harness.disconnect("a1")  # the replaced socket goes: nothing happens
    assert harness.outbox.sent("b1", "partner_left") == []
    assert await harness.stores.presence.members(call.id) == {"alice": "a2", "bob": "b1"}
    assert (await harness.call(call.id)).state is CallState.CONNECTING

    await harness.signal("a2", call.id, "offer", sdp="v=0 fresh")
    assert [p["sdp"] for p in harness.outbox.payloads("b1", "signal")] == ["v=0 fresh"]


async def test_the_partner_hears_of_a_takeover_as_a_new_join(harness: Harness) -> None:
    call = await harness.schedule()
    await harness.join("a1", "alice", call.id)
    await harness.join("b1", "bob", call.id)
    await harness.join("b2", "bob", call.id)
    assert (
        harness.outbox.payloads("a1", "partner_joined")
        == [{"call_id": call.id, "role": "answerer"}] * 2
    )
    assert harness.outbox.payloads("b1", "ended") == [{"call_id": call.id, "reason": "replaced"}]


async def test_leaving_before_live_sends_the_call_back_to_waiting(harness: Harness) -> None:
    call = await harness.schedule()
    await harness.both_in(call.id)

    await harness.leave("a1", call.id)
    assert harness.outbox.payloads("b1", "partner_left") == [{"call_id": call.id, "reason": "left"}]
    assert (await harness.call(call.id)).state is CallState.WAITING
    assert await harness.stores.presence.members(call.id) == {"bob": "b1"}
    assert harness.outbox.sent("user:alice", "ended") == []

    ack = await harness.join("a1", "alice", call.id)  # a leaver may come back
    assert ack["role"] == "offerer"
    assert len(harness.outbox.sent("b1", "partner_joined")) == 1


async def test_the_last_user_dropping_reopens_the_call(harness: Harness) -> None:
    call = await harness.schedule()
    await harness.join("a1", "alice", call.id)
    await harness.disconnect("a1")
    assert (await harness.call(call.id)).state is CallState.OPEN
    assert await harness.stores.presence.members(call.id) == {}


async def test_leaving_a_call_one_has_not_joined_is_a_conflict(harness: Harness) -> None:
    call = await harness.schedule()
    harness.connections.users_by_sid["a1"] = "alice"
    with pytest.raises(ApiError) as exc:
        await harness.leave("a1", call.id)
    assert error_code(exc) == "conflict"


async def test_connected_only_counts_from_a_joined_connection(harness: Harness) -> None:
    call = await harness.schedule()
    await harness.join("a1", "alice", call.id)
    harness.connections.users_by_sid["b1"] = "bob"
    with pytest.raises(ApiError) as exc:
        await harness.connected("b1", call.id)
    assert error_code(exc) == "conflict"

    await harness.join("b1", "bob", call.id)
    await harness.connected("a1", call.id)
    assert (await harness.call(call.id)).state is CallState.CONNECTING


async def test_a_repeated_connected_does_not_restart_the_countdown(harness: Harness) -> None:
    call = await harness.schedule()
    counting = await harness.countdown(call.id)
    await harness.connected("a1", call.id)
    await harness.connected("b1", call.id)
    assert await harness.call(call.id) == counting
    assert len(harness.outbox.sent("a1", "countdown")) == 1


# ------------------------------------------------------------------ cancel


async def test_cancelling_a_scheduled_call(harness: Harness) -> None:
    call = await harness.schedule(in_s=3600)
    cancelled = await harness.service.cancel("bob", call.id)

    assert cancelled.state is CallState.CANCELLED
    assert cancelled.end_reason is EndReason.CANCELLED and cancelled.ended_at is not None
    assert await harness.call(call.id) == cancelled
    for user in ("alice", "bob"):
        assert harness.outbox.payloads(f"user:{user}", "ended") == [
            {"call_id": call.id, "reason": "cancelled"}
        ]


async def test_cancelling_an_open_call_ends_it_for_whoever_is_in(harness: Harness) -> None:
    call = await harness.schedule()
    await harness.join("a1", "alice", call.id)

    assert (await harness.service.cancel("alice", call.id)).state is CallState.CANCELLED
    assert harness.outbox.payloads("user:alice", "ended") == [
        {"call_id": call.id, "reason": "cancelled"}
    ]
    assert await harness.stores.presence.members(call.id) == {}
    with pytest.raises(ApiError) as exc:
        await harness.signal("a1", call.id, "offer", sdp="v=0")
    assert error_code(exc) == "ended"


async def test_a_live_call_cannot_be_cancelled(harness: Harness) -> None:
    call = await harness.schedule()
    await harness.live(call.id)
    with pytest.raises(ApiError) as exc:
        await harness.service.cancel("alice", call.id)
    assert error_code(exc) == "conflict"
    assert (await harness.call(call.id)).state is CallState.LIVE


async def test_cancelling_a_call_that_is_over_is_ended(harness: Harness) -> None:
    call = await harness.schedule(in_s=3600)
    await harness.service.cancel("alice", call.id)
    with pytest.raises(ApiError) as exc:
        await harness.service.cancel("bob", call.id)
    assert error_code(exc) == "ended"
    assert len(harness.outbox.sent("user:bob", "ended")) == 1


async def test_only_participants_can_cancel(harness: Harness) -> None:
    call = await harness.schedule(in_s=3600)
    with pytest.raises(ApiError) as exc:
        await harness.service.cancel("carol", call.id)
    assert error_code(exc) == "not_found"
    assert (await harness.call(call.id)).state is CallState.SCHEDULED
