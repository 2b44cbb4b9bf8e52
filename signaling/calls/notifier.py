"""The scheduler's :class:`~scheduler.ports.Notifier`: what a database timer's
transition means to users and to the media."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from persistence.calls import NewNotification
from persistence.models import CallRecord
from rtc_bridge.base import MediaBackend
from signaling.calls.state import HeldCalls, Outbox
from signaling.wire import call_soon_wire


class CallNotifier:
    """Reaches a call's users after a timed transition: ``call_soon`` (the
    stored notification and the event, the same payload) when the window
    opens, ``ended`` through ``finish`` (the call machine's end of a call)."""

    def __init__(
        self,
        *,
        held: HeldCalls,
        media: MediaBackend,
        outbox: Outbox,
        finish: Callable[[CallRecord], Awaitable[None]],
    ) -> None:
        self._held = held
        self._media = media
        self._outbox = outbox
        self._finish = finish

    def call_soon_notices(self, call: CallRecord) -> list[NewNotification]:
        # Stored with the window's opening: a user who is not connected reads it later.
        return [
            NewNotification(user_id, "call_soon", call_soon_wire(call, user_id))
            for user_id in (call.caller_id, call.callee_id)
        ]

    async def call_soon(self, call: CallRecord) -> None:
        await self._media.open_call(call.id, (call.caller_id, call.callee_id))
        for notice in self.call_soon_notices(call):
            await self._outbox.to_user(notice.user_id, "call_soon", notice.payload)

    async def call_ended(self, call: CallRecord) -> None:
        await self._finish(call)

    async def runs_clock(self, call_id: int) -> bool:
        return await self._held.runs_clock(call_id)
