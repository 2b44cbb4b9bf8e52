"""Malformed input on every /call event and every call route: an error answer,
never a dead connection or a dead server."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from signaling.calls.schemas import MAX_CANDIDATE, MAX_SDP
from tests.functional.conftest import (
    PeerFactory,
    TimedClient,
    assert_error,
    both_in,
)
from tests.support import RunningServer, in_seconds

EVENTS = ("join", "signal", "connected", "leave")

BAD_CALL_IDS: dict[str, Any] = {
    "string": "1",
    "float": 1.5,
    "negative": -1,
    "zero": 0,
    "true": True,
    "false": False,
    "null": None,
    "beyond 2^64": 2**64 + 1,
    "beyond 2^53": 2**53 + 1,
    "list": [1],
    "object": {"id": 1},
}

NOT_OBJECTS: dict[str, Any] = {
    "list": [{"call_id": 1}],
    "string": "call 1",
    "number": 1,
    "bool": True,
    "null": (None,),  # a tuple is the argument list: one null argument
}


def _payload(event: str, call_id: Any) -> dict[str, Any]:
    if event == "signal":
        return {"call_id": call_id, "type": "offer", "sdp": "v=0"}
    return {"call_id": call_id}


def _bad_signals(call_id: int) -> dict[str, dict[str, Any]]:
    def cand(**fields: Any) -> dict[str, Any]:
        return {"call_id": call_id, "type": "candidate", "candidate": {"candidate": "c", **fields}}

    return {
        "no type": {"call_id": call_id, "sdp": "v=0"},
        "unknown type": {"call_id": call_id, "type": "bye", "sdp": "v=0"},
        "type not a string": {"call_id": call_id, "type": 1, "sdp": "v=0"},
        "no call_id": {"type": "offer", "sdp": "v=0"},
        "offer without sdp": {"call_id": call_id, "type": "offer"},
        "answer with null sdp": {"call_id": call_id, "type": "answer", "sdp": None},
        "sdp not a string": {"call_id": call_id, "type": "offer", "sdp": 12},
        "sdp an object": {"call_id": call_id, "type": "offer", "sdp": {"type": "offer"}},
        "offer with a candidate": {
            "call_id": call_id,
            "type": "offer",
            "sdp": "v=0",
            "candidate": {"candidate": "c"},
        },
        "candidate without candidate": {"call_id": call_id, "type": "candidate"},
        "candidate with sdp": {**cand(), "sdp": "v=0"},
        "candidate a string": {"call_id": call_id, "type": "candidate", "candidate": "c"},
        "candidate without its string": {
            "call_id": call_id,
            "type": "candidate",
            "candidate": {"sdpMid": "0"},
        },
        "candidate string a number": {
            "call_id": call_id,
            "type": "candidate",
            "candidate": {"candidate": 5},
        },
        "sdpMLineIndex a string": cand(sdpMLineIndex="0"),
        "sdpMLineIndex negative": cand(sdpMLineIndex=-1),
        "sdpMid a number": cand(sdpMid=0),
        "end-of-candidates with sdp": {
            "call_id": call_id,
            "type": "end-of-candidates",
            "sdp": "v=0",
        },
        "sdp over 64 KiB": {"call_id": call_id, "type": "offer", "sdp": "a" * (MAX_SDP + 1)},
        "candidate over 4 KiB": cand(candidate="c" * (MAX_CANDIDATE + 1)),
    }


async def _pair(server: RunningServer, peer: PeerFactory) -> tuple[TimedClient, TimedClient, int]:
    call = await server.schedule("alice", "bob")
    return await peer("alice"), await peer("bob"), int(call["id"])


async def assert_still_serving(
    server: RunningServer, sender: TimedClient, receiver: TimedClient, call_id: int
) -> None:
    """Both are in ``call_id``; a valid signal still goes through, the server
    still answers and nothing unexpected reached the partner."""
    offer = {"call_id": call_id, "type": "offer", "sdp": "v=0 still fine"}
    assert await sender.emit("signal", offer) == {"ok": True}
    assert (await receiver.wait_for("signal"))[-1] == {**offer, "from": sender.user_id}
    assert len(receiver.events["signal"]) == 1, receiver.events["signal"]
    status, body = await server.request("GET", "/api/health")
    assert (status, body) == (200, {"ok": True})


@pytest.mark.parametrize("event", EVENTS)
async def test_a_bad_call_id_is_invalid_on_every_event(
    server: RunningServer, peer: PeerFactory, event: str
) -> None:
    alice, bob, call_id = await _pair(server, peer)
    for name, call_ref in BAD_CALL_IDS.items():
        ack = await alice.emit(event, _payload(event, call_ref))
        assert ack["ok"] is False and ack["error"]["code"] == "invalid", (name, ack)
        assert_error(ack, "invalid")
    await both_in(alice, bob, call_id)  # the same connection still works
    await assert_still_serving(server, alice, bob, call_id)


@pytest.mark.parametrize("event", EVENTS)
async def test_a_payload_that_is_not_an_object_is_invalid(
    server: RunningServer, peer: PeerFactory, event: str
) -> None:
    alice, bob, call_id = await _pair(server, peer)
    for name, payload in NOT_OBJECTS.items():
        ack = await alice.emit(event, payload)
        assert isinstance(ack, dict) and ack.get("ok") is False, (name, ack)
        assert_error(ack, "invalid")
    assert_error(await alice.emit(event, None), "invalid")  # no payload at all
    assert_error(await alice.emit(event, (_payload(event, call_id), "extra")), "invalid")
    await both_in(alice, bob, call_id)
    await assert_still_serving(server, alice, bob, call_id)


async def test_bad_signals_are_invalid_and_never_relayed(
    server: RunningServer, peer: PeerFactory
) -> None:
    alice, bob, call_id = await _pair(server, peer)
    await both_in(alice, bob, call_id)
    for name, signal in _bad_signals(call_id).items():
        ack = await alice.emit("signal", signal)
        assert isinstance(ack, dict) and ack.get("ok") is False, (name, ack)
        assert_error(ack, "invalid")
    assert bob.events["signal"] == []
    await assert_still_serving(server, alice, bob, call_id)


async def test_signals_at_the_size_limits_are_relayed(
    server: RunningServer, peer: PeerFactory
) -> None:
    alice, bob, call_id = await _pair(server, peer)
    await both_in(alice, bob, call_id)
    largest = [
        {"call_id": call_id, "type": "offer", "sdp": "s" * MAX_SDP},
        {
            "call_id": call_id,
            "type": "candidate",
            "candidate": {"candidate": "c" * MAX_CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0},
        },
    ]
    for signal in largest:
        assert await alice.emit("signal", signal) == {"ok": True}
    assert await bob.wait_for("signal", 2) == [{**s, "from": "alice"} for s in largest]


@pytest.mark.parametrize("event", ["bogus", "JOIN", "on_join", "trigger_event", "", 42])
async def test_an_unknown_event_gets_an_error_ack(
    server: RunningServer, peer: PeerFactory, event: Any
) -> None:
    alice, bob, call_id = await _pair(server, peer)
    assert_error(await alice.emit(event, {"call_id": call_id}), "invalid")
    await both_in(alice, bob, call_id)
    await assert_still_serving(server, alice, bob, call_id)


@pytest.mark.parametrize("event", ["connect", "disconnect"])
async def test_a_lifecycle_name_sent_as_an_event_changes_nothing(
    server: RunningServer, peer: PeerFactory, event: str
) -> None:
    """socket.io-client refuses to emit these names, but any client can send
    the packet; it must not log the connection in again or out."""
    alice, bob, call_id = await _pair(server, peer)
    await both_in(alice, bob, call_id)
    ack = await alice.emit(event, {"call_id": call_id}, timeout=2)
    assert_error(ack, "invalid")
    await bob.quiet(["partner_left", "partner_joined"], within=0.1)
    await assert_still_serving(server, alice, bob, call_id)
    assert await bob.emit("signal", {"call_id": call_id, "type": "answer", "sdp": "a"}) == {
        "ok": True
    }
    assert (await alice.wait_for("signal"))[-1]["from"] == "bob"


async def test_a_large_malformed_message_under_the_limit_gets_an_ack(
    server: RunningServer, peer: PeerFactory
) -> None:
    alice, bob, call_id = await _pair(server, peer)
    await both_in(alice, bob, call_id)
    big = {"call_id": call_id, "type": "offer", "sdp": "x" * 900_000}
    assert_error(await alice.emit("signal", big), "invalid")
    await assert_still_serving(server, alice, bob, call_id)


async def test_a_message_over_a_megabyte_harms_only_its_own_connection(
    server: RunningServer, peer: PeerFactory
) -> None:
    alice, bob, call_id = await _pair(server, peer)
    carol, dave = await peer("carol"), await peer("dave")
    other = await server.schedule("carol", "dave")
    await both_in(alice, bob, call_id)
    await both_in(carol, dave, int(other["id"]))
    closed = asyncio.Event()
    alice.sio.on("disconnect", lambda *_: closed.set(), namespace="/call")
    huge = {"call_id": call_id, "type": "offer", "sdp": "x" * 1_100_000}
    answer = asyncio.ensure_future(alice.emit("signal", huge, timeout=10))
    gone = asyncio.ensure_future(closed.wait())
    # Either an error ack or the end of that connection, never silence.
    await asyncio.wait({answer, gone}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    for task in (answer, gone):
        task.cancel()
    outcomes: tuple[Any, ...] = await asyncio.gather(answer, gone, return_exceptions=True)
    ack = outcomes[0]
    if isinstance(ack, BaseException):
        assert closed.is_set(), f"no ack ({ack!r}) and the connection is still open"
    else:
        assert_error(ack, "invalid")
    assert bob.events["signal"] == []
    await assert_still_serving(server, carol, dave, int(other["id"]))
    late = await peer("erin")
    third = await server.schedule("erin", "frank")
    assert (await late.join(int(third["id"])))["role"] == "waiting"


async def test_a_rest_body_over_64_kib_is_invalid(server: RunningServer) -> None:
    body = {"partner_id": "bob", "scheduled_at": in_seconds(600), "padding": "p" * 70_000}
    status, answer = await server.request("POST", "/api/calls", "alice", json=body)
    assert status == 413, answer
    assert_error(answer, "invalid")
    status, answer = await server.request(
        "POST", "/api/calls", "alice", data=io.BytesIO(b"{" * 2_000_000)
    )
    assert status in (400, 413), answer
    assert_error(answer, "invalid")
    assert (await server.request("GET", "/api/health"))[0] == 200


async def test_a_chunked_rest_body_over_64_kib_is_refused_unparsed(server: RunningServer) -> None:
    """F12: without ``Content-Length`` the limit holds too: 413, and the body
    (valid JSON here, so a parse would book the call) is never parsed."""
    body = orjson.dumps(
        {"partner_id": "bob", "scheduled_at": in_seconds(600), "padding": "p" * 900_000}
    )

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 32 * 1024):
            yield body[start : start + 32 * 1024]

    status, answer = await server.request("POST", "/api/calls", "alice", data=chunks())
    assert status == 413, answer
    assert_error(answer, "invalid")
    status, listed = await server.request("GET", "/api/calls", "alice")
    assert status == 200 and listed["calls"] == [], listed
    # A small chunked body is read as usual.
    small = orjson.dumps({"partner_id": "bob", "scheduled_at": in_seconds(600)})

    async def one_chunk() -> AsyncIterator[bytes]:
        yield small

    status, answer = await server.request("POST", "/api/calls", "alice", data=one_chunk())
    assert status == 201, answer


async def test_unknown_routes_and_methods_get_the_error_body(server: RunningServer) -> None:
    status, body = await server.request("GET", "/api/nothing-here", "alice")
    assert status == 404
    assert_error(body, "not_found")
    status, body = await server.request("PUT", "/api/calls", "alice", json={})
    assert status == 405
    assert_error(body, "invalid")
    status, body = await server.request("GET", "/api/calls/" + "9" * 30, "alice")
    assert status in (400, 404), body
    assert body["ok"] is False and body["error"]["code"] in ("invalid", "not_found")


@pytest.mark.parametrize(
    "when", ["1796109290", 1796109290, 1796109290.5, "2030-01-01T00:00:00", "2030-01-01", ""]
)
async def test_scheduled_at_is_iso_8601_with_a_zone_or_invalid(
    server: RunningServer, when: Any
) -> None:
    """F13: epoch seconds, as a string or a number, are refused like a naive
    time, when booking a call and on a special gift alike."""
    status, answer = await server.request(
        "POST", "/api/calls", "alice", json={"partner_id": "bob", "scheduled_at": when}
    )
    assert status == 400, answer
    assert_error(answer, "invalid")
    gift = {"receiver_id": "bob", "kind": "special", "message": "", "scheduled_at": when}
    status, answer = await server.request("POST", "/api/gifts", "alice", json=gift)
    assert status == 400, answer
    assert_error(answer, "invalid")
    status, listed = await server.request("GET", "/api/calls", "alice")
    assert status == 200 and listed["calls"] == [], listed
