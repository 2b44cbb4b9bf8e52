"""The REST use cases of calls: book, list, read, cancel, and the user's
notifications. Presence and the in-call clock are the call machine's
(:mod:`signaling.calls.machine`); this reads what it holds (``HeldCalls``) so
REST never contradicts what users were told."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from persistence.calls import CallStore, NoticesOf, NotificationStore, TooManyOpenCallsError
from persistence.models import (
    PRE_LIVE_STATES,
    CallChanges,
    CallRecord,
    CallState,
    EndReason,
    Notification,
    as_utc,
    utcnow,
)
from scheduler.service import CallTimers, window_for
from signaling.calls.state import CallRules, HeldCalls
from signaling.errors import ApiError, conflict, invalid, not_found
from signaling.quotas import Quotas

logger = logging.getLogger(__name__)


#: Stores a new call given its window (opens_at, closes_at), the booking
#: quota and what to store if the window is open already (open_max and
#: opened, as CallStore.create); see CallService.schedule.
CreateCall = Callable[[datetime, datetime, int, NoticesOf | None], Awaitable[CallRecord]]


class CallService:
    """What the REST routes (and gifts) do with calls."""

    def __init__(
        self,
        *,
        calls: CallStore,
        notifications: NotificationStore,
        held: HeldCalls,
        timers: CallTimers,
        finish: Callable[[CallRecord], Awaitable[None]],
        rules: CallRules,
        quotas: Quotas | None = None,
    ) -> None:
        self._calls = calls
        self._notifications = notifications
        self._held = held
        self._timers = timers
        self._finish = finish
        self._rules = rules
        self._quotas = quotas

    async def flush(self, call_id: int | None = None) -> None:
        """Wait until what was decided for the call (or all) is in the database."""
        await self._held.writer.flush(call_id)

    async def schedule(
        self,
        caller_id: str,
        partner_id: str,
        scheduled_at: datetime,
        *,
        create: CreateCall | None = None,
    ) -> CallRecord:
        """Validate and book a call, then arm its timer.

        ``create`` replaces the plain insert when the call is born together
        with something else in one transaction (a special gift): it gets the
        window and the booking quota, and must return the stored call.
        """
        if partner_id == caller_id:
            raise invalid("partner_id: you cannot call yourself")
        scheduled_at = as_utc(scheduled_at)
        now = utcnow()
        if scheduled_at <= now:
            raise invalid("scheduled_at: must be in the future")
        if scheduled_at > now + timedelta(days=366):
            raise invalid("scheduled_at: at most a year ahead")
        open_max = 0
        if self._quotas is not None:
            await self._quotas.check_booking(caller_id)
            open_max = self._quotas.rules.calls_open_max
        opens_at, closes_at = window_for(
            scheduled_at, self._rules.notify_before_s, self._rules.join_grace_s
        )
        # Booked inside its window: the call is born open, its notifications
        # in the insert's transaction (one transaction, not three).
        opened = self._timers.window_notices if opens_at <= now else None
        try:
            if create is None:
                call = await self._calls.create(
                    caller_id,
                    partner_id,
                    scheduled_at,
                    opens_at,
                    closes_at,
                    open_max=open_max,
                    opened=opened,
                )
            else:
                call = await create(opens_at, closes_at, open_max, opened)
        except TooManyOpenCallsError:
            assert self._quotas is not None  # open_max is 0 without quotas
            raise self._quotas.too_many_open_calls() from None
        logger.info(
            "call %s scheduled",
            call.id,
            extra={"event": "call.scheduled", "call_id": call.id, "caller": caller_id},
        )
        if opened is not None:
            await self._timers.opened(call)
        else:
            self._timers.arm(call)
        return call

    async def list_calls(
        self, user_id: str, limit: int = 100, before: tuple[datetime, int] | None = None
    ) -> list[CallRecord]:
        await self._held.writer.flush()  # REST readers see what users were told
        calls = await self._calls.list_for_user(user_id, limit, before)
        return [self._held.as_told(call) for call in calls]

    async def get_call(self, user_id: str, call_id: int) -> CallRecord:
        await self._held.writer.flush(call_id)
        call = await self._calls.get(call_id)
        if call is None or not call.has_participant(user_id):
            raise not_found()  # REST does not reveal other people's calls
        return self._held.as_told(call)

    async def cancel(self, user_id: str, call_id: int) -> CallRecord:
        await self.get_call(user_id, call_id)
        now = utcnow()

        def decide(call: CallRecord) -> CallChanges | None:
            if call.state is CallState.SCHEDULED or call.state in PRE_LIVE_STATES:
                return CallChanges(
                    state=CallState.CANCELLED, ended_at=now, end_reason=EndReason.CANCELLED
                )
            return None

        before, after = await self._calls.update(call_id, decide, cause=f"cancel by {user_id}")
        if after is None:
            assert before is not None
            if before.state is CallState.LIVE:
                raise conflict("the call is live: leave it to hang up")
            raise ApiError("ended", f"the call is already {before.state.value}")
        self._timers.arm(after)
        await self._finish(after)
        return after

    async def count_by_state(self) -> dict[CallState, int]:
        """Calls per state, as users were told (``/metrics``)."""
        await self._held.writer.flush()
        return await self._calls.count_by_state()

    async def list_notifications(
        self, user_id: str, limit: int, before_id: int | None = None
    ) -> list[Notification]:
        return await self._notifications.list_for_user(user_id, limit, before_id)
