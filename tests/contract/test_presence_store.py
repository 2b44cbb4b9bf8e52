"""The PresenceStore contract, run against every backend: in process memory,
Redis (the session's own server, the ``redis_url`` fixture; each test under a
prefix of its own), and the affine store of a cluster, both where the process
is every call's home (memory) and where another live process is (the call is
shared on first use, then in Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from persistence.affine import AffinePresenceStore
from persistence.memory import MemoryPresenceStore
from persistence.presence import CallLocks, Entered, PresenceStore
from persistence.redis import ProcessBeacon, RedisPresenceStore

#: Every call id the contract's tests use.
CALL_IDS = (1, 2, 3, 4, 99)


async def open_affine(
    stack: contextlib.AsyncExitStack, url: str, prefix: str
) -> AffinePresenceStore:
    """A cluster process's presence (its beacon and store), closed by ``stack``."""
    beacon = await ProcessBeacon.open(url, prefix)
    stack.push_async_callback(beacon.close)
    store = await AffinePresenceStore.open(url, prefix, beacon)
    stack.push_async_callback(store.close)
    return store


@pytest.fixture(params=["memory", "redis", "affine", "affine-shared"])
async def presence(request: pytest.FixtureRequest) -> AsyncIterator[PresenceStore]:
    """Overrides the SQL-parametrized fixture: presence has backends of its own."""
    if request.param == "memory":
        yield MemoryPresenceStore()
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"test-{uuid.uuid4().hex}"
    async with contextlib.AsyncExitStack() as stack:
        store: PresenceStore
        if request.param == "redis":
            store = RedisPresenceStore.from_url(url, prefix=prefix)
            stack.push_async_callback(store.close)
        else:
            store = await open_affine(stack, url, prefix)
        if request.param == "affine-shared":
            home = await open_affine(stack, url, prefix)
            for call_id in CALL_IDS:
                await home.members(call_id)  # claims it: the store under test must ask
        try:
            await store.ping()
        except OSError as exc:
            pytest.fail(f"Redis does not answer at {url}: {exc}")
        yield store
        for call_id in CALL_IDS:
            await store.clear(call_id, ("alice", "bob"))


async def taken(presence: PresenceStore, call_id: int, user_id: str) -> list[dict[str, Any]]:
    """The signals held for the user, taken as the user enters the call."""
    return list((await presence.enter(call_id, user_id, f"sid-{user_id}")).held)


async def test_enter_and_members(presence: PresenceStore) -> None:
    assert await presence.members(1) == {}
    assert await presence.enter(1, "alice", "sid-a") == Entered(None, {"alice": "sid-a"})
    both = {"alice": "sid-a", "bob": "sid-b"}
    assert await presence.enter(1, "bob", "sid-b") == Entered(None, both)
    assert await presence.enter(2, "alice", "sid-a2") == Entered(None, {"alice": "sid-a2"})
    assert await presence.members(1) == {"alice": "sid-a", "bob": "sid-b"}
    assert await presence.members(2) == {"alice": "sid-a2"}


async def test_entering_again_replaces_and_reports_the_old_connection(
    presence: PresenceStore,
) -> None:
    await presence.enter(1, "alice", "old")
    assert await presence.enter(1, "alice", "new") == Entered("old", {"alice": "new"})
    assert await presence.members(1) == {"alice": "new"}
    # The same connection again replaces nothing.
    assert await presence.enter(1, "alice", "new") == Entered(None, {"alice": "new"})


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
    await presence.clear(1, ("alice", "bob"))
    await presence.clear(99, ("alice", "bob"))
    assert await presence.members(1) == {}
    assert await presence.members(2) == {"alice": "a2"}
    assert (await presence.enter(1, "alice", "a3")).replaced is None


async def connected(presence: PresenceStore, call_id: int, user_id: str) -> frozenset[str]:
    return (await presence.mark_connected(call_id, user_id))[0]


async def test_connected_flags_accumulate_and_reset(presence: PresenceStore) -> None:
    assert await connected(presence, 1, "alice") == {"alice"}
    assert await connected(presence, 1, "alice") == {"alice"}
    assert await connected(presence, 1, "bob") == {"alice", "bob"}
    assert await connected(presence, 2, "carol") == {"carol"}
    await presence.reset_connected(1)
    assert await connected(presence, 1, "bob") == {"bob"}
    assert await connected(presence, 2, "dave") == {"carol", "dave"}


