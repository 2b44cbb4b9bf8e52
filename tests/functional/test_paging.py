"""Lists that spam cannot hide an item in (paging), and numbers in
paths and queries written only with ASCII digits (F8), against a real server."""

from __future__ import annotations

import pytest

from signaling.keys import STORES
from tests.functional.chat_support import send_gift
from tests.functional.conftest import assert_error
from tests.support import RunningServer


async def test_a_real_gift_stays_reachable_behind_spam(server: RunningServer) -> None:
    status, body = await send_gift(server, "friend", "victim", message="the real one")
    assert status == 201, body
    real = body["gift"]["id"]
    for i in range(7):
        status, body = await send_gift(server, "spammer", "victim", message=f"spam {i}")
        assert status == 201, body
    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        status, body = await server.request(
            "GET", f"/api/gifts?box=received&limit=3{cursor}", "victim"
        )
        assert status == 200, body
        assert len(body["gifts"]) <= 3
        seen += [g["id"] for g in body["gifts"]]
        pages += 1
        if body["next_before_id"] is None:
            break
        assert body["next_before_id"] == body["gifts"][-1]["id"]
        cursor = f"&before_id={body['next_before_id']}"
    assert pages == 3
    assert seen == sorted(seen, reverse=True) and len(seen) == 8 and seen[-1] == real
    # Without a limit: a page of 100, with no cursor when it is not full.
    status, body = await server.request("GET", "/api/gifts?box=received", "victim")
    assert status == 200 and len(body["gifts"]) == 8 and body["next_before_id"] is None, body


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=%C2%B2", "limit=%EF%BC%93", "before_id=%D9%A3", "before_id=-1"],
)
async def test_bad_paging_numbers_are_invalid(server: RunningServer, query: str) -> None:
    status, body = await server.request("GET", f"/api/gifts?box=received&{query}", "victim")
    assert status == 400, body
    assert_error(body, "invalid")


# Superscript two, Arabic-Indic three, fullwidth three: digits to str.isdigit.
NOT_ASCII_DIGITS = ["%C2%B2", "%D9%A3", "%EF%BC%93", "1%C2%B2"]


@pytest.mark.parametrize("raw", NOT_ASCII_DIGITS)
@pytest.mark.parametrize("path", ["/api/calls/{}", "/api/gifts/{}", "/api/chat/rooms/{}/messages"])
async def test_ids_are_only_ascii_digits(server: RunningServer, path: str, raw: str) -> None:
    status, body = await server.request("GET", path.format(raw), "alice")
    assert status == 400, body
    assert_error(body, "invalid")


@pytest.mark.parametrize("raw", NOT_ASCII_DIGITS)
async def test_chat_query_numbers_are_only_ascii_digits(server: RunningServer, raw: str) -> None:
    for name in ("limit", "before_seq"):
        status, body = await server.request(
            "GET", f"/api/chat/rooms/1/messages?{name}={raw}", "alice"
        )
        assert status == 400, body
        assert_error(body, "invalid")


async def test_a_real_call_stays_reachable_behind_120_spam_calls(server: RunningServer) -> None:
    # The real call is the soonest, so newest-scheduled-first puts it last.
    real = (await server.schedule("friend", "victim", in_s=1800))["id"]
    for i in range(120):  # four spammers stay under SIGNALING_CALLS_OPEN_MAX
        await server.schedule(f"spammer{i % 4}", "victim", in_s=3600 + i)
    seen: list[int] = []
    scheduled: list[str] = []
    cursor = ""
    pages = 0
    while True:
        status, body = await server.request("GET", f"/api/calls?limit=50{cursor}", "victim")
        assert status == 200, body
        assert len(body["calls"]) <= 50
        seen += [c["id"] for c in body["calls"]]
        scheduled += [c["scheduled_at"] for c in body["calls"]]
        pages += 1
        if body["next_before"] is None:
            break
        cursor = f"&before={body['next_before']}"
    assert pages == 3
    assert len(seen) == len(set(seen)) == 121 and seen[-1] == real
    assert scheduled == sorted(scheduled, reverse=True)
    # Without a limit: a page of 100 and a cursor to the rest.
    status, body = await server.request("GET", "/api/calls", "victim")
    assert status == 200 and len(body["calls"]) == 100 and body["next_before"], body
    status, body = await server.request("GET", f"/api/calls?before={body['next_before']}", "victim")
    assert status == 200 and body["next_before"] is None, body
    assert [c["id"] for c in body["calls"]] == seen[100:]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=%C2%B2",
        "before=1",
        "before=-1",
        "before=1-%D9%A3",
        "before=x-1",
    ],
)
async def test_bad_call_paging_is_invalid(server: RunningServer, query: str) -> None:
    status, body = await server.request("GET", f"/api/calls?{query}", "victim")
    assert status == 400, body
    assert_error(body, "invalid")


async def test_a_real_notification_stays_reachable_behind_spam(server: RunningServer) -> None:
    assert server.app is not None
    store = server.app[STORES].notifications
    real = (await store.add("victim", "call_soon", None, {"real": True})).id
    for i in range(60):
        await store.add("victim", "spam", None, {"n": i})
    seen: list[int] = []
    cursor = ""
    while True:
        status, body = await server.request("GET", f"/api/notifications?limit=25{cursor}", "victim")
        assert status == 200, body
        assert len(body["notifications"]) <= 25
        seen += [n["id"] for n in body["notifications"]]
        if body["next_before_id"] is None:
            break
        assert body["next_before_id"] == body["notifications"][-1]["id"]
        cursor = f"&before_id={body['next_before_id']}"
    assert seen == sorted(seen, reverse=True) and len(seen) == 61 and seen[-1] == real
    # The default page is 50.
    status, body = await server.request("GET", "/api/notifications", "victim")
    assert status == 200 and len(body["notifications"]) == 50, body
    assert body["next_before_id"] == seen[49]
    for query in ("limit=0", "limit=101", "before_id=%D9%A3"):
        status, body = await server.request("GET", f"/api/notifications?{query}", "victim")
        assert status == 400, body
        assert_error(body, "invalid")
