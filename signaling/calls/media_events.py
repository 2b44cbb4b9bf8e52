"""What a media backend reports (``rtc_bridge.base.MediaEvents``), applied to
the calls this process holds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from persistence.presence import PresenceStore
from signaling.calls.connections import JoinedConnections
from signaling.calls.state import HeldCalls, Outbox


class CallMediaEvents:
    """The media backend's :class:`~rtc_bridge.base.MediaEvents`: the
    server's own peer signals a user, a user's media reached the server
    (counts as their ``connected``: ``mark_connected``, the countdown's
    rule), a user's media left it."""

    def __init__(
        self,
        *,
        held: HeldCalls,
        presence: PresenceStore,
        connections: JoinedConnections,
        outbox: Outbox,
        mark_connected: Callable[[int, str], Awaitable[None]],
    ) -> None:
        self._held = held
        self._presence = presence
        self._connections = connections
        self._outbox = outbox
        self._mark_connected = mark_connected

    async def send_signal(self, call_id: int, user_id: str, signal: dict[str, Any]) -> None:
        sid = self._connections.sid_of(call_id, user_id)
        if sid is None:
            sid = (await self._presence.members(call_id)).get(user_id)
        if sid is not None:
            await self._outbox.to_sid(
                sid, "signal", {**signal, "call_id": call_id, "from": "server"}
            )

    async def media_connected(self, call_id: int, user_id: str) -> None:
        if user_id in await self._presence.members(call_id):
            await self._mark_connected(call_id, user_id)

    async def media_left(self, call_id: int, user_id: str) -> None:
        """The user's media dropped while their socket stayed: before live the
        countdown is cancelled until everyone is connected again."""
        async with self._presence.lock(call_id):
            await self._presence.reset_connected(call_id)
            members = await self._presence.members(call_id)
            call = await self._held.view(call_id)
            if call is not None:
                self._held.decide_presence(call, len(members), f"media of {user_id} left")
