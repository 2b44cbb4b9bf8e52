"""The cluster's presence: each call in its home process's memory, shared
through Redis only when another process needs it (persistence/affine.py).
Two stores on one Redis stand for two processes; the contract itself runs
against both modes in test_presence_store.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from persistence.affine import AffinePresenceStore
from persistence.presence import Entered, PresenceUnavailableError
from persistence.redis import ProcessBeacon
from tests.contract.test_presence_store import open_affine


@pytest.fixture
async def cluster(redis_url: str) -> AsyncIterator[tuple[str, contextlib.AsyncExitStack]]:
    """A key prefix of the test's own, and a stack that closes what it opens."""
    async with contextlib.AsyncExitStack() as stack:
        yield f"test-{uuid.uuid4().hex}", stack


@pytest.fixture
async def pair(
    redis_url: str, cluster: tuple[str, contextlib.AsyncExitStack]
) -> tuple[AffinePresenceStore, AffinePresenceStore]:
    """Two processes' presence: the first to touch a call is its home."""
    prefix, stack = cluster
    return await open_affine(stack, redis_url, prefix), await open_affine(stack, redis_url, prefix)


@pytest.fixture
async def client(redis_url: str, cluster: tuple[str, contextlib.AsyncExitStack]) -> Redis:
    """A plain client of the same Redis, for what the test itself looks at or breaks."""
    _, stack = cluster
    plain = Redis.from_url(redis_url)
    stack.push_async_callback(plain.aclose)
    return plain


async def command_counts(client: Redis) -> dict[str, int]:
    """Redis's own count of each command it has run (``INFO commandstats``)."""
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


async def test_a_call_on_its_home_costs_redis_only_its_claim_and_release(
    pair: tuple[AffinePresenceStore, AffinePresenceStore], client: Redis
) -> None:
    """Both users on one process (what HAProxy arranges): the whole call's
    presence is in memory, two round trips in all."""
    store, _ = pair

    async def whole_call(call_id: int) -> None:
        async with store.lock(call_id):
            await store.enter(call_id, "alice", "a1")
        async with store.lock(call_id):
            assert (await store.enter(call_id, "bob", "b1")).members == {
                "alice": "a1",
                "bob": "b1",
            }
        await store.hold(call_id, "bob", {"n": 1}, 8, sender="alice")
        async with store.lock(call_id):
            await store.mark_connected(call_id, "alice")
        async with store.lock(call_id):
            connected, _ = await store.mark_connected(call_id, "bob")
            assert connected == {"alice", "bob"}
        assert await store.members(call_id) == {"alice": "a1", "bob": "b1"}
        async with store.lock(call_id):
            assert await store.leave(call_id, "bob", "b1")
        assert await store.clear(call_id, ("alice", "bob")) == {"alice": "a1"}

    await whole_call(1)  # loads the scripts
    before = await command_counts(client)
    await whole_call(2)
    after = await command_counts(client)
    ran = {name: after[name] - before.get(name, 0) for name in after}
    # The claim and the release (two scripts); the beacon's SETs and this
    # INFO are not the call's.
    assert ran.get("evalsha") == 2
    calls_commands = {"hset", "hget", "hgetall", "hdel", "sadd", "smembers", "rpush"}
    assert not {name for name, n in ran.items() if n and name in calls_commands | {"exec"}}
    assert store.homes() == 0


async def test_a_home_hands_over_what_it_holds_when_another_process_needs_the_call(
    pair: tuple[AffinePresenceStore, AffinePresenceStore],
) -> None:
    home, other = pair
    await home.enter(1, "alice", "a1")
    await home.mark_connected(1, "alice")
    assert await home.hold(1, "bob", {"n": 1}, 8, sender="alice")
    assert await home.hold(1, "bob", {"n": 2}, 8, sender="alice")
    assert home.homes() == 1

    # Bob's connection reached the other process: it asks the home to share.
    entered = await other.enter(1, "bob", "b1")
    assert entered == Entered(None, {"alice": "a1", "bob": "b1"}, ({"n": 1}, {"n": 2}))
    assert home.homes() == other.homes() == 0
    # Both now see the one presence, in Redis; the held weight went with it.
    assert await home.members(1) == {"alice": "a1", "bob": "b1"}
    assert await home.held_bytes("alice") == await other.held_bytes("alice") == 0
    assert (await home.mark_connected(1, "alice"))[0] == {"alice"}
    assert (await other.mark_connected(1, "bob"))[0] == {"alice", "bob"}
    assert await other.clear(1, ("alice", "bob")) == {"alice": "a1", "bob": "b1"}
    assert await home.members(1) == {}