async def test_marking_connected_also_answers_who_is_in_the_call(
    presence: PresenceStore,
) -> None:
    await presence.enter(1, "alice", "a1")
    assert await presence.mark_connected(1, "alice") == (frozenset({"alice"}), {"alice": "a1"})
    await presence.enter(1, "bob", "b1")
    both = {"alice": "a1", "bob": "b1"}
    assert await presence.mark_connected(1, "bob") == (frozenset({"bob"}), both)
    assert await presence.mark_connected(2, "carol") == (frozenset({"carol"}), {})


async def test_entering_and_leaving_forget_who_was_connected(presence: PresenceStore) -> None:
    """A user who (re)joins or leaves starts a new negotiation for the call."""
    await presence.enter(1, "alice", "a1")
    await presence.enter(1, "bob", "b1")
    await presence.enter(2, "carol", "c1")
    await presence.mark_connected(1, "alice")
    await presence.mark_connected(1, "bob")
    await presence.mark_connected(2, "carol")
    await presence.enter(1, "alice", "a2")  # a reconnection replaces a1
    assert await connected(presence, 1, "bob") == {"bob"}
    assert await presence.leave(1, "alice", "a1") is False  # replaced: changes nothing
    assert await connected(presence, 1, "alice") == {"alice", "bob"}
    assert await presence.leave(1, "alice", "a2") is True
    assert await connected(presence, 1, "bob") == {"bob"}
    assert await connected(presence, 2, "dave") == {"carol", "dave"}  # another call's stay


async def test_held_signals_come_back_in_order_once_and_are_bounded(
    presence: PresenceStore,
) -> None:
    for n in range(3):
        assert await presence.hold(1, "bob", {"n": n, "sdp": "v=0"}, limit=3) is True
    assert await presence.hold(1, "bob", {"n": 3}, limit=3) is False  # full: nothing stored
    assert await presence.hold(1, "alice", {"n": 0}, limit=3) is True
    assert await taken(presence, 1, "bob") == [{"n": n, "sdp": "v=0"} for n in range(3)]
    assert await taken(presence, 1, "bob") == []
    assert await taken(presence, 1, "alice") == [{"n": 0}]


async def test_held_signals_are_capped_in_bytes_per_sender_across_calls(
    presence: PresenceStore,
) -> None:
    """F5: a sender's held signals weigh their JSON length, summed over every
    call; past ``max_bytes`` nothing more is held until some are released."""
    signal = {"from": "mallory", "sdp": "x" * 90}
    weight = len(orjson.dumps(signal))
    for call_id in (1, 2, 3):
        assert await presence.hold(
            call_id, f"ghost{call_id}", signal, 64, sender="mallory", max_bytes=3 * weight
        )
    assert await presence.held_bytes("mallory") == 3 * weight
    # A fourth call's partner is not the same user, but the sender is.
    assert not await presence.hold(4, "ghost4", signal, 64, sender="mallory", max_bytes=3 * weight)
    # Someone else is not affected, and without a cap nothing is refused.
    other = {"from": "alice", "sdp": "y"}
    assert await presence.hold(4, "bob", other, 64, sender="alice", max_bytes=3 * weight)
    assert await presence.hold(4, "ghost4", signal, 64, sender="mallory")
    assert await presence.held_bytes("mallory") == 4 * weight
    # A release and a clear give the weight back.
    assert await taken(presence, 1, "ghost1") == [signal]
    await presence.clear(2, ("mallory", "ghost2"))
    assert await presence.held_bytes("mallory") == 2 * weight
    await presence.clear(3, ("mallory", "ghost3"))
    assert await taken(presence, 4, "ghost4") == [signal]
    assert await presence.held_bytes("mallory") == 0
    assert await presence.held_bytes("alice") == len(orjson.dumps(other))
    assert await taken(presence, 4, "bob") == [other]
    assert await presence.held_bytes("alice") == 0


