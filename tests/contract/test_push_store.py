"""The PushStore contract, run against every backend."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from persistence.factory import Stores
from persistence.models import utcnow
from persistence.push import PushStore
from signaling.wire import subscription_wire

P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
AUTH = "tBHItJI5svbpez7KI4CCXg"


@pytest.fixture
def push(stores: Stores) -> PushStore:
    return stores.push


def endpoint(n: int) -> str:
    return f"https://push.example.net/send/{n}"


async def test_a_subscription_keeps_its_fields(push: PushStore) -> None:
    before = utcnow()
    added = await push.add("alice", endpoint(1), P256DH, AUTH, keep=5)

    (read,) = await push.list_for_user("alice")
    assert abs(read.created_at - added.created_at) < timedelta(milliseconds=1)
    assert (read.id, read.user_id, read.endpoint, read.p256dh, read.auth) == (
        added.id,
        "alice",
        endpoint(1),
        P256DH,
        AUTH,
    )
    assert read.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(milliseconds=1) <= read.created_at <= utcnow()
    assert subscription_wire(read)["created_at"].endswith("Z")
    assert await push.list_for_user("bob") == []


async def test_the_oldest_goes_first_beyond_keep(push: PushStore) -> None:
    added = [await push.add("alice", endpoint(n), P256DH, AUTH, keep=3) for n in range(5)]
    other = await push.add("bob", endpoint(9), P256DH, AUTH, keep=3)

    assert [s.id for s in await push.list_for_user("alice")] == [s.id for s in added[2:]]
    assert [s.id for s in await push.list_for_user("bob")] == [other.id]


async def test_posting_an_endpoint_again_replaces_it_whoever_had_it(push: PushStore) -> None:
    first = await push.add("alice", endpoint(1), P256DH, "a" * 22, keep=5)
    again = await push.add("alice", endpoint(1), P256DH, AUTH, keep=5)
    assert first.auth != again.auth
    assert [(s.id, s.auth) for s in await push.list_for_user("alice")] == [(again.id, AUTH)]

    # Another user logs in on that browser: the endpoint is theirs now.
    bobs = await push.add("bob", endpoint(1), P256DH, AUTH, keep=5)
    assert await push.list_for_user("alice") == []
    assert [s.id for s in await push.list_for_user("bob")] == [bobs.id]


async def test_concurrent_posts_of_one_endpoint_leave_one(push: PushStore) -> None:
    await asyncio.gather(*(push.add("alice", endpoint(1), P256DH, AUTH, keep=5) for _ in range(4)))
    assert len(await push.list_for_user("alice")) == 1


async def test_remove_only_the_owners_subscription(push: PushStore) -> None:
    await push.add("alice", endpoint(1), P256DH, AUTH, keep=5)
    assert not await push.remove("bob", endpoint(1))
    assert not await push.remove("alice", endpoint(2))
    assert await push.remove("alice", endpoint(1))
    assert not await push.remove("alice", endpoint(1))
    assert await push.list_for_user("alice") == []


async def test_discard_by_id(push: PushStore) -> None:
    gone = await push.add("alice", endpoint(1), P256DH, AUTH, keep=5)
    kept = await push.add("alice", endpoint(2), P256DH, AUTH, keep=5)
    await push.discard(gone.id)
    await push.discard(gone.id)  # a second 410 for it changes nothing
    assert [s.id for s in await push.list_for_user("alice")] == [kept.id]


async def test_a_delivery_key_is_claimed_once(push: PushStore) -> None:
    results = await asyncio.gather(
        *(push.claim_delivery("call_soon:7:" + "a" * 64) for _ in range(5))
    )
    assert sorted(results) == [False, False, False, False, True]
    assert not await push.claim_delivery("call_soon:7:" + "a" * 64)
    assert await push.claim_delivery("call_soon:7:" + "b" * 64)
    assert await push.claim_delivery("partner_waiting:7:" + "a" * 64)


def strictly_after(instant: datetime) -> datetime:
    """The clock's first reading after ``instant`` (a few microseconds on)."""
    while (now := utcnow()) <= instant:
        pass
    return now


async def test_keys_claimed_before_the_cut_are_pruned(push: PushStore) -> None:
    old = ["call_soon:1:" + "a" * 64, "partner_waiting:1:" + "a" * 64]
    new = "call_soon:2:" + "a" * 64
    for key in old:
        assert await push.claim_delivery(key)
    # Every old key was claimed before the cut, the new one after it.
    cut = strictly_after(utcnow())
    assert await push.claim_delivery(new)

    assert await push.prune_deliveries(cut - timedelta(hours=1)) == 0
    assert await push.prune_deliveries(cut) == 2
    assert await push.prune_deliveries(cut) == 0

    # A pruned key is free again; the kept one still refuses a second claim.
    assert await push.claim_delivery(old[0])
    assert not await push.claim_delivery(new)
