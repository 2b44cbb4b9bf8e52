"""The PresenceStore contract, run against every backend."""

from __future__ import annotations

from persistence.presence import PresenceStore


async def test_enter_and_members(presence: PresenceStore) -> None:
    assert await presence.members(1) == {}
    assert await presence.enter(1, "alice", "sid-a") is None
    assert await presence.enter(1, "bob", "sid-b") is None
    assert await presence.enter(2, "alice", "sid-a2") is None
    assert await presence.members(1) == {"alice": "sid-a", "bob": "sid-b"}
    assert await presence.members(2) == {"alice": "sid-a2"}


async def test_entering_again_replaces_and_reports_the_old_connection(
    presence: PresenceStore,
) -> None:
    await presence.enter(1, "alice", "old")
    assert await presence.enter(1, "alice", "new") == "old"
    assert await presence.members(1) == {"alice": "new"}
    assert await presence.enter(1, "alice", "new") is None  # the same connection again


async def test_a_replaced_connection_leaving_does_not_evict_its_successor(
    presence: PresenceStore,
) -> None:
    await presence.enter(1, "alice", "old")
    await presence.enter(1, "alice", "new")
    await presence.enter(1, "bob", "sid-b")

    assert await presence.leave(1, "alice", "old") is False
    assert await presence.members(1) == {"alice": "new", "bob": "sid-b"}
    assert await presence.leave(1, "alice", "new") is True
    assert await presence.members(1) == {"bob": "sid-b"}
    assert await presence.leave(1, "alice", "new") is False
    assert await presence.leave(2, "bob", "sid-b") is False
    assert await presence.members(1) == {"bob": "sid-b"}


async def test_clear_empties_one_call_only(presence: PresenceStore) -> None:
    await presence.enter(1, "alice", "a1")
    await presence.enter(1, "bob", "b1")
    await presence.enter(2, "alice", "a2")
    await presence.clear(1)
    await presence.clear(99)
    assert await presence.members(1) == {}
    assert await presence.members(2) == {"alice": "a2"}
    assert await presence.enter(1, "alice", "a3") is None
