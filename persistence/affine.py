"""Presence kept by each call's home process; shared through Redis only when
a call's users are on different processes.

Behind HAProxy both users of a call reach the same process (docs/deployment.md),
so a call's presence almost never needs to leave it. The first process that
touches a call claims it (its *home*: one Redis key, one round trip) and keeps
its presence in memory under a local lock. Another process that needs the call
(a client that did not put the call id in its connection's query, a database
timer taking the call over) asks the home to share it: under its lock the home
writes what it holds to Redis in one transaction and marks the call shared;
from then on every process uses :class:`RedisPresenceStore` for it. A home
that died took the call's presence with it (its users were connected to it
and rejoin elsewhere): the next process claims the call afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from persistence.memory import MemoryPresenceStore
from persistence.presence import (
    CallLocks,
    Entered,
    PresenceStore,
    PresenceUnavailableError,
)
from persistence.redis import (
    ProcessBeacon,
    RedisPresenceStore,
    blocking_pool,
    listen_forever,
)

logger = logging.getLogger(__name__)

#: The home key's value once the call's presence is in Redis.
_SHARED = "shared"
#: A home key outlives an abandoned call this long (as presence keys do).
_HOME_TTL_S = 6 * 3600
#: How long a process waits for a live home to share a call, and how often it looks.
_SHARE_WAIT_S = 2.0
_SHARE_POLL_S = 0.005
#: Calls remembered as shared (forgetting one costs a round trip, not correctness).
_SHARED_REMEMBERED = 10_000

# The call's home: ARGV[1] (this process) when nobody holds it, or when its
# holder is ARGV[3] (a process found dead); returns who holds it now.
_CLAIM = """
local home = redis.call('GET', KEYS[1])
if (not home) or home == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return ARGV[1]
end
return home
"""
# Replace the home key's value ARGV[1] with ARGV[2] (or delete it when
# ARGV[2] is empty), if it still is ARGV[1].
_HAND_OVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""


class AffinePresenceStore(PresenceStore):
    """Presence in the memory of each call's home process, in Redis for a
    call whose users are on different processes (see the module's docs)."""

    def __init__(
        self,
        client: Redis,
        prefix: str,
        beacon: ProcessBeacon,
        requests: PubSub,
        *,
        sweep_s: float = 60.0,
    ) -> None:
        """``requests`` is subscribed to :func:`share_channel` of this
        process (:meth:`open` does that before the store exists). Every
        ``sweep_s`` the calls homed here with nothing in them are let go."""
        self._redis = client
        self._prefix = prefix
        self._beacon = beacon
        self._shared = RedisPresenceStore(client, prefix)
        self._local = MemoryPresenceStore()
        self._claim = client.register_script(_CLAIM)
        self._hand_over = client.register_script(_HAND_OVER)
        #: one lock per call for every change, local or shared, and sharing
        self._locks = CallLocks()
        #: serializes this process's claims and shares of one call
        self._settling = CallLocks()
        #: calls this process is the home of: their presence is in ``_local``
        self._homed: set[int] = set()
        #: calls this home is writing to Redis -> set once it is done
        self._sharing: dict[int, asyncio.Event] = {}
        self._shared_calls: OrderedDict[int, None] = OrderedDict()
        self._requests = requests
        self._pending: set[asyncio.Task[None]] = set()
        self._listener = asyncio.create_task(
            listen_forever(requests, self._requested), name="presence-share-requests"
        )
        self._sweeper = asyncio.create_task(self._sweep_forever(sweep_s), name="presence-sweep")

    @classmethod
    async def open(
        cls, url: str, prefix: str, beacon: ProcessBeacon, *, sweep_s: float = 60.0
    ) -> AffinePresenceStore:
        client = Redis.from_pool(blocking_pool(url))
        requests = client.pubsub(ignore_subscribe_messages=True)
        try:
            await requests.subscribe(share_channel(prefix, beacon.origin))
        except BaseException:
            await requests.aclose()
            await client.aclose()
            raise
        return cls(client, prefix, beacon, requests, sweep_s=sweep_s)

    # ---------------------------------------------------------- the contract

    @contextlib.asynccontextmanager
    async def lock(self, call_id: int) -> AsyncIterator[None]:
        # A share takes this lock too: while it is held, the call stays where it is.
        async with self._locks.hold(call_id):
            if await self._is_home(call_id):
                yield
            else:
                async with self._shared.lock(call_id):
                    yield

    async def enter(self, call_id: int, user_id: str, sid: str) -> Entered:
        store = await self._store(call_id)
        return await store.enter(call_id, user_id, sid)

    async def leave(self, call_id: int, user_id: str, sid: str) -> bool:
        store = await self._store(call_id)
        return await store.leave(call_id, user_id, sid)

    async def members(self, call_id: int) -> dict[str, str]:
        store = await self._store(call_id)
        return await store.members(call_id)

    async def mark_connected(
        self, call_id: int, user_id: str
    ) -> tuple[frozenset[str], dict[str, str]]:
        store = await self._store(call_id)
        return await store.mark_connected(call_id, user_id)

    async def reset_connected(self, call_id: int) -> None:
        store = await self._store(call_id)
        await store.reset_connected(call_id)

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
        # The byte cap counts what the sender holds in this home's calls, or
        # in shared calls: per process, not across the cluster.
        store = await self._store(call_id)
        return await store.hold(
            call_id, recipient, message, limit, sender=sender, max_bytes=max_bytes
        )

    async def held_bytes(self, sender: str) -> int:
        return await self._local.held_bytes(sender) + await self._shared.held_bytes(sender)

    async def clear(self, call_id: int, users: Iterable[str]) -> dict[str, str]:
        if not await self._is_home(call_id):
            self._shared_calls.pop(call_id, None)
            return await self._shared.clear(call_id, users)
        self._homed.discard(call_id)
        members = await self._local.clear(call_id, users)
        await self._release(call_id)
        return members

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        for task in (self._sweeper, self._listener):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._requests.aclose()
        await self._redis.aclose()

    # ------------------------------------------------------------ the homes

    @property
    def origin(self) -> str:
        return self._beacon.origin

    def homes(self) -> int:
        """How many calls this process is the home of."""
        return len(self._homed)

    def _home_key(self, call_id: int) -> str:
        return f"{self._prefix}:call:{call_id}:home"

    async def _store(self, call_id: int) -> PresenceStore:
        return self._local if await self._is_home(call_id) else self._shared

    async def _is_home(self, call_id: int) -> bool:
        """Whether the call's presence is in this process's memory (else in
        Redis); claims the call, or has its home share it, the first time."""
        while True:
            if call_id in self._homed:
                return True
            sharing = self._sharing.get(call_id)
            if sharing is None:
                break
            await sharing.wait()  # then shared, or still here if writing it failed
        if call_id in self._shared_calls:
            return False
        async with self._settling.hold(call_id):
            if call_id in self._homed:
                return True
            if call_id not in self._shared_calls:
                await self._settle(call_id)
            return call_id in self._homed

    async def _settle(self, call_id: int) -> None:
        """Claim the call, take it over from a dead home, or have a live home
        share it; waits at most ``_SHARE_WAIT_S`` for that home."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SHARE_WAIT_S
        dead = asked = ""
        while True:
            home = str(
                await self._claim(
                    keys=[self._home_key(call_id)], args=[self.origin, _HOME_TTL_S, dead]
                )
            )
            if home == self.origin:
                self._homed.add(call_id)
                return
            if home == _SHARED:
                self._remember_shared(call_id)
                return
            if not await self._beacon.alive(home):
                dead = home  # its users went with it: claim the call afresh
                continue
            if home != asked:
                await self._redis.publish(share_channel(self._prefix, home), str(call_id))
                asked = home
            if loop.time() >= deadline:
                raise PresenceUnavailableError(
                    f"the process holding call {call_id} ({home}) did not share it"
                )
            await asyncio.sleep(_SHARE_POLL_S)

    async def _release(self, call_id: int) -> None:
        """Delete the home key if it still names this process."""
        try:
            await self._hand_over(keys=[self._home_key(call_id)], args=[self.origin, "", 0])
        except Exception as exc:  # the key expires; a share request for it is answered anyway
            logger.warning(
                "could not release call %s: %s",
                call_id,
                exc,
                extra={"event": "presence.release_failed", "call_id": call_id},
            )

    async def _sweep_forever(self, interval_s: float) -> None:
        """Let go of calls homed here with nothing in them: a call is
        released when it ends, but an event that comes after the end (a
        media server's, say) claims it again, and so does a call everybody
        left; without this, such homes would pile up."""
        while True:
            await asyncio.sleep(interval_s)
            for call_id in [c for c in self._homed if self._local.presence_of(c).is_empty]:
                async with self._locks.hold(call_id), self._settling.hold(call_id):
                    if call_id in self._homed and self._local.presence_of(call_id).is_empty:
                        self._homed.discard(call_id)
                        await self._release(call_id)

    def _remember_shared(self, call_id: int) -> None:
        self._shared_calls[call_id] = None
        if len(self._shared_calls) > _SHARED_REMEMBERED:
            self._shared_calls.popitem(last=False)

    async def _requested(self, call_id: str) -> None:
        if call_id.isdigit():
            task = asyncio.create_task(self._share(int(call_id)))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _share(self, call_id: int) -> None:
        """Another process needs the call: write its presence to Redis and
        mark it shared (a call this process no longer holds: mark it shared
        if the key still names this process)."""
        async with self._locks.hold(call_id), self._settling.hold(call_id):
            try:
                if call_id not in self._homed:
                    await self._hand_over(
                        keys=[self._home_key(call_id)], args=[self.origin, _SHARED, _HOME_TTL_S]
                    )
                    return
                # Changes that take no lock wait for the event, so nothing
                # changes what is being written.
                sharing = self._sharing[call_id] = asyncio.Event()
                self._homed.discard(call_id)
                try:
                    await self._shared.restore(
                        call_id,
                        self._local.presence_of(call_id),
                        then=(self._home_key(call_id), _SHARED),
                    )
                except BaseException:
                    self._homed.add(call_id)  # stays here; the asker retries or gives up
                    raise
                else:
                    await self._local.clear(call_id, ())
                    self._remember_shared(call_id)
                finally:
                    del self._sharing[call_id]
                    sharing.set()
                logger.info(
                    "call %s shared",
                    call_id,
                    extra={"event": "presence.shared", "call_id": call_id},
                )
            except Exception as exc:
                logger.warning(
                    "could not share call %s: %s",
                    call_id,
                    exc,
                    extra={"event": "presence.share_failed", "call_id": call_id},
                )


def share_channel(prefix: str, origin: str) -> str:
    """Where a process hears that others need the calls it is the home of."""
    return f"{prefix}:presence:share:{origin}"
