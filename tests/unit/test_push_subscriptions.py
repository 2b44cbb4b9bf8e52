"""The push subscriptions' use cases over the memory store, without HTTP:
the newest ``keep`` kept per user, and unsubscribing what is not yours."""

from __future__ import annotations

import pytest

from persistence.push import MemoryPushStore
from signaling.errors import ApiError
from signaling.push.subscriptions import PushSubscriptions

P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
AUTH = "tBHItJI5svbpez7KI4CCXg"


def endpoint(n: int) -> str:
    return f"https://push.example.net/send/{n}"


async def test_subscribing_stores_the_subscription() -> None:
    store = MemoryPushStore()
    made = await PushSubscriptions(store=store, keep=3).subscribe(
        "alice", endpoint(1), P256DH, AUTH
    )
    assert (made.user_id, made.endpoint, made.p256dh, made.auth) == (
        "alice",
        endpoint(1),
        P256DH,
        AUTH,
    )
    assert await store.list_for_user("alice") == [made]


async def test_the_newest_are_kept() -> None:
    store = MemoryPushStore()
    subscriptions = PushSubscriptions(store=store, keep=3)
    for n in range(5):
        await subscriptions.subscribe("alice", endpoint(n), P256DH, AUTH)
    await subscriptions.subscribe("bob", endpoint(9), P256DH, AUTH)
    kept = await store.list_for_user("alice")
    assert [s.endpoint for s in kept] == [endpoint(2), endpoint(3), endpoint(4)]
    assert len(await store.list_for_user("bob")) == 1  # another user's count on its own


async def test_unsubscribing_removes_it_once() -> None:
    store = MemoryPushStore()
    subscriptions = PushSubscriptions(store=store, keep=3)
    await subscriptions.subscribe("alice", endpoint(1), P256DH, AUTH)
    await subscriptions.unsubscribe("alice", endpoint(1))
    assert await store.list_for_user("alice") == []
    with pytest.raises(ApiError) as raised:
        await subscriptions.unsubscribe("alice", endpoint(1))
    assert (raised.value.code, raised.value.message) == ("not_found", "no such subscription")


async def test_another_users_endpoint_is_not_found() -> None:
    store = MemoryPushStore()
    subscriptions = PushSubscriptions(store=store, keep=3)
    made = await subscriptions.subscribe("alice", endpoint(1), P256DH, AUTH)
    with pytest.raises(ApiError, match="no such subscription"):
        await subscriptions.unsubscribe("bob", endpoint(1))
    with pytest.raises(ApiError, match="no such subscription"):
        await subscriptions.unsubscribe("alice", endpoint(2))
    assert await store.list_for_user("alice") == [made]
