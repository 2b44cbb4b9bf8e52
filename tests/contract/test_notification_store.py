"""The NotificationStore contract, run against every backend."""

from __future__ import annotations

from datetime import timedelta

from persistence.calls import NotificationStore
from persistence.models import Notification, utcnow
from signaling.wire import notification_wire


async def test_added_notifications_list_newest_first_per_user(
    notifications: NotificationStore,
) -> None:
    added = [
        await notifications.add("alice", "call_soon", 1, {"call_id": 1, "n": 1}),
        await notifications.add("bob", "call_soon", 1, {"call_id": 1, "n": 2}),
        await notifications.add("alice", "gift", None, {"nested": {"list": [1, "two"]}}),
        await notifications.add("alice", "call_soon", 3, {"call_id": 3}),
    ]

    alice = await notifications.list_for_user("alice")
    assert alice == [added[3], added[2], added[0]]
    assert await notifications.list_for_user("bob") == [added[1]]
    assert await notifications.list_for_user("carol") == []
    assert await notifications.list_for_user("alice", limit=2) == [added[3], added[2]]


async def test_a_notification_keeps_its_fields(notifications: NotificationStore) -> None:
    before = utcnow()
    payload = {"call_id": 7, "scheduled_at": "2030-01-02T03:04:05.678Z", "partner_id": "bob"}
    added = await notifications.add("alice", "call_soon", 7, payload)
    payload["call_id"] = 8  # the store keeps its own copy

    (read,) = await notifications.list_for_user("alice")
    assert (read.id, read.user_id, read.kind, read.call_id) == (added.id, "alice", "call_soon", 7)
    assert read.payload == added.payload == {**payload, "call_id": 7}
    assert read.created_at.utcoffset() == timedelta(0)
    assert abs(read.created_at - added.created_at) < timedelta(milliseconds=1)
    assert before - timedelta(milliseconds=1) <= read.created_at <= utcnow()
    assert notification_wire(read)["created_at"].endswith("Z")


async def test_notifications_are_paged_by_id(notifications: NotificationStore) -> None:
    """Newest first, ``limit`` at most, ``before_id`` the cursor: every
    notification is reachable however many others arrive."""
    added = [await notifications.add("alice", "spam", None, {"n": i}) for i in range(5)]
    other = await notifications.add("bob", "call_soon", 1, {})
    want = [n.id for n in reversed(added)]

    def page_ids(items: list[Notification]) -> list[int]:
        return [n.id for n in items]

    assert page_ids(await notifications.list_for_user("alice", 2)) == want[:2]
    assert page_ids(await notifications.list_for_user("alice", 2, want[1])) == want[2:4]
    assert page_ids(await notifications.list_for_user("alice", 2, want[3])) == want[4:]
    assert await notifications.list_for_user("alice", 2, want[4]) == []
    assert page_ids(await notifications.list_for_user("alice", 100, other.id + 1)) == want
