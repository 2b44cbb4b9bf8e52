"""Presence in Redis, shared by every server process (redis-py's asyncio client)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis

from persistence.presence import PresenceStore

#: Presence of an abandoned call disappears by itself after this long.
_TTL_S = 6 * 3600
#: A lock holder that died frees the call after this long.
_LOCK_TIMEOUT_S = 10.0
#: How often a waiter for another process's lock polls (redis-py's default is 0.1 s).
_LOCK_POLL_S = 0.005

# RPUSH only while the queue is shorter than the limit, atomically.
_HOLD = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
# HDEL only if the field still holds this connection id.
_LEAVE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


def blocking_pool(
    url: str, max_connections: int = 64, *, decode_responses: bool = True
) -> BlockingConnectionPool:
    """A bounded pool that makes a burst of commands wait for a connection
    (redis-py's default pool raises "Too many connections" instead)."""
    return BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=10, decode_responses=decode_responses
    )


class RedisPresenceStore(PresenceStore):
    """Keys per call: ``…:members`` (hash user -> sid), ``…:connected`` (set),
    ``…:held:<user>`` (list of JSON signals), ``…:lock`` (redis-py lock)."""

    def __init__(self, client: Redis, prefix: str = "giftcall") -> None:
        self._redis = client
        self._prefix = prefix
        self._hold = client.register_script(_HOLD)
        self._leave = client.register_script(_LEAVE)
        #: per-call local locks in front of the Redis one, with their users
        self._local: dict[int, tuple[asyncio.Lock, int]] = {}

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
        local, users = self._local.get(call_id, (asyncio.Lock(), 0))
        self._local[call_id] = (local, users + 1)
        try:
            async with (
                local,
                self._redis.lock(
                    self._key(call_id, "lock"),
                    timeout=_LOCK_TIMEOUT_S,
                    blocking_timeout=_LOCK_TIMEOUT_S,
                    sleep=_LOCK_POLL_S,
                ),
            ):
                yield
        finally:
            local, users = self._local[call_id]
            if users == 1:
                del self._local[call_id]
            else:
                self._local[call_id] = (local, users - 1)

    async def enter(self, call_id: int, user_id: str, sid: str) -> str | None:
        key = self._key(call_id, "members")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, user_id)
            pipe.hset(key, user_id, sid)
            pipe.expire(key, _TTL_S)
            previous, _, _ = await pipe.execute()
        return previous if previous != sid else None

    async def leave(self, call_id: int, user_id: str, sid: str) -> bool:
        return bool(await self._leave(keys=[self._key(call_id, "members")], args=[user_id, sid]))

    async def members(self, call_id: int) -> dict[str, str]:
        members = await self._redis.hgetall(self._key(call_id, "members"))
        return {str(user): str(sid) for user, sid in members.items()}

    async def mark_connected(self, call_id: int, user_id: str) -> frozenset[str]:
        key = self._key(call_id, "connected")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, user_id)
            pipe.expire(key, _TTL_S)
            pipe.smembers(key)
            _, _, members = await pipe.execute()
        return frozenset(members)

    async def reset_connected(self, call_id: int) -> None:
        await self._redis.delete(self._key(call_id, "connected"))

    async def hold(self, call_id: int, recipient: str, message: dict[str, Any], limit: int) -> bool:
        key = self._key(call_id, f"held:{recipient}")
        stored = await self._hold(keys=[key], args=[orjson.dumps(message).decode(), limit, _TTL_S])
        return bool(stored)

    async def release(self, call_id: int, recipient: str) -> list[dict[str, Any]]:
        key = self._key(call_id, f"held:{recipient}")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            items, _ = await pipe.execute()
        return [orjson.loads(item) for item in items]

    async def clear(self, call_id: int, users: Iterable[str]) -> None:
        # Named keys, no SCAN (which walks the whole keyspace); the lock key
        # is left alone: its holder releases it.
        parts = ["members", "connected", *(f"held:{user}" for user in users)]
        await self._redis.delete(*(self._key(call_id, part) for part in parts))

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
