"""The cluster bus on the session's Redis: two buses stand for two processes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime

from redis.asyncio import Redis

from persistence.models import CallState
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
