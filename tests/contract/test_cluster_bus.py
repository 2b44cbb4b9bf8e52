"""The cluster bus on the session's Redis: two buses stand for two processes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime, timedelta

from redis.asyncio import Redis

from persistence.models import CallState, utcnow
from persistence.redis import ProcessBeacon
from signaling.cluster import ClusterBus
from tests.unit.records import ENDS_AT, record


async def test_a_change_is_heard_by_the_other_process_even_after_redis_cut_its_connection(
    redis_url: str,
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    heard: asyncio.Queue[tuple[int, CallState, datetime | None]] = asyncio.Queue()

    async def on_change(call_id: int, state: CallState, deadline: datetime | None) -> None:
        await heard.put((call_id, state, deadline))

    async def ignore(call_id: int, state: CallState, deadline: datetime | None) -> None:
        pass

    async with contextlib.AsyncExitStack() as stack:
        buses = []
        for handler in (ignore, on_change):
            beacon = await ProcessBeacon.open(redis_url, prefix)
            stack.push_async_callback(beacon.close)
            bus = ClusterBus(redis_url, f"{prefix}:calls", prefix, beacon)
            stack.push_async_callback(bus.close)
            await bus.start(handler)
            buses.append(bus)
        speaker = buses[0]
        live = record(CallState.LIVE)

        speaker.announce(live)
        assert await asyncio.wait_for(heard.get(), 5) == (1, CallState.LIVE, ENDS_AT)

        client = Redis.from_url(redis_url)
        stack.push_async_callback(client.aclose)
        assert await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 2
        # Said again until heard: the listener needs a moment to subscribe again.
        for _ in range(100):
            speaker.announce(live)
            await asyncio.sleep(0.05)
            if not heard.empty():
                break
        assert heard.get_nowait() == (1, CallState.LIVE, ENDS_AT)


async def test_a_clock_claim_is_written_once_and_released_only_by_its_owner(
    redis_url: str,
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    async with contextlib.AsyncExitStack() as stack:
        buses = []
        for _ in range(2):
            beacon = await ProcessBeacon.open(redis_url, prefix)
            stack.push_async_callback(beacon.close)
            bus = ClusterBus(redis_url, f"{prefix}:calls", prefix, beacon)
            stack.push_async_callback(bus.close)
            buses.append(bus)
        owner, other = buses
        client = Redis.from_url(redis_url)
        stack.push_async_callback(client.aclose)
        key = f"{prefix}:clock:1"

        async def settled() -> None:  # claims and releases are fire and forget
            await asyncio.sleep(0.1)

        until = utcnow() + timedelta(seconds=30)
        owner.claim(1, until)
        await settled()
        assert await other.held_elsewhere(1) and not await owner.held_elsewhere(1)
        await client.delete(key)
        owner.claim(1, until)  # the same claim again (the countdown's, then live's)
        await settled()
        assert await client.get(key) is None  # not written twice

        other.release(1)  # not its claim: nothing happens
        owner.claim(1, until + timedelta(seconds=1))
        await settled()
        other.claim(1, until)  # a takeover elsewhere, then the first owner lets go
        await settled()
        owner.release(1)
        await settled()
        assert await client.get(key) == other.origin.encode()
        other.release(1)
        await settled()
        assert await client.get(key) is None
