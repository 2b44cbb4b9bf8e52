"""Quotas and rate limits per user and per connection.

The one home of every such rule. Rates are counted by the ``limits`` package
with its sliding-window-counter strategy (two counters per key and window:
cheap to keep for many users, in memory as in Redis, unlike a moving window's
list of every hit): in this process's memory by default, in Redis
when the server has ``SIGNALING_REDIS_URL``, so that a user's limits hold
across processes. Two counts need no shared storage: the signals of one
connection (a connection lives on one process: a token bucket in a dict, on
the relay's hot path) and the connections a user has open on this process. An excess raises
``rate_limited`` with the whole seconds to wait (``retry_after``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass

from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerMinute,
    RateLimitItemPerSecond,
)
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from signaling.errors import ApiError, rate_limited
from signaling.limits_fence import SweptMemoryStorage


@dataclass(frozen=True)
class QuotaRules:
    """The limits (defaults in signaling/config.py, docs/configuration.md);
    0 turns one off."""

    #: calls a user has booked that are not over yet
    calls_open_max: int
    #: calls a user books in a day (a sliding 24 hours)
    calls_per_day: int
    #: gifts a user sends in a minute
    gifts_per_minute: int
    #: signals one connection sends in a second
    signals_per_s: int
    #: chat messages a user sends in a second
    chat_per_s: int
    #: connections a user has open at once to one namespace on one process
    connections_per_user: int


#: Counts the unfinished calls a user booked (the call service's reader).


class Quotas:
    """Checks and counts; each ``check_*`` raises ``rate_limited`` on an excess."""

    def __init__(self, rules: QuotaRules, *, redis_url: str = "", key_prefix: str = "") -> None:
        self.rules = rules
        self._prefix = key_prefix or "giftcall"
        shared: Storage
        if redis_url:
            uri = redis_url if redis_url.startswith("async+") else "async+" + redis_url
            shared = RedisStorage(
                uri, implementation="redispy", key_prefix=f"{self._prefix}:limits"
            )
        else:
            shared = SweptMemoryStorage()
        self._shared_storage = shared
        self._shared = SlidingWindowCounterRateLimiter(shared)
        self._per_day = RateLimitItemPerDay(max(rules.calls_per_day, 1))
        self._gifts = RateLimitItemPerMinute(max(rules.gifts_per_minute, 1))
        self._chat = RateLimitItemPerSecond(max(rules.chat_per_s, 1))
        #: per connection: (tokens left, when counted), see check_signal
        self._signal_allowance: dict[str, tuple[float, float]] = {}
        self._connections: Counter[tuple[str, str]] = Counter()

    async def close(self) -> None:
        # A memory storage runs an expiry task of its own: stop it with the server.
        storage = self._shared_storage
        timer = getattr(storage, "timer", None) if isinstance(storage, MemoryStorage) else None
        if isinstance(timer, asyncio.Task):
            timer.cancel()
        if isinstance(storage, RedisStorage):
            client = getattr(storage.bridge, "storage", None)
            if client is not None:
                await client.aclose()

    # ------------------------------------------------------------- bookings

    def too_many_open_calls(self) -> ApiError:
        """The answer to a booking the store refused for ``calls_open_max``
        (counted with the insert: ``CallStore.create``'s ``open_max``)."""
        return rate_limited(
            f"you have {self.rules.calls_open_max} calls booked that are not over; "
            "cancel one or wait until one ends",
            60,
        )

    async def check_booking(self, user_id: str) -> None:
        """Before a user books a call: at most ``calls_per_day`` booked in the
        last 24 hours. (At most ``calls_open_max`` unfinished is counted by the
        store, in the booking's transaction.)"""
        if self.rules.calls_per_day:
            await self._hit(self._shared, self._per_day, "calls booked per day", "call", user_id)

    async def check_gift(self, user_id: str) -> None:
        if self.rules.gifts_per_minute:
            await self._hit(self._shared, self._gifts, "gifts per minute", "gift", user_id)

    async def check_chat(self, user_id: str) -> None:
        if self.rules.chat_per_s:
            await self._hit(self._shared, self._chat, "chat messages per second", "chat", user_id)

    def check_signal(self, sid: str) -> None:
        """The relay's hot path: one connection's signals, a token bucket of
        ``signals_per_s`` that refills at that rate. A connection lives on
        one process and its allowance dies with it (``release_connection``),
        so no storage, keys or expiry are needed: a dict entry per socket."""
        rate = self.rules.signals_per_s
        if not rate:
            return
        now = time.monotonic()
        tokens, stamp = self._signal_allowance.get(sid, (float(rate), now))
        tokens = min(float(rate), tokens + (now - stamp) * rate)
        if tokens < 1:
            wait = max(1, math.ceil((1 - tokens) / rate))
            raise rate_limited(
                f"too many signals per second (at most {rate}); retry in {wait} s", wait
            )
        self._signal_allowance[sid] = (tokens - 1, now)

    # ---------------------------------------------------------- connections

    def admit_connection(self, namespace: str, user_id: str) -> None:
        """Count a user's new connection to ``namespace``; raise when full."""
        key = (namespace, user_id)
        most = self.rules.connections_per_user
        if most and self._connections[key] >= most:
            raise rate_limited(f"at most {most} connections per user to {namespace}", 1)
        self._connections[key] += 1

    def release_connection(self, namespace: str, user_id: str, sid: str) -> None:
        self._signal_allowance.pop(sid, None)
        key = (namespace, user_id)
        self._connections[key] -= 1
        if self._connections[key] <= 0:
            del self._connections[key]

    # -------------------------------------------------------------- helpers

    async def _hit(
        self,
        limiter: SlidingWindowCounterRateLimiter,
        item: RateLimitItem,
        what: str,
        *ids: str,
    ) -> None:
        if await limiter.hit(item, self._prefix, *ids):
            return
        stats = await limiter.get_window_stats(item, self._prefix, *ids)
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        raise rate_limited(f"too many {what} (at most {item.amount}); retry in {wait} s", wait)
