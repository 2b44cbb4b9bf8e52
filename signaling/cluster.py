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
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

import socketio
from redis.asyncio import Redis

from persistence.redis import blocking_pool

logger = logging.getLogger(__name__)


class ClusterBus:
    """Publishes call ids that changed; calls ``on_change`` for other processes' ones."""

    def __init__(self, url: str, on_change: Callable[[int], Awaitable[None]], channel: str) -> None:
        self._redis = Redis.from_pool(blocking_pool(url, max_connections=8))
        self._channel = channel
        self._on_change = on_change
        self.origin = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._listener: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        self._listener = asyncio.create_task(self._listen(pubsub), name="cluster-bus")

    def announce(self, call_id: int) -> None:
        """Fire and forget (the sweep is the safety net if a message is lost)."""
        task = asyncio.create_task(self._publish(f"{self.origin} {call_id}"))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, message: str) -> None:
        try:
            await self._redis.publish(self._channel, message)
        except Exception as exc:  # the sweep catches up; a dead Redis shows in health
            logger.warning("publish failed: %s", exc, extra={"event": "cluster.publish_failed"})

    async def _listen(self, pubsub: object) -> None:
        async for message in pubsub.listen():  # type: ignore[attr-defined]
            origin, _, call_id = str(message.get("data", "")).partition(" ")
            if origin == self.origin or not call_id.isdigit():
                continue
            try:
                await self._on_change(int(call_id))
            except Exception:
                logger.exception(
                    "call change %s failed", call_id, extra={"event": "cluster.failed"}
                )

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._redis.aclose()


class PooledRedisManager(socketio.AsyncRedisManager):
    """python-socketio's Redis client manager on a bounded pool that waits.

    Every emit to another process is a PUBLISH; under a burst the stock client
    opens a connection per concurrent publish and, past redis-py's default
    limit, fails with "Too many connections" and drops the event.
    """

    def _redis_connect(self) -> None:
        # Raw bytes: the manager's messages are pickled.
        pool = blocking_pool(self.redis_url, decode_responses=False)
        self.redis = Redis.from_pool(pool)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True