async def test_the_connected_flags_go_with_the_call(
    pair: tuple[AffinePresenceStore, AffinePresenceStore],
) -> None:
    home, other = pair
    await home.enter(1, "alice", "a1")
    await home.enter(1, "bob", "b1")
    await home.mark_connected(1, "alice")
    # A database timer on the other process reads who is in the call.
    assert await other.members(1) == {"alice": "a1", "bob": "b1"}
    assert await other.mark_connected(1, "bob") == (
        frozenset({"alice", "bob"}),
        {"alice": "a1", "bob": "b1"},
    )


async def test_a_change_that_takes_no_lock_is_not_lost_while_the_call_is_handed_over(
    pair: tuple[AffinePresenceStore, AffinePresenceStore],
) -> None:
    """Held signals (a relay takes no lock) keep coming while the home writes
    the call to Redis: each one lands once, in order, before or after."""
    home, other = pair
    await home.enter(1, "alice", "a1")
    stored: list[int] = []
    stop = asyncio.Event()

    async def keep_holding() -> None:
        n = 0
        while not stop.is_set():
            if await home.hold(1, "bob", {"n": n}, 10_000, sender="alice"):
                stored.append(n)
            n += 1
            await asyncio.sleep(0)

    holding = asyncio.create_task(keep_holding())
    await asyncio.sleep(0.01)
    taken = [message["n"] for message in (await other.enter(1, "bob", "b1")).held]
    await asyncio.sleep(0.01)
    stop.set()
    await holding
    taken += [message["n"] for message in (await other.enter(1, "bob", "b2")).held]
    assert taken == stored
    assert len(stored) > 2


async def test_a_dead_home_s_call_is_claimed_afresh(
    pair: tuple[AffinePresenceStore, AffinePresenceStore],
    client: Redis,
    cluster: tuple[str, contextlib.AsyncExitStack],
) -> None:
    """Its users were connected to it: they rejoin elsewhere, and nothing of
    theirs is waited for."""
    dead, alive = pair
    await dead.enter(1, "alice", "a1")
    await client.delete(f"{cluster[0]}:alive:{dead.origin}")  # its heartbeat ran out

    started = time.monotonic()
    assert await alive.enter(1, "bob", "b1") == Entered(None, {"bob": "b1"})
    assert time.monotonic() - started < 1.0
    assert alive.homes() == 1


async def test_a_live_home_that_does_not_answer_fails_the_change_in_bounded_time(
    pair: tuple[AffinePresenceStore, AffinePresenceStore],
) -> None:
    beacon_only, other = pair
    await beacon_only.members(1)  # claims the call
    await beacon_only.close()  # stops listening; its beacon still beats

    started = time.monotonic()
    with pytest.raises(PresenceUnavailableError):
        await other.enter(1, "bob", "b1")
    assert 1.5 < time.monotonic() - started < 5.0


async def test_a_home_still_answers_after_its_redis_connection_was_cut(
    pair: tuple[AffinePresenceStore, AffinePresenceStore], client: Redis
) -> None:
    """Redis restarted (here: every subscriber's connection killed): the home
    listens again, so calls homed there can still be shared."""
    home, other = pair
    await home.enter(1, "alice", "a1")
    assert await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1

    entered = await other.enter(1, "bob", "b1")
    assert entered.members == {"alice": "a1", "bob": "b1"}


async def test_homes_with_nothing_in_them_are_let_go(
    redis_url: str, client: Redis, cluster: tuple[str, contextlib.AsyncExitStack]
) -> None:
    """An event after a call's end (a media server's) claims it again; a sweep
    releases such homes, and only those."""
    prefix, stack = cluster
    beacon = await ProcessBeacon.open(redis_url, prefix)
    stack.push_async_callback(beacon.close)
    store = await AffinePresenceStore.open(redis_url, prefix, beacon, sweep_s=0.05)
    stack.push_async_callback(store.close)
    await store.enter(1, "alice", "a1")
    async with store.lock(2):
        await store.reset_connected(2)  # late: claims call 2 with nothing in it
    assert store.homes() == 2

    for _ in range(100):
        await asyncio.sleep(0.02)
        if store.homes() == 1:
            break
    assert store.homes() == 1
    assert await client.get(f"{prefix}:call:2:home") is None
    assert await client.get(f"{prefix}:call:1:home") == beacon.origin.encode()
    assert await store.members(1) == {"alice": "a1"}
