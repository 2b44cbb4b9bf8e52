"""Store contract for presence: which connection of which user is in which
call, who reported a connected peer, and signals held for an absent user."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Entered:
    """What :meth:`PresenceStore.enter` found and left."""

    #: the user's connection that this one replaced, if any
    replaced: str | None
    #: user id -> connection id of everybody in the call, this user included
    members: dict[str, str]
    #: the signals held for the user while absent, taken (oldest first)
    held: tuple[dict[str, Any], ...] = ()


class PresenceUnavailableError(RuntimeError):
    """The process that holds a call's presence did not hand it over in time."""


@dataclass(frozen=True, slots=True)
class CallPresence:
    """Everything presence knows of one call, to move it between stores."""

    #: user id -> connection id
    members: dict[str, str]
    connected: frozenset[str]
    #: recipient -> the signals held for them, oldest first, as (sender, signal)
    held: dict[str, list[tuple[str, dict[str, Any]]]]

    @property
    def is_empty(self) -> bool:
        return not (self.members or self.connected or self.held)


class CallLocks:
    """This process's asyncio lock per call, kept only while somebody holds
    it or waits for it (a lock per call ever seen would grow without end)."""

    def __init__(self) -> None:
        #: call id -> its lock and how many hold it or wait for it
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, call_id: int) -> AsyncIterator[None]:
        lock, users = self._locks.get(call_id, (asyncio.Lock(), 0))
        self._locks[call_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[call_id]
            if users == 1:
                del self._locks[call_id]
            else:
                self._locks[call_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class PresenceStore(abc.ABC):
    """Per-call state that lives as long as the call's users are around.

    Kept out of the call record on purpose: it changes on every join, drop and
    reconnect, and it need not survive a restart (clients rejoin). With several
    server processes it must be shared (Redis); in one process memory will do.
    Changes that must not interleave (join, leave, connected) run under
    :meth:`lock`, which serializes them across every process.
    """

    @abc.abstractmethod
    def lock(self, call_id: int) -> AbstractAsyncContextManager[None]:
        """Mutual exclusion for one call's presence changes."""

    @abc.abstractmethod
    async def enter(self, call_id: int, user_id: str, sid: str) -> Entered:
        """Record ``sid`` as the user's connection in the call, forget who
        was connected (a joining user means a new negotiation) and take the
        signals held for the user (their weight leaves their senders'
        totals), in one step; returns the connection it replaced, everybody
        now in the call and the signals."""

    @abc.abstractmethod
    async def leave(self, call_id: int, user_id: str, sid: str) -> bool:
        """Remove the user if ``sid`` is still their connection (a replaced
        connection leaving must not evict its successor), and then forget who
        was connected (whoever stays negotiates again), in one step."""

    @abc.abstractmethod
    async def members(self, call_id: int) -> dict[str, str]:
        """user id -> connection id of everybody in the call."""

    @abc.abstractmethod
    async def mark_connected(
        self, call_id: int, user_id: str
    ) -> tuple[frozenset[str], dict[str, str]]:
        """Note that the user's peer connection is up; returns, in one step,
        who is connected and everybody in the call (as :meth:`members`)."""

    @abc.abstractmethod
    async def reset_connected(self, call_id: int) -> None:
        """A new negotiation starts: nobody is connected any more."""

    @abc.abstractmethod
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
        """Queue a signal for an absent user; ``False`` (nothing stored) when
        ``limit`` messages are already waiting for them in this call, or when
        what ``sender`` has held, in every call together, would pass
        ``max_bytes`` (0: no byte cap). A message counts its JSON length."""

    @abc.abstractmethod
    async def held_bytes(self, sender: str) -> int:
        """What ``sender``'s held signals weigh, in every call together."""

    @abc.abstractmethod
    async def clear(self, call_id: int, users: Iterable[str]) -> dict[str, str]:
        """Forget everything about the call (it is over), in one step;
        ``users`` are its participants (whose held signals go too, and leave
        their senders' totals). Returns who was in it (as :meth:`members`)."""

    async def ping(self) -> None:  # noqa: B027 (optional hook, a no-op by default)
        """Raise if the backend does not answer."""

    async def close(self) -> None:  # noqa: B027 (optional hook, a no-op by default)
        """Release connections at shut-down."""
