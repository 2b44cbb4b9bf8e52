"""Several server processes: tell the others when a call changed.

Every process keeps its own timers, so each one must arm a call's next
deadline, whichever process made the change. A change is announced on a Redis
channel; the others re-read the call and arm it (and drop their connections of
a call that is over). Every process then fires at the deadline and
compare-and-set lets one of them win, so a call ends on time even if the
process that started it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from persistence.models import CallRecord, CallState, utcnow
from persistence.redis import ProcessBeacon, blocking_pool, listen_forever
from scheduler.jobs import next_deadline

logger = logging.getLogger(__name__)


_STATES = frozenset(state.value for state in CallState)
#: Told of another process's change: the call, its state and next deadline.
ChangeHandler = Callable[[int, CallState, datetime | None], Awaitable[None]]
#: A clock claim outlives its call's end by this much (then Redis drops it).
_CLAIM_SLACK_MS = 10_000
# Delete the claim only if this process (ARGV[1]) holds it.
_RELEASE_OWN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


class ClusterBus:
    """Publishes call ids that changed; once started, calls ``on_change`` for
    other processes' ones.

    Also the :class:`~signaling.calls.state.ClockClaims` of a cluster: which
    process runs each call's in-call clock, and whether that process is still
    alive (the ``beacon``'s heartbeat: a process that has not beaten for
    1.5 s is taken for dead), so the others' database timers stay a takeover.
    """

    def __init__(self, url: str, channel: str, key_prefix: str, beacon: ProcessBeacon) -> None:
        self._redis = Redis.from_pool(blocking_pool(url, max_connections=8))
        self._channel = channel
        self._prefix = key_prefix
        self._beacon = beacon
        self.origin = beacon.origin
        self._listener: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        #: call id -> until when this process claimed its clock (oldest first)
        self._claimed: dict[int, datetime] = {}
        self._release_own = self._redis.register_script(_RELEASE_OWN)

    async def start(self, on_change: ChangeHandler) -> None:
        """Listen for the others' changes.

        ``on_change`` is given here, not to the constructor: it is the call
        side, which is built after the bus (the bus is its clock claims)."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        self._listener = asyncio.create_task(
            listen_forever(pubsub, functools.partial(self._heard, on_change=on_change)),
            name="cluster-bus",
        )

    def announce(self, call: CallRecord) -> None:
        """Fire and forget (the sweep is the safety net if a message is lost):
        the call's id, state and next deadline, so the others need no read."""
        deadline = next_deadline(call)
        stamp = "-" if deadline is None else repr(deadline.timestamp())
        self._spawn(self._publish(f"{self.origin} {call.id} {call.state.value} {stamp}"))

    # ------------------------------------------------------------ clock claims

    def claim(self, call_id: int, until: datetime) -> None:
        now = utcnow()
        if self._claimed.get(call_id) == until:
            return  # the countdown claimed it until the end already; `live` need not
        self._claimed[call_id] = until
        self._forget_lapsed_claims(now)
        ttl_ms = max(int((until - now).total_seconds() * 1000), 0) + _CLAIM_SLACK_MS
        self._spawn(
            self._quietly(self._redis.set(self._clock_key(call_id), self.origin, px=ttl_ms))
        )

    def release(self, call_id: int) -> None:
        """Only a claim of this process's: a later owner's stays."""
        if self._claimed.pop(call_id, None) is None:
            return
        self._spawn(
            self._quietly(self._release_own(keys=[self._clock_key(call_id)], args=[self.origin]))
        )

    def _forget_lapsed_claims(self, now: datetime) -> None:
        """Claims of calls that ended elsewhere are never released here: drop
        the ones Redis has dropped too (oldest first; ends mostly grow)."""
        lapsed_before = now - timedelta(milliseconds=_CLAIM_SLACK_MS)
        while self._claimed:
            call_id, until = next(iter(self._claimed.items()))
            if until >= lapsed_before:
                return
            del self._claimed[call_id]

    async def held_elsewhere(self, call_id: int) -> bool:
        owner = await self._redis.get(self._clock_key(call_id))
        if owner is None or owner == self.origin:
            return False
        return await self._beacon.alive(str(owner))

    def _clock_key(self, call_id: int) -> str:
        return f"{self._prefix}:clock:{call_id}"

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _quietly(self, work: Awaitable[Any]) -> None:
        try:
            await work
        except Exception as exc:  # a dead Redis shows in health; timers catch up
            logger.warning("redis write failed: %s", exc, extra={"event": "cluster.write_failed"})

    async def _publish(self, message: str) -> None:
        try:
            await self._redis.publish(self._channel, message)
        except Exception as exc:  # the sweep catches up; a dead Redis shows in health
            logger.warning("publish failed: %s", exc, extra={"event": "cluster.publish_failed"})

    async def _heard(self, message: str, on_change: ChangeHandler) -> None:
        origin, call_id, state, stamp = (message.split(" ") + [""] * 4)[:4]
        if origin == self.origin or not call_id.isdigit() or state not in _STATES:
            return
        try:
            deadline = None if stamp == "-" else datetime.fromtimestamp(float(stamp), UTC)
            await on_change(int(call_id), CallState(state), deadline)
        except Exception:
            logger.exception("call change %s failed", call_id, extra={"event": "cluster.failed"})

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._redis.aclose()


def pooled_client(url: str, options: dict[str, Any]) -> Redis:
    """The Socket.IO manager's Redis client: raw bytes (its messages are
    pickled) on a bounded pool that waits (``socketio_fence.PooledRedisManager``)."""
    return Redis.from_pool(blocking_pool(url, decode_responses=False, **options))
