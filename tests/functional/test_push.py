"""Web Push with a real server and the push service of tests/push_service.py:
subscriptions, the push when a call's window opens, exactly once, 404/410,
429 and Retry-After, cancelled calls, and a push service that hangs."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from persistence.models import CallState, utcnow
from signaling.keys import STORES, TIMERS
from signaling.push.routes import PUSH
from signaling.push.vapid import VapidKeys
from tests.functional.conftest import Lab, assert_error, to_live
from tests.push_service import HANG, Browser, FakePushService, Scripted
from tests.support import (
    SECRET,
    Client,
    RunningServer,
    serve_in_child,
    serve_in_process,
    server_settings,
)

SUBJECT = "mailto:ops@giftcall.example"


@pytest.fixture
def vapid() -> VapidKeys:
    return VapidKeys.generate(SUBJECT)


@pytest.fixture
async def push_service(tmp_path: Path, vapid: VapidKeys) -> AsyncIterator[FakePushService]:
    async with FakePushService(tmp_path, vapid.public_key).running() as service:
        yield service
    assert service.problems == []  # the server never sent what a real service refuses


def push_settings(vapid: VapidKeys, service: FakePushService, **overrides: Any) -> dict[str, Any]:
    return {
        "vapid_private_key": vapid.private_key,
        "vapid_subject": SUBJECT,
        "push_ca_file": str(service.cert_file),
        **overrides,
    }


@pytest.fixture
async def server(lab: Lab, vapid: VapidKeys, push_service: FakePushService) -> RunningServer:
    return await lab.start(**push_settings(vapid, push_service, push_subscriptions_max=3))


async def subscribe(server: RunningServer, user_id: str, browser: Browser) -> dict[str, Any]:
    status, body = await server.request(
        "POST", "/api/push/subscriptions", user_id, json=browser.subscription()
    )
    assert status == 201, body
    return dict(body["subscription"])


async def drain(server: RunningServer) -> None:
    assert server.app is not None
    await server.app[PUSH].drain()


# ------------------------------------------------------------ subscriptions


async def test_the_public_key_is_served(server: RunningServer, vapid: VapidKeys) -> None:
    status, body = await server.request("GET", "/api/push/vapid-public-key")
    assert (status, body) == (200, {"ok": True, "public_key": vapid.public_key})


async def test_push_off_says_not_found(lab: Lab) -> None:
    plain = await lab.start()
    status, body = await plain.request("GET", "/api/push/vapid-public-key")
    assert status == 404
    assert_error(body, "not_found")


async def test_subscribe_unsubscribe_and_the_oldest_goes(
    server: RunningServer, push_service: FakePushService
) -> None:
    browsers = [push_service.browser() for _ in range(4)]
    made = [await subscribe(server, "alice", b) for b in browsers]
    assert set(made[0]) == {"id", "endpoint", "created_at"}
    assert made[0]["endpoint"] == browsers[0].endpoint
    assert server.app is not None
    kept = await server.app[STORES].push.list_for_user("alice")
    assert [s.endpoint for s in kept] == [b.endpoint for b in browsers[1:]]  # at most 3

    gone = {"endpoint": browsers[3].endpoint}
    status, body = await server.request("DELETE", "/api/push/subscriptions", "bob", json=gone)
    assert status == 404, body  # not bob's
    status, body = await server.request("DELETE", "/api/push/subscriptions", "alice", json=gone)
    assert (status, body) == (200, {"ok": True})
    status, body = await server.request("DELETE", "/api/push/subscriptions", "alice", json=gone)
    assert_error(body, "not_found")


@pytest.mark.parametrize(
    "change",
    [
        {"endpoint": "http://push.example.net/x"},
        {"endpoint": "https:///nohost"},
        {"endpoint": "https://user:pw@push.example.net/x"},
        {"endpoint": "https://push.example.net/" + "x" * 2100},
        {"keys": {"p256dh": "BAAA", "auth": "tBHItJI5svbpez7KI4CCXg"}},
        # 65 bytes that are not a point on P-256
        {"keys": {"p256dh": "BA" + "A" * 85, "auth": "tBHItJI5svbpez7KI4CCXg"}},
        {"keys": {"p256dh": None, "auth": "tBHItJI5svbpez7KI4CCXg"}},
        {"auth_bytes": 15},
        {"auth_bytes": 17},
        {"keys": None},
        {"extra": 1},
    ],
)
async def test_bad_subscriptions_are_invalid(
    server: RunningServer, push_service: FakePushService, change: dict[str, Any]
) -> None:
    body = push_service.browser().subscription()
    if "auth_bytes" in change:
        body["keys"]["auth"] = "A" * ((change.pop("auth_bytes") * 4 + 2) // 3)
    if isinstance(change.get("keys"), dict):
        change = {"keys": {**body["keys"], **change["keys"]}}
    body.update(change)
    status, answer = await server.request("POST", "/api/push/subscriptions", "alice", json=body)
    assert status == 400, answer
    assert_error(answer, "invalid")


async def test_subscribing_needs_a_token(
    server: RunningServer, push_service: FakePushService
) -> None:
    body = push_service.browser().subscription()
    status, answer = await server.request("POST", "/api/push/subscriptions", json=body)
    assert status == 401
    assert_error(answer, "unauthorized")


# ------------------------------------------------------------------ sending


async def test_the_window_opening_pushes_every_subscription_once(
    server: RunningServer, push_service: FakePushService, vapid: VapidKeys
) -> None:
    alice_phone, alice_laptop, bob = (push_service.browser() for _ in range(3))
    await subscribe(server, "alice", alice_phone)
    await subscribe(server, "alice", alice_laptop)
    await subscribe(server, "bob", bob)

    # Booked inside the notice period: the window opens at once.
    call = await server.schedule("alice", "bob", in_s=60)
    await push_service.wait_for(3)
    # A timer that fires again, and a second announcement of the same notice
    # (as from another process), push nothing more.
    assert server.app is not None
    timers = server.app[TIMERS]
    await timers.fire(call["id"])
    stored = await server.app[STORES].calls.get(call["id"])
    assert stored is not None and stored.state is CallState.OPEN
    server.app[PUSH].window_opened(stored)
    await drain(server)

    assert sorted(r.token for r in push_service.receipts) == sorted(
        b.token for b in (alice_phone, alice_laptop, bob)
    )
    closes_at = stored.closes_at
    for receipt in push_service.receipts:
        partner = "bob" if receipt.token != bob.token else "alice"
        assert receipt.payload == {
            "kind": "call_soon",
            "call_id": call["id"],
            "scheduled_at": call["scheduled_at"],
            "partner_id": partner,
        }
        assert receipt.urgency == "high"
        # The TTL lasts until the join window closes.
        assert 0 < receipt.ttl <= (closes_at - utcnow()).total_seconds() + 1
        assert receipt.claims["aud"] == push_service.origin
        assert receipt.claims["sub"] == SUBJECT


@pytest.mark.parametrize("status", [404, 410])
async def test_a_gone_subscription_is_deleted(
    server: RunningServer, push_service: FakePushService, status: int
) -> None:
    gone, kept = push_service.browser(), push_service.browser()
    await subscribe(server, "bob", gone)
    await subscribe(server, "bob", kept)
    push_service.script(gone, Scripted(status))

    await server.schedule("alice", "bob", in_s=60)
    await push_service.wait_for(2)
    await drain(server)

    assert server.app is not None
    left = await server.app[STORES].push.list_for_user("bob")
    assert [s.endpoint for s in left] == [kept.endpoint]
    assert [r.status for r in push_service.to(gone)] == [status]  # never retried


async def test_429_and_5xx_are_retried_honouring_retry_after(
    server: RunningServer, push_service: FakePushService
) -> None:
    busy, broken = push_service.browser(), push_service.browser()
    await subscribe(server, "bob", busy)
    await subscribe(server, "bob", broken)
    push_service.script(busy, Scripted(429, {"Retry-After": "1"}))
    push_service.script(broken, Scripted(500, {"Retry-After": "0"}), Scripted(503))

    await server.schedule("alice", "bob", in_s=60)
    await push_service.wait_for(5)
    await drain(server)

    assert [r.status for r in push_service.to(busy)] == [429, 201]
    assert [r.status for r in push_service.to(broken)] == [500, 503, 201]
    assert server.app is not None
    assert len(await server.app[STORES].push.list_for_user("bob")) == 2


async def test_a_cancelled_call_pushes_nothing_more(
    server: RunningServer, push_service: FakePushService
) -> None:
    bob = push_service.browser()
    await subscribe(server, "bob", bob)
    push_service.script(bob, Scripted(503, {"Retry-After": "1"}))

    call = await server.schedule("alice", "bob", in_s=60)
    await push_service.wait_for(1)
    status, body = await server.request("DELETE", f"/api/calls/{call['id']}", "alice")
    assert status == 200, body
    await drain(server)
    assert [r.status for r in push_service.to(bob)] == [503]  # the retry found it cancelled

    # A notice that reaches the queue after the cancel is dropped too.
    assert server.app is not None
    stored = await server.app[STORES].calls.get(call["id"])
    assert stored is not None and stored.state is CallState.CANCELLED
    server.app[PUSH].partner_waiting(stored, "bob")
    await drain(server)
    assert len(push_service.to(bob)) == 1


async def test_a_hanging_push_service_does_not_delay_the_call(
    lab: Lab, vapid: VapidKeys, push_service: FakePushService
) -> None:
    server = await lab.start(**push_settings(vapid, push_service, push_timeout_s=60))
    hung = [push_service.browser() for _ in range(2)]
    for user_id, browser in zip(("alice", "bob"), hung, strict=True):
        await subscribe(server, user_id, browser)
        push_service.script(browser, Scripted(HANG))

    call = await server.schedule("alice", "bob", in_s=60)
    await push_service.wait_for(2)  # both pushes are stuck at the push service
    alice, bob = await lab.connect(server, "alice"), await lab.connect(server, "bob")
    live = await to_live(alice, bob, call["id"])
    assert live["call_id"] == call["id"]
    for client in (alice, bob):
        assert await client.take("ended") == {"call_id": call["id"], "reason": "time_limit"}
    # The call ran its whole course while the push service still held both requests.
    assert push_service.hanging == 2
    assert push_service.receipts == []


async def test_your_partner_is_waiting_goes_to_the_absent_user_once(
    server: RunningServer, push_service: FakePushService, lab: Lab
) -> None:
    bob = push_service.browser()
    call = await server.schedule("alice", "bob", in_s=60)
    await drain(server)  # the window's push found no subscription yet
    await subscribe(server, "bob", bob)

    alice = await lab.connect(server, "alice")
    await alice.join(call["id"])
    await alice.ok("leave", call["id"])
    await alice.join(call["id"])  # joining again: still one push
    await push_service.wait_for(1)
    await drain(server)
    (receipt,) = push_service.to(bob)
    assert receipt.payload == {
        "kind": "partner_waiting",
        "call_id": call["id"],
        "scheduled_at": call["scheduled_at"],
        "partner_id": "alice",
    }


async def test_two_processes_push_each_notice_once(
    tmp_path: Path, vapid: VapidKeys, push_service: FakePushService
) -> None:
    """Two servers on one database both announce the window: the delivery
    key in the database lets one of them send."""
    shared = {
        **push_settings(vapid, push_service),
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}",
    }
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir()
    two_dir.mkdir()
    async with contextlib.AsyncExitStack() as stack:
        one = await stack.enter_async_context(serve_in_process(server_settings(one_dir, **shared)))
        two = await stack.enter_async_context(serve_in_process(server_settings(two_dir, **shared)))
        browsers = [push_service.browser() for _ in range(2)]
        await subscribe(one, "alice", browsers[0])
        await subscribe(two, "bob", browsers[1])
        call = await one.schedule("alice", "bob", in_s=60)
        assert two.app is not None
        stored = await two.app[STORES].calls.get(call["id"])
        assert stored is not None
        two.app[PUSH].window_opened(stored)
        await push_service.wait_for(2)
        await drain(one)
        await drain(two)
    assert sorted(r.token for r in push_service.receipts) == sorted(b.token for b in browsers)
    assert all(r.status == 201 for r in push_service.receipts)


async def join_alone(server: RunningServer, user_id: str, call_id: int) -> None:
    """Join the call with nobody else there (the partner gets a
    ``partner_waiting`` push), then leave it."""
    client = await Client(server, user_id).connect()
    try:
        joined = await client.emit("join", {"call_id": call_id})
        assert joined["ok"] and not joined["partner_present"], joined
        assert (await client.emit("leave", {"call_id": call_id}))["ok"]
    finally:
        await client.close()


@pytest.mark.timeout(90)
async def test_two_server_processes_push_each_subscription_once(
    tmp_path: Path, vapid: VapidKeys, push_service: FakePushService, shared_database: str
) -> None:
    """Two real server processes on one MariaDB database both watch the call;
    when its window opens every subscription gets one ``call_soon``."""
    env = {
        "SIGNALING_JWT_SECRET": SECRET,
        "SIGNALING_DATABASE_URL": shared_database,
        "SIGNALING_VAPID_PRIVATE_KEY": vapid.private_key,
        "SIGNALING_VAPID_SUBJECT": SUBJECT,
        "SIGNALING_PUSH_CA_FILE": str(push_service.cert_file),
        "SIGNALING_NOTIFY_BEFORE_S": "60",
        # Both processes look for due calls all the time: both race to open the window.
        "SIGNALING_SWEEP_INTERVAL_S": "0.1",
        # One sender each: a process's pushes leave in the order they were queued.
        "SIGNALING_PUSH_WORKERS": "1",
    }
    one, two = server_settings(tmp_path / "one"), server_settings(tmp_path / "two")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    alice_phone, alice_laptop, bob = (push_service.browser() for _ in range(3))
    # The second process starts once the first has migrated the database.
    with serve_in_child(one, env), serve_in_child(two, env):
        first, second = RunningServer(one), RunningServer(two)
        await subscribe(first, "alice", alice_phone)
        await subscribe(second, "alice", alice_laptop)
        await subscribe(second, "bob", bob)

        # The window opens a moment after booking, on whichever process's timer wins.
        call = await first.schedule("alice", "bob", in_s=61)
        await push_service.wait_for(3, timeout=30)

        # A push from each process after that: each sends in order, so once
        # both arrive whatever either had queued for the window has been
        # sent or found its delivery key taken.
        await join_alone(first, "alice", call["id"])
        await push_service.wait_for(4)
        await join_alone(second, "bob", call["id"])
        await push_service.wait_for(6)

    sent = Counter((r.token, r.payload["kind"]) for r in push_service.receipts)
    assert sent == {
        (alice_phone.token, "call_soon"): 1,
        (alice_laptop.token, "call_soon"): 1,
        (bob.token, "call_soon"): 1,
        (bob.token, "partner_waiting"): 1,
        (alice_phone.token, "partner_waiting"): 1,
        (alice_laptop.token, "partner_waiting"): 1,
    }
    assert all(
        r.status == 201 and r.payload["call_id"] == call["id"] for r in push_service.receipts
    )
