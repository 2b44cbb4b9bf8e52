"""The REST side of calls, notifications and questions, against a real server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jwt
import pytest

from signaling.auth import mint_token
from signaling.questions import BUILT_IN_QUESTIONS
from tests.functional.conftest import (
    Lab,
    PeerFactory,
    assert_call_shape,
    assert_error,
    call_state,
    parse_iso,
    to_live,
)
from tests.support import SECRET, RunningServer, in_seconds

CallBody = dict[str, Any]


async def post_call(server: RunningServer, user_id: str, body: Any) -> tuple[int, Any]:
    return await server.request("POST", "/api/calls", user_id, json=body)


async def test_scheduling_answers_201_with_the_call(server: RunningServer) -> None:
    when = datetime.now(UTC) + timedelta(minutes=2)
    status, body = await post_call(
        server, "alice", {"partner_id": "bob", "scheduled_at": when.isoformat()}
    )
    assert status == 201, body
    assert set(body) == {"ok", "call"} and body["ok"] is True
    call = body["call"]
    assert_call_shape(call)
    assert (call["caller_id"], call["callee_id"]) == ("alice", "bob")
    assert abs(parse_iso(call["scheduled_at"]) - when) < timedelta(milliseconds=1)
    # notify_before is 300 s: the join window is open already.
    assert call["state"] == "open"
    assert (call["started_at"], call["ended_at"], call["end_reason"]) == (None, None, None)
    assert await call_state(server, "bob", call["id"]) == call


async def test_a_time_with_another_offset_comes_back_as_the_same_instant_in_utc(
    server: RunningServer,
) -> None:
    when = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=250_000)
    local = when.astimezone(timezone(timedelta(hours=2)))
    status, body = await post_call(
        server, "alice", {"partner_id": "bob", "scheduled_at": local.isoformat()}
    )
    assert status == 201, body
    assert parse_iso(body["call"]["scheduled_at"]) == when
    listed = (await server.request("GET", "/api/calls", "bob"))[1]["calls"]
    assert [parse_iso(c["scheduled_at"]) for c in listed] == [when]


async def test_a_call_beyond_the_window_stays_scheduled(lab: Lab) -> None:
    server = await lab.start(notify_before_s=5)
    call = await server.schedule("alice", "bob", in_s=3600)
    assert call["state"] == "scheduled"


def _at(delta_s: float) -> str:
    return in_seconds(delta_s)


INVALID_BODIES: dict[str, Any] = {
    "past": {"partner_id": "bob", "scheduled_at": _at(-60)},
    "self as partner": {"partner_id": "alice", "scheduled_at": _at(86400)},
    "naive datetime": {
        "partner_id": "bob",
        "scheduled_at": (datetime.now(UTC) + timedelta(minutes=5)).replace(tzinfo=None).isoformat(),
    },
    "not a date": {"partner_id": "bob", "scheduled_at": "tomorrow at noon"},
    "missing partner": {"scheduled_at": _at(86400)},
    "missing time": {"partner_id": "bob"},
    "empty object": {},
    "partner is a list": {"partner_id": ["bob"], "scheduled_at": _at(86400)},
    "partner is null": {"partner_id": None, "scheduled_at": _at(86400)},
    "partner is a bool": {"partner_id": True, "scheduled_at": _at(86400)},
    "partner is empty": {"partner_id": "", "scheduled_at": _at(86400)},
    "time is an object": {"partner_id": "bob", "scheduled_at": {"at": _at(86400)}},
    "time is a bool": {"partner_id": "bob", "scheduled_at": True},
    "time is a number": {"partner_id": "bob", "scheduled_at": int(time.time()) + 3600},
}


@pytest.mark.parametrize("body", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
async def test_scheduling_rejects_a_bad_body(server: RunningServer, body: CallBody) -> None:
    status, answer = await post_call(server, "alice", body)
    assert status == 400, answer
    assert_error(answer, "invalid")
    assert (await server.request("GET", "/api/calls", "alice"))[1]["calls"] == []


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"{", b"[1, 2]", b'"a string"', b"42", b"null", b""],
    ids=["text", "truncated", "array", "string", "number", "null", "empty"],
)
async def test_scheduling_rejects_a_body_that_is_not_a_json_object(
    server: RunningServer, raw: bytes
) -> None:
    status, answer = await server.request(
        "POST", "/api/calls", "alice", data=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 400, answer
    assert_error(answer, "invalid")


async def test_the_list_holds_only_my_calls_newest_first(server: RunningServer) -> None:
    first = await server.schedule("alice", "bob", in_s=60)
    other = await server.schedule("carol", "bob", in_s=90)
    second = await server.schedule("bob", "alice", in_s=120)
    unrelated = await server.schedule("carol", "dave", in_s=30)

    async def ids_of(user_id: str) -> list[int]:
        status, body = await server.request("GET", "/api/calls", user_id)
        assert status == 200 and body["ok"] is True, body
        for call in body["calls"]:
            assert_call_shape(call)
        return [c["id"] for c in body["calls"]]

    assert await ids_of("alice") == [second["id"], first["id"]]
    assert await ids_of("bob") == [second["id"], other["id"], first["id"]]
    assert await ids_of("dave") == [unrelated["id"]]
    assert await ids_of("erin") == []


async def test_a_call_is_visible_to_its_participants_only(server: RunningServer) -> None:
    call = await server.schedule("alice", "bob")
    for user_id in ("alice", "bob"):
        assert (await call_state(server, user_id, call["id"]))["id"] == call["id"]
    status, body = await server.request("GET", f"/api/calls/{call['id']}", "carol")
    assert status == 404
    assert_error(body, "not_found")
    status, body = await server.request("GET", f"/api/calls/{call['id'] + 1000}", "alice")
    assert status == 404
    assert_error(body, "not_found")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("bad_id", ["abc", "1.5", "-1", "1e3", "0x10"])
async def test_a_call_id_in_the_path_must_be_an_integer(
    server: RunningServer, method: str, bad_id: str
) -> None:
    await server.schedule("alice", "bob")
    status, body = await server.request(method, f"/api/calls/{bad_id}", "alice")
    assert status == 400, body
    assert_error(body, "invalid")


async def test_cancelling_tells_both_connected_users(
    server: RunningServer, peer: PeerFactory
) -> None:
    call = await server.schedule("alice", "bob")
    alice, bob, carol = await peer("alice"), await peer("bob"), await peer("carol")
    await alice.join(call["id"])  # one is in the call, the other only connected
    status, body = await server.request("DELETE", f"/api/calls/{call['id']}", "bob")
    assert status == 200, body
    assert body["ok"] is True
    cancelled = body["call"]
    assert cancelled["state"] == "cancelled" and cancelled["end_reason"] == "cancelled"
    assert cancelled["ended_at"] is not None and cancelled["started_at"] is None
    expected = {"call_id": call["id"], "reason": "cancelled"}
    assert await alice.take("ended") == expected
    assert await bob.take("ended") == expected
    assert await call_state(server, "alice", call["id"]) == cancelled
    await carol.quiet()

    status, body = await server.request("DELETE", f"/api/calls/{call['id']}", "alice")
    assert status == 409
    assert_error(body, "ended")
    assert_error(await bob.emit("join", {"call_id": call["id"]}), "ended")


async def test_only_a_participant_may_cancel(server: RunningServer) -> None:
    call = await server.schedule("alice", "bob")
    status, body = await server.request("DELETE", f"/api/calls/{call['id']}", "carol")
    assert status == 404
    assert_error(body, "not_found")
    assert (await call_state(server, "alice", call["id"]))["state"] == "open"


async def test_a_live_call_cannot_be_cancelled_and_an_ended_one_neither(
    server: RunningServer, peer: PeerFactory
) -> None:
    call = await server.schedule("alice", "bob")
    alice, bob = await peer("alice"), await peer("bob")
    await to_live(alice, bob, call["id"])
    status, body = await server.request("DELETE", f"/api/calls/{call['id']}", "alice")
    assert status == 409
    assert_error(body, "conflict")
    assert (await call_state(server, "bob", call["id"]))["state"] == "live"

    assert (await alice.take("ended"))["reason"] == "time_limit"
    status, body = await server.request("DELETE", f"/api/calls/{call['id']}", "bob")
    assert status == 409
    assert_error(body, "ended")
    assert (await call_state(server, "bob", call["id"]))["end_reason"] == "time_limit"


def _bad_authorizations() -> dict[str, dict[str, str]]:
    later = int(time.time()) + 3600
    other_secret = "another-secret-that-is-also-long-enough!!"
    return {
        "missing": {},
        "garbage": {"Authorization": "Bearer not-a-jwt"},
        "empty bearer": {"Authorization": "Bearer "},
        "no scheme": {"Authorization": mint_token(SECRET, "alice")},
        "basic": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        "expired": {"Authorization": f"Bearer {mint_token(SECRET, 'alice', ttl_s=-60)}"},
        "wrong secret": {"Authorization": f"Bearer {mint_token(other_secret, 'alice')}"},
        "no exp": {"Authorization": f"Bearer {jwt.encode({'sub': 'alice'}, SECRET)}"},
        "no sub": {"Authorization": f"Bearer {jwt.encode({'exp': later}, SECRET)}"},
        "alg none": {
            "Authorization": "Bearer "
            + jwt.encode({"sub": "alice", "exp": later}, "", algorithm="none")
        },
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/calls", {"partner_id": "bob", "scheduled_at": _at(600)}),
        ("GET", "/api/calls", None),
        ("GET", "/api/calls/1", None),
        ("DELETE", "/api/calls/1", None),
        ("GET", "/api/notifications", None),
        ("GET", "/api/questions/random", None),
    ],
)
async def test_every_route_wants_a_valid_token(
    server: RunningServer, method: str, path: str, body: CallBody | None
) -> None:
    await server.schedule("alice", "bob")  # call 1 exists
    for name, headers in _bad_authorizations().items():
        status, answer = await server.request(method, path, headers=headers, json=body)
        assert status == 401, (name, answer)
        assert_error(answer, "unauthorized")
    assert (await call_state(server, "alice", 1))["state"] == "open"  # nothing changed


async def test_notifications_appear_for_both_users_when_the_window_opens(lab: Lab) -> None:
    server = await lab.start(notify_before_s=2)
    alice = await lab.connect(server, "alice")  # only to know when the window opened
    call = await server.schedule("alice", "bob", in_s=3.2)

    async def notifications(user_id: str) -> list[dict[str, Any]]:
        status, body = await server.request("GET", "/api/notifications", user_id)
        assert status == 200 and body["ok"] is True, body
        return list(body["notifications"])

    assert await notifications("alice") == []
    assert await notifications("bob") == []
    await alice.take("call_soon")
    for user_id, partner_id in (("alice", "bob"), ("bob", "alice")):
        entries = await notifications(user_id)
        assert len(entries) == 1, entries
        entry = entries[0]
        assert set(entry) == {"id", "kind", "call_id", "payload", "created_at"}, entry
        assert entry["kind"] == "call_soon" and entry["call_id"] == call["id"]
        assert entry["payload"] == {
            "call_id": call["id"],
            "scheduled_at": call["scheduled_at"],
            "partner_id": partner_id,
        }
        parse_iso(entry["created_at"])
    assert await notifications("carol") == []


async def test_a_random_question_comes_from_the_bank(server: RunningServer) -> None:
    for _ in range(5):
        status, body = await server.request("GET", "/api/questions/random", "alice")
        assert status == 200, body
        assert body["ok"] is True and set(body) == {"ok", "question"}
        question = body["question"]
        assert set(question) == {"id", "text"}
        assert isinstance(question["id"], int) and question["text"] in BUILT_IN_QUESTIONS
