"""Store contract for presence: which connection of which user is in which call."""

from __future__ import annotations

import abc


class PresenceStore(abc.ABC):
    """Who is in a call right now, by connection id.

    Kept out of the call record on purpose: presence changes on every join,
    drop and reconnect, and it does not survive a restart (clients rejoin).
    """

    @abc.abstractmethod
    async def enter(self, call_id: int, user_id: str, sid: str) -> str | None:
        """Record ``sid`` as the user's connection in the call; returns the
        connection it replaced, if any."""

    @abc.abstractmethod
    async def leave(self, call_id: int, user_id: str, sid: str) -> bool:
        """Remove the user if ``sid`` is still their connection (a replaced
        connection leaving must not evict its successor)."""

    @abc.abstractmethod
    async def members(self, call_id: int) -> dict[str, str]:
        """user id -> connection id of everybody in the call."""

    @abc.abstractmethod
    async def clear(self, call_id: int) -> None: ...
