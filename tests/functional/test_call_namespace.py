"""The /call Socket.IO namespace with real python-socketio clients."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
import pytest
import socketio

from signaling.auth import mint_token
from tests.functional.conftest import (
    TIMER_TOLERANCE_S,
    Lab,
    PeerFactory,
    assert_call_shape,
    assert_error,
    both_in,
    call_state,
    now,
    parse_iso,
    refused_connect,
    to_countdown,
    to_live,
)
from tests.support import SECRET, RunningServer

Payload = dict[str, Any]


def _bad_auths() -> dict[str, Any]:
    return {
        "no auth": None,
        "empty auth": {},
        "null token": {"token": None},
        "garbage": {"token": "garbage"},
        "auth not an object": "a-token-as-a-string",
        "expired": {"token": mint_token(SECRET, "alice", ttl_s=-60)},
        "wrong secret": {"token": mint_token("another-secret-that-is-also-long-enough!!", "a")},
        "no exp": {"token": jwt.encode({"sub": "alice"}, SECRET)},
    }


@pytest.mark.parametrize("name", _bad_auths().keys())
async def test_a_connection_without_a_valid_token_is_refused(
    server: RunningServer, name: str
) -> None:
    error, received = await refused_connect(server, _bad_auths()[name])
    assert isinstance(error, socketio.exceptions.ConnectionError)
    assert len(received) == 1, received
    assert received[0]["message"] == "unauthorized", received
    data = received[0]["data"]
    assert set(data) == {"code", "message"} and data["code"] == "unauthorized", data
    assert isinstance(data["message"], str) and data["message"], data


async def test_join_gives_roles_and_tells_the_waiting_partner(
    server: RunningServer, peer: PeerFactory
) -> None:
    call = await server.schedule("alice", "bob")
    alice, bob = await peer("alice"), await peer("bob")
    first = await alice.join(call["id"])
    assert set(first) == {
        "ok",
        "call",
        "role",
        "partner_present",
        "ice_servers",
        "countdown_s",
        "limit_s",
    }, first
    assert_call_shape(first["call"])
    assert first["call"]["id"] == call["id"] and first["call"]["state"] == "waiting"
    assert first["role"] == "waiting" and first["partner_present"] is False
    assert first["ice_servers"] == []
    assert (first["countdown_s"], first["limit_s"]) == (0.5, 1.5)
    await alice.quiet(within=0.1)  # nobody to tell about yet

    second = await bob.join(call["id"])
    assert second["role"] == "offerer" and second["partner_present"] is True
    assert second["call"]["state"] == "connecting"
    assert await alice.take("partner_joined") == {"call_id": call["id"], "role": "answerer"}
    await bob.quiet(["partner_joined"])
    assert (await call_state(server, "alice", call["id"]))["state"] == "connecting"


async def test_join_before_the_window_opens_is_too_early(lab: Lab) -> None:
    server = await lab.start(notify_before_s=5)
    call = await server.schedule("alice", "bob", in_s=3600)
    alice = await lab.connect(server, "alice")
    assert_error(await alice.emit("join", {"call_id": call["id"]}), "too_early")
    assert (await call_state(server, "alice", call["id"]))["state"] == "scheduled"


async def test_join_of_someone_elses_or_no_call_fails(
    server: RunningServer, peer: PeerFactory
) -> None:
    call = await server.schedule("alice", "bob")
    carol = await peer("carol")
    assert_error(await carol.emit("join", {"call_id": call["id"]}), "forbidden")
    assert_error(await carol.emit("join", {"call_id": call["id"] + 1000}), "not_found")
    # The same connection is not harmed by the refusals.
    own = await server.schedule("carol", "dave")
    assert (await carol.join(own["id"]))["role"] == "waiting"


def _signals(call_id: int) -> list[Payload]:
    """One of each signal type, as a browser would send them."""
    return [
        {"call_id": call_id, "type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"},
        {"call_id": call_id, "type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n"},
        {
            "call_id": call_id,
            "type": "candidate",
            "candidate": {
                "candidate": "candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host",
                "sdpMid": "0",
                "sdpMLineIndex": 0,
                "usernameFragment": "abcd",
            },
        },
        {
            "call_id": call_id,
            "type": "candidate",
            "candidate": {"candidate": "", "sdpMid": None, "sdpMLineIndex": None},
        },
        {"call_id": call_id, "type": "end-of-candidates"},
    ]


async def test_signals_reach_the_partner_unchanged_and_nobody_else(
    server: RunningServer, peer: PeerFactory
) -> None:
    call = await server.schedule("alice", "bob")
    other = await server.schedule("carol", "dave")
    alice, bob = await peer("alice"), await peer("bob")
    carol, dave = await peer("carol"), await peer("dave")
    await both_in(alice, bob, call["id"])
    await both_in(carol, dave, other["id"])

    for sender, receiver in ((bob, alice), (alice, bob)):
        for signal in _signals(call["id"]):
            assert await sender.emit("signal", signal) == {"ok": True}
            assert await receiver.take("signal") == {**signal, "from": sender.user_id}
    for outsider in (carol, dave):
        await outsider.quiet(within=0.1)
    await alice.quiet(["signal"], within=0.1)
    await bob.quiet(["signal"], within=0.1)


async def test_an_outsider_cannot_act_on_a_call(server: RunningServer, peer: PeerFactory) -> None:
    call = await server.schedule("alice", "bob")
    alice, bob, carol = await peer("alice"), await peer("bob"), await peer("carol")
    await both_in(alice, bob, call["id"])
    offer = _signals(call["id"])[0]
    assert_error(await carol.emit("signal", offer), "forbidden")
    for event in ("connected", "leave"):
        assert_error(await carol.emit(event, {"call_id": call["id"]}), "forbidden")
    await alice.quiet(within=0.1)
    await bob.quiet(within=0.1)


async def test_a_participant_must_join_before_signalling(
    server: RunningServer, peer: PeerFactory
) -> None:
    call = await server.schedule("alice", "bob")
    alice, bob = await peer("alice"), await peer("bob")
    await alice.join(call["id"])
    ack = await bob.emit("signal", _signals(call["id"])[0])
    assert ack["ok"] is False, ack
    await alice.quiet(["signal"], within=0.1)


async def test_many_candidates_arrive_in_the_order_sent(
    server: RunningServer, peer: PeerFactory
) -> None:
    call = await server.schedule("alice", "bob")
    alice, bob = await peer("alice"), await peer("bob")
    await both_in(alice, bob, call["id"])
    sent = [
        {
            "call_id": call["id"],
            "type": "candidate",
            "candidate": {"candidate": f"candidate:{n} 1 udp {n} 192.0.2.1 {1024 + n} typ host"},
        }
        for n in range(200)
    ]
    acks: list[Any] = []
    for n, signal in enumerate(sent[:-1]):
        # Half without an ack callback: those must be handled all the same.
        callback = acks.append if n % 2 else None
        await bob.sio.emit("signal", signal, namespace="/call", callback=callback)
    assert await bob.emit("signal", sent[-1]) == {"ok": True}
    received = await alice.wait_for("signal", 200)
    assert received == [{**s, "from": "bob"} for s in sent]
    assert acks == [{"ok": True}] * 99


async def test_signals_wait_for_a_partner_who_dropped_and_came_back(
    server: RunningServer, peer: PeerFactory
) -> None:
    call = await server.schedule("alice", "bob")
    alice, bob = await peer("alice"), await peer("bob")
    await both_in(alice, bob, call["id"])
    await bob.close()
    assert await alice.take("partner_left") == {"call_id": call["id"], "reason": "disconnected"}
    assert (await call_state(server, "alice", call["id"]))["state"] == "waiting"

    held = [*_signals(call["id"])[:1], *_signals(call["id"])[2:]]
    for signal in held:
        assert await alice.emit("signal", signal) == {"ok": True}
    returned = await peer("bob")
    ack = await returned.join(call["id"])
    assert ack["role"] == "offerer" and ack["partner_present"] is True
    assert await alice.take("partner_joined") == {"call_id": call["id"], "role": "answerer"}
    assert await returned.wait_for("signal", len(held)) == [{**s, "from": "alice"} for s in held]
    # Afterwards signals flow directly again, behind the queued ones.
    fresh = _signals(call["id"])[1]
    assert await alice.emit("signal", fresh) == {"ok": True}
    assert (await returned.wait_for("signal", len(held) + 1))[-1] == {**fresh, "from": "alice"}


async def test_the_queue_for_an_absent_partner_is_bounded(lab: Lab) -> None:
    server = await lab.start(signal_queue_max=3)
    call = await server.schedule("alice", "bob")
    alice, bob = await lab.connect(server, "alice"), await lab.connect(server, "bob")
    await both_in(alice, bob, call["id"])
    await bob.close()
    await alice.take("partner_left")
    offer = _signals(call["id"])[0]
    for _ in range(3):
        assert await alice.emit("signal", offer) == {"ok": True}
    assert_error(await alice.emit("signal", offer), "rate_limited")
    returned = await lab.connect(server, "bob")
    await returned.join(call["id"])
    assert len(await returned.wait_for("signal", 3)) == 3
    await returned.quiet(["signal"], within=0.2)


async def test_a_second_connection_takes_over(server: RunningServer, peer: PeerFactory) -> None:
    call = await server.schedule("alice", "bob")
    old, bob = await peer("alice"), await peer("bob")
    await both_in(old, bob, call["id"])
    new = await peer("alice")
    ack = await new.join(call["id"])
    assert ack["role"] == "offerer" and ack["partner_present"] is True
    assert await old.take("ended") == {"call_id": call["id"], "reason": "replaced"}
    assert await bob.take("partner_joined") == {"call_id": call["id"], "role": "answerer"}

    offer, answer = _signals(call["id"])[:2]
    assert await new.emit("signal", offer) == {"ok": True}
    assert await bob.take("signal") == {**offer, "from": "alice"}
    assert (await old.emit("signal", offer))["ok"] is False
    # The retired connection going away must not evict its successor.
    await old.close()
    await bob.quiet(["partner_left", "signal"])
    assert await bob.emit("signal", answer) == {"ok": True}
    assert await new.take("signal") == {**answer, "from": "bob"}
    assert old.events["signal"] == []


async def test_leaving_before_live_lets_the_user_come_back_as_offerer(
    server: RunningServer, peer: PeerFactory
) -> None:
    call = await server.schedule("alice", "bob")
    alice, bob = await peer("alice"), await peer("bob")
    await both_in(alice, bob, call["id"])
    await alice.ok("leave", call["id"])
    assert await bob.take("partner_left") == {"call_id": call["id"], "reason": "left"}
    assert (await call_state(server, "bob", call["id"]))["state"] == "waiting"
    await alice.quiet(["ended"], within=0.1)

    ack = await alice.join(call["id"])
    assert ack["role"] == "offerer" and ack["partner_present"] is True
    assert await bob.take("partner_joined") == {"call_id": call["id"], "role": "answerer"}


async def test_a_drop_during_the_countdown_cancels_it(lab: Lab) -> None:
    server = await lab.start(countdown_s=1.0, limit_s=1.0)
    call = await server.schedule("alice", "bob")
    alice, bob = await lab.connect(server, "alice"), await lab.connect(server, "bob")
    first = await to_countdown(alice, bob, call["id"])
    await bob.close()
    assert await alice.take("partner_left") == {"call_id": call["id"], "reason": "disconnected"}
    assert (await call_state(server, "alice", call["id"]))["state"] == "waiting"
    planned = parse_iso(first["live_at"])
    await alice.quiet(["live"], within=(planned - now()).total_seconds() + TIMER_TOLERANCE_S)
    assert (await call_state(server, "alice", call["id"]))["state"] == "waiting"

    returned = await lab.connect(server, "bob")
    assert (await returned.join(call["id"]))["role"] == "offerer"
    await alice.take("partner_joined")
    await returned.ok("connected", call["id"])
    await alice.quiet(["countdown"], within=0.1)  # alice has not reported connected again
    await alice.ok("connected", call["id"])
    again = await alice.take("countdown")
    assert await returned.take("countdown") == again
    assert parse_iso(again["live_at"]) > planned
    live = await alice.take("live")
    assert await returned.take("live") == live


async def test_leaving_a_live_call_hangs_up_for_both(lab: Lab) -> None:
    server = await lab.start(limit_s=20)
    call = await server.schedule("alice", "bob")
    alice, bob = await lab.connect(server, "alice"), await lab.connect(server, "bob")
    await to_live(alice, bob, call["id"])
    await alice.ok("leave", call["id"])
    expected = {"call_id": call["id"], "reason": "left"}
    assert await alice.take("ended") == expected
    assert await bob.take("ended") == expected
    state = await call_state(server, "bob", call["id"])
    assert (state["state"], state["end_reason"]) == ("ended", "left")
    assert state["ended_at"] is not None
    assert_error(await alice.emit("join", {"call_id": call["id"]}), "ended")


async def test_call_soon_reaches_every_socket_of_both_users(lab: Lab) -> None:
    notify_before_s = 2.0
    server = await lab.start(notify_before_s=notify_before_s)
    sockets = [
        await lab.connect(server, "alice"),
        await lab.connect(server, "alice"),
        await lab.connect(server, "bob"),
    ]
    carol = await lab.connect(server, "carol")
    call = await server.schedule("alice", "bob", in_s=notify_before_s + 1.2)
    opens_at = parse_iso(call["scheduled_at"]) - timedelta(seconds=notify_before_s)
    assert call["state"] == "scheduled"
    assert all(s.events["call_soon"] == [] for s in sockets)
    assert_error(await sockets[0].emit("join", {"call_id": call["id"]}), "too_early")

    for client in sockets:
        partner = "bob" if client.user_id == "alice" else "alice"
        assert await client.take("call_soon") == {
            "call_id": call["id"],
            "scheduled_at": call["scheduled_at"],
            "partner_id": partner,
        }
        assert client.arrived_at["call_soon"][0] >= opens_at - timedelta(milliseconds=50)
        assert client.arrived_at["call_soon"][0] <= opens_at + timedelta(seconds=TIMER_TOLERANCE_S)
    await carol.quiet(["call_soon"], within=0.1)
    assert (await sockets[2].join(call["id"]))["role"] == "waiting"


async def test_call_soon_comes_at_once_when_the_window_is_already_open(
    server: RunningServer, peer: PeerFactory
) -> None:
    alice, bob = await peer("alice"), await peer("bob")
    call = await server.schedule("bob", "alice")
    assert call["state"] == "open"
    assert await alice.take("call_soon") == {
        "call_id": call["id"],
        "scheduled_at": call["scheduled_at"],
        "partner_id": "bob",
    }
    assert (await bob.take("call_soon"))["partner_id"] == "alice"
    await alice.quiet(["call_soon"], within=0.1)  # once, not again when somebody joins
    await both_in(alice, bob, call["id"])
    await bob.quiet(["call_soon"], within=0.1)


async def test_events_without_an_ack_callback_are_handled(
    server: RunningServer, peer: PeerFactory
) -> None:
    call = await server.schedule("alice", "bob")
    alice, bob = await peer("alice"), await peer("bob")
    await alice.join(call["id"])
    for event in ("join", "connected"):
        await bob.sio.emit(event, {"call_id": call["id"]}, namespace="/call")
    assert await alice.take("partner_joined") == {"call_id": call["id"], "role": "answerer"}
    await alice.sio.emit("connected", {"call_id": call["id"]}, namespace="/call")
    countdown = await alice.take("countdown")
    assert await bob.take("countdown") == countdown
    await bob.sio.emit("leave", {"call_id": call["id"]}, namespace="/call")
    assert await alice.take("partner_left") == {"call_id": call["id"], "reason": "left"}
