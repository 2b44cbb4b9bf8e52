"""Presence in Redis, shared by every server process (redis-py's asyncio client)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub

from persistence.presence import CallLocks, CallPresence, Entered, PresenceStore

logger = logging.getLogger(__name__)

#: Presence of an abandoned call disappears by itself after this long.
_TTL_S = 6 * 3600
#: A lock holder that died frees the call after this long.
_LOCK_TIMEOUT_S = 10.0
#: How often a waiter for another process's lock polls (redis-py's default is 0.1 s).
_LOCK_POLL_S = 0.005

# RPUSH only while the queue is shorter than the limit and the sender's
# total (KEYS[2]) stays within its cap, atomically; the total grows by the weight.
_HOLD = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
local most = tonumber(ARGV[5])
local total = tonumber(redis.call('GET', KEYS[2]) or '0') + tonumber(ARGV[4])
if most > 0 and total > most then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('INCRBY', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""
# DECRBY a sender's total, deleting it once nothing is left.
_UNWEIGH = """
if redis.call('DECRBY', KEYS[1], ARGV[1]) <= 0 then redis.call('DEL', KEYS[1]) end
return 0
"""
# HDEL only if the field still holds this connection id; then nobody is
# connected any more (KEYS[2]).
_LEAVE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""


def _members(found: dict[Any, Any]) -> dict[str, str]:
    """A members hash as the contract has it."""
    return {str(user): str(sid) for user, sid in found.items()}


def blocking_pool(
    url: str, max_connections: int = 64, *, decode_responses: bool = True, **options: Any
) -> BlockingConnectionPool:
    """A bounded pool that makes a burst of commands wait for a connection
    (redis-py's default pool raises "Too many connections" instead);
    ``options`` go to redis-py's connections."""
    return BlockingConnectionPool.from_url(
        url,
        **{
            "max_connections": max_connections,
            "timeout": 10,
            "decode_responses": decode_responses,
            **options,
        },
    )


#: Pause before listening again after a subscriber's connection went away.
_LISTEN_RETRY_S = 0.5


async def listen_forever(pubsub: PubSub, handle: Callable[[str], Awaitable[None]]) -> None:
    """Hand the text of each message on ``pubsub``'s channels to ``handle``,
    until cancelled; when Redis drops the connection, listen again (redis-py
    subscribes the channels again as it reconnects)."""
    while True:
        try:
            async for message in pubsub.listen():
                data = message.get("data")
                await handle(data.decode() if isinstance(data, bytes) else str(data))
        except Exception as exc:
            logger.warning("lost the subscription: %s", exc, extra={"event": "redis.listen_failed"})
            await asyncio.sleep(_LISTEN_RETRY_S)


class ProcessBeacon:
    """This server process's name in a cluster (``origin``) and its heartbeat
    key; whether another process is still alive.

    One per process, shared by everything that hands work to a process by
    name (the clock claims, the presence homes), so that "alive" means the
    same to all of them.
    """

    #: a process that has not beaten for this long is taken for dead
    ALIVE_TTL_MS = 1500
    BEAT_S = 0.5

    def __init__(self, client: Redis, prefix: str, origin: str) -> None:
        self._redis = client
        self._prefix = prefix
        self.origin = origin
        self._beating: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, prefix: str = "giftcall") -> ProcessBeacon:
        """Beat once (the process is alive from now on), then every ``BEAT_S``."""
        origin = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        beacon = cls(Redis.from_pool(blocking_pool(url, max_connections=4)), prefix, origin)
        try:
            await beacon._beat()
        except BaseException:
            await beacon._redis.aclose()
            raise
        beacon._beating = asyncio.create_task(beacon._beat_forever(), name="process-beacon")
        return beacon

    def _key(self, origin: str) -> str:
        return f"{self._prefix}:alive:{origin}"

    async def alive(self, origin: str) -> bool:
        return origin == self.origin or bool(await self._redis.exists(self._key(origin)))

    async def _beat(self) -> None:
        await self._redis.set(self._key(self.origin), "1", px=self.ALIVE_TTL_MS)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.BEAT_S)
            try:
                await self._beat()
            except Exception as exc:  # a dead Redis shows in health; the next beat retries
                logger.warning("heartbeat failed: %s", exc, extra={"event": "cluster.beat_failed"})

    async def close(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        await self._redis.aclose()


class RedisPresenceStore(PresenceStore):
    """Keys per call: ``…:members`` (hash user -> sid), ``…:connected`` (set),
    ``…:held:<user>`` (list of JSON ``[sender, signal]``), ``…:lock`` (redis-py
    lock); per sender ``…:held_bytes:<user>`` (what they hold in every call)."""

    def __init__(self, client: Redis, prefix: str = "giftcall") -> None:
        self._redis = client
        self._prefix = prefix
        self._hold = client.register_script(_HOLD)
        self._unweigh = client.register_script(_UNWEIGH)
        self._leave = client.register_script(_LEAVE)
        #: per-call local locks in front of the Redis one
        self._local = CallLocks()

    @classmethod
    def from_url(cls, url: str, prefix: str = "giftcall") -> RedisPresenceStore:
        return cls(Redis.from_pool(blocking_pool(url)), prefix)

    def _key(self, call_id: int, part: str) -> str:
        return f"{self._prefix}:call:{call_id}:{part}"

    @contextlib.asynccontextmanager
    async def lock(self, call_id: int) -> AsyncIterator[None]:
        # Waiters of this process queue on a local lock (no polling); only
        # one of them at a time contends for the Redis lock, which then
        # mostly is free: both users of a call are usually on one process.
        async with (
            self._local.hold(call_id),
            self._redis.lock(
                self._key(call_id, "lock"),
                timeout=_LOCK_TIMEOUT_S,
                blocking_timeout=_LOCK_TIMEOUT_S,
                sleep=_LOCK_POLL_S,
            ),
        ):
            yield

    async def enter(self, call_id: int, user_id: str, sid: str) -> Entered:
        key = self._key(call_id, "members")
        held_key = self._key(call_id, f"held:{user_id}")
        # One round trip (MULTI/EXEC): the call's presence changes often.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, user_id)
            pipe.hset(key, user_id, sid)
            pipe.expire(key, _TTL_S)
            pipe.hgetall(key)
            pipe.delete(self._key(call_id, "connected"))
            pipe.lrange(held_key, 0, -1)
            pipe.delete(held_key)
            previous, _, _, members, _, held, _ = await pipe.execute()
        return Entered(
            previous if previous != sid else None,
            _members(members),
            tuple(await self._unweigh_taken([held])),
        )

    async def leave(self, call_id: int, user_id: str, sid: str) -> bool:
        keys = [self._key(call_id, "members"), self._key(call_id, "connected")]
        return bool(await self._leave(keys=keys, args=[user_id, sid]))

    async def members(self, call_id: int) -> dict[str, str]:
        return _members(await self._redis.hgetall(self._key(call_id, "members")))

    async def mark_connected(
        self, call_id: int, user_id: str
    ) -> tuple[frozenset[str], dict[str, str]]:
        key = self._key(call_id, "connected")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, user_id)
            pipe.expire(key, _TTL_S)
            pipe.smembers(key)
            pipe.hgetall(self._key(call_id, "members"))
            _, _, connected, members = await pipe.execute()
        return frozenset(connected), _members(members)

    async def reset_connected(self, call_id: int) -> None:
        await self._redis.delete(self._key(call_id, "connected"))

    def _weight_key(self, sender: str) -> str:
        return f"{self._prefix}:held_bytes:{sender}"

    async def hold(
        self,
        call_id: int,
        recipient: str,
        message: dict[str, Any],
        limit: int,
        *,
        sender: str = "",
        max_bytes: int = 0,
    ) -> bool:
        key = self._key(call_id, f"held:{recipient}")
        weight = len(orjson.dumps(message))
        item = orjson.dumps([sender, message]).decode()
        stored = await self._hold(
            keys=[key, self._weight_key(sender)],
            args=[item, limit, _TTL_S, weight, max_bytes],
        )
        return bool(stored)

    async def held_bytes(self, sender: str) -> int:
        return int(await self._redis.get(self._weight_key(sender)) or 0)

    async def _unweigh_taken(self, lists: list[list[str]]) -> list[dict[str, Any]]:
        """Held lists just taken (read and deleted): lower their senders'
        totals (a round trip only when something was held); the signals,
        list by list."""
        weights: dict[str, int] = {}
        messages = []
        for items in lists:
            for item in items:
                sender, message = orjson.loads(item)
                weights[sender] = weights.get(sender, 0) + len(orjson.dumps(message))
                messages.append(message)
        for sender, weight in weights.items():
            await self._unweigh(keys=[self._weight_key(sender)], args=[weight])
        return messages

    async def clear(self, call_id: int, users: Iterable[str]) -> dict[str, str]:
        # Named keys, no SCAN (which walks the whole keyspace); the lock key
        # is left alone: its holder releases it. One round trip.
        held_keys = [self._key(call_id, f"held:{user}") for user in users]
        members_key = self._key(call_id, "members")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(members_key)
            for key in held_keys:
                pipe.lrange(key, 0, -1)
            pipe.delete(members_key, self._key(call_id, "connected"), *held_keys)
            members, *lists, _ = await pipe.execute()
        await self._unweigh_taken(lists)
        return _members(members)

    async def restore(
        self, call_id: int, presence: CallPresence, then: tuple[str, str] | None = None
    ) -> None:
        """Write a call's presence kept elsewhere (another store's
        :meth:`~persistence.memory.MemoryPresenceStore.take`), and then the
        key and value ``then``, in one transaction: nobody sees half of it."""
        async with self._redis.pipeline(transaction=True) as pipe:
            if presence.members:
                for user_id, sid in presence.members.items():
                    pipe.hset(self._key(call_id, "members"), user_id, sid)
                pipe.expire(self._key(call_id, "members"), _TTL_S)
            if presence.connected:
                pipe.sadd(self._key(call_id, "connected"), *presence.connected)
                pipe.expire(self._key(call_id, "connected"), _TTL_S)
            weights: dict[str, int] = {}
            for recipient, signals in presence.held.items():
                key = self._key(call_id, f"held:{recipient}")
                pipe.rpush(key, *(orjson.dumps([s, m]).decode() for s, m in signals))
                pipe.expire(key, _TTL_S)
                for sender, message in signals:
                    weights[sender] = weights.get(sender, 0) + len(orjson.dumps(message))
            for sender, weight in weights.items():
                pipe.incrby(self._weight_key(sender), weight)
                pipe.expire(self._weight_key(sender), _TTL_S)
            if then is not None:
                pipe.set(then[0], then[1], ex=_TTL_S)
            await pipe.execute()

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