async def test_clear_forgets_connected_flags_and_held_signals(presence: PresenceStore) -> None:
    await presence.enter(1, "alice", "a1")
    await presence.mark_connected(1, "alice")
    await presence.hold(1, "bob", {"n": 1}, limit=5)
    await presence.hold(2, "bob", {"n": 2}, limit=5)
    assert await presence.clear(1, ("alice", "bob")) == {"alice": "a1"}  # who was in it
    assert await presence.clear(1, ("alice", "bob")) == {}
    assert await presence.members(1) == {}
    assert await connected(presence, 1, "bob") == {"bob"}
    assert await taken(presence, 1, "bob") == []
    assert await taken(presence, 2, "bob") == [{"n": 2}]


async def test_the_call_lock_still_excludes_after_the_call_is_cleared(
    presence: PresenceStore,
) -> None:
    """A departure that waits for the lock while the call ends (``clear``)
    must still wait for the holder."""
    order: list[str] = []
    inside = asyncio.Event()

    async def first() -> None:
        async with presence.lock(1):
            inside.set()
            await asyncio.sleep(0.05)
            order.append("first out")

    async def second() -> None:
        await inside.wait()
        await presence.clear(1, ("alice", "bob"))
        async with presence.lock(1):
            order.append("second in")

    await asyncio.gather(first(), second())
    assert order == ["first out", "second in"]


def test_call_locks_are_kept_only_while_held_or_awaited() -> None:
    locks = CallLocks()

    async def scenario() -> None:
        async with locks.hold(1):
            waiter = asyncio.ensure_future(_hold_briefly(locks, 1))
            await asyncio.sleep(0)
            assert len(locks) == 1  # one lock, shared by holder and waiter
        await waiter
        assert len(locks) == 0

    asyncio.run(scenario())


async def _hold_briefly(locks: CallLocks, call_id: int) -> None:
    async with locks.hold(call_id):
        await asyncio.sleep(0)


async def test_the_call_lock_serializes_holders(presence: PresenceStore) -> None:
    inside: list[str] = []
    overlaps: list[bool] = []

    async def hold_lock(name: str) -> None:
        async with presence.lock(1):
            overlaps.append(bool(inside))
            inside.append(name)
            await asyncio.sleep(0.05)
            inside.remove(name)

    await asyncio.gather(*(hold_lock(f"t{n}") for n in range(4)))
    assert overlaps == [False, False, False, False]
    async with presence.lock(2):  # another call's lock is independent
        pass


@pytest.fixture(params=["redis", "affine"])
async def two_processes(
    request: pytest.FixtureRequest, redis_url: str
) -> AsyncIterator[tuple[PresenceStore, PresenceStore]]:
    """The presence of two server processes on one Redis: both always in
    Redis, or each call kept by its home until the other needs it."""
    prefix = f"test-{uuid.uuid4().hex}"
    async with contextlib.AsyncExitStack() as stack:
        stores: list[PresenceStore] = []
        for _ in range(2):
            if request.param == "redis":
                store = RedisPresenceStore.from_url(redis_url, prefix=prefix)
                stack.push_async_callback(store.close)
                stores.append(store)
            else:
                stores.append(await open_affine(stack, redis_url, prefix))
        yield stores[0], stores[1]
        await stores[0].clear(1, ("alice", "bob"))


async def test_two_processes_share_presence_and_the_lock(
    two_processes: tuple[PresenceStore, PresenceStore],
) -> None:
    one, two = two_processes
    await one.enter(1, "alice", "sid-on-1")
    both = {"alice": "sid-on-1", "bob": "sid-on-2"}
    assert await two.enter(1, "bob", "sid-on-2") == Entered(None, both)
    assert await one.members(1) == {"alice": "sid-on-1", "bob": "sid-on-2"}
    await two.hold(1, "alice", {"n": 1}, limit=2)
    assert (await one.enter(1, "alice", "sid-on-1")).held == ({"n": 1},)
    order: list[str] = []

    async def locked(store: PresenceStore, name: str) -> None:
        async with store.lock(1):
            order.append(f"{name}-in")
            await asyncio.sleep(0.05)
            order.append(f"{name}-out")

    await asyncio.gather(locked(one, "one"), locked(two, "two"))
    assert order in (
        ["one-in", "one-out", "two-in", "two-out"],
        ["two-in", "two-out", "one-in", "one-out"],
    )
