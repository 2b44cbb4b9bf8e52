"""Guards of ``signaling/limits_fence.py``, the only user of ``limits``'
private names: after an upgrade that changes what it relies on, these fail
and say what to re-read, instead of every hit walking every key again."""

from __future__ import annotations

import asyncio
import inspect
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from signaling import limits_fence
from signaling.limits_fence import SweptMemoryStorage


def flat(function: Callable[..., Any]) -> str:
    return " ".join(textwrap.dedent(inspect.getsource(function)).split())


# ------------------------------------------------------------- the library


def test_the_expiry_walk_is_started_by_the_mangled_method_the_fence_replaces() -> None:
    schedule = MemoryStorage._MemoryStorage__schedule_expiry  # type: ignore[attr-defined]
    assert "self.timer = asyncio.create_task(self.__expire_events())" in flat(schedule)
    for name in ("incr", "decr", "acquire_entry"):
        assert "await self.__schedule_expiry()" in flat(getattr(MemoryStorage, name)), name


def test_the_sliding_window_counts_through_incr_and_get() -> None:
    entry = flat(MemoryStorage.acquire_sliding_window_entry)
    assert "await self.incr(" in entry
    info = flat(MemoryStorage._get_sliding_window_info)
    assert "await self.get(previous_key)" in info and "await self.get(current_key)" in info


def test_get_drops_an_expired_key_itself() -> None:
    """What makes a rarer walk safe: a read never counts an expired key."""
    assert "if self.expirations.get(key, 0) <= time.time():" in flat(MemoryStorage.get)


# ---------------------------------------------------------------- the fence


async def test_one_walk_per_sweep_interval_whatever_the_hits() -> None:
    storage = SweptMemoryStorage(sweep_s=60)
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse("1000/day")
    walks = []
    for user in range(200):
        assert await limiter.hit(item, "test", f"user{user}")
        walks.append(storage.timer)
        await asyncio.sleep(0)  # the walk runs and ends between hits
    assert storage.timer is not None and storage.timer.done()
    assert {id(timer) for timer in walks} == {id(walks[0])}  # started once
    storage.timer.cancel()


async def test_a_walk_starts_again_after_the_interval_and_frees_expired_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = SweptMemoryStorage(sweep_s=60)
    await storage.incr("quiet", expiry=1)
    first = storage.timer
    assert first is not None
    await first
    # The key expires; until the next walk it only takes memory.
    monkeypatch.setattr(time, "time", lambda real=time.time: real() + 2)
    await storage.incr("busy", expiry=100)
    assert storage.timer is first and "quiet" in storage.storage
    assert await storage.get("quiet") == 0  # read: dropped at once, never counted
    await storage.incr("quiet-again", expiry=1)
    later = time.monotonic() + 61
    monkeypatch.setattr(limits_fence, "monotonic", lambda: later)
    monkeypatch.setattr(time, "time", lambda real=time.time: real() + 2)
    await storage.incr("busy", expiry=100)
    walk = storage.timer
    assert walk is not None and walk is not first
    await walk
    assert "quiet-again" not in storage.storage and "busy" in storage.storage
