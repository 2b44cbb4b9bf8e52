"""The timed rules of the call lifecycle, as pure functions of a call and a time."""

from __future__ import annotations

from datetime import datetime

from persistence.models import CallChanges, CallRecord, CallState, EndReason

_WINDOW_STATES = (CallState.SCHEDULED, CallState.OPEN, CallState.WAITING, CallState.CONNECTING)
#: What a countdown fixes, and what cutting it short clears.
COUNTDOWN_INSTANTS = frozenset({"live_at", "ends_at"})
#: States whose next instant (``live_at``, ``ends_at``) a process's own clock meets.
IN_CALL_STATES = frozenset({CallState.COUNTDOWN, CallState.LIVE})


def next_deadline(call: CallRecord) -> datetime | None:
    """When the call next needs the timer, or ``None`` if never again."""
    state = call.state
    if state is CallState.SCHEDULED:
        return call.opens_at
    if state in _WINDOW_STATES:
        return call.closes_at
    if state is CallState.COUNTDOWN:
        return call.live_at
    if state is CallState.LIVE:
        return call.ends_at
    return None


def due_change(call: CallRecord, now: datetime) -> tuple[str, CallChanges] | None:
    """The change a timer firing at ``now`` makes to ``call``, named by kind.

    ``None`` when nothing is due yet (a timer that fired early or twice). The
    deadlines come from the record, never from the job, so a stale job of a
    countdown that was cancelled and restarted cannot go live early.
    """
    state = call.state
    if state in _WINDOW_STATES and call.closes_at <= now:
        return "missed", CallChanges(
            state=CallState.MISSED, ended_at=now, end_reason=EndReason.MISSED
        )
    if state is CallState.SCHEDULED and call.opens_at <= now:
        return "open", CallChanges(state=CallState.OPEN)
    if state is CallState.COUNTDOWN and call.live_at is not None and call.live_at <= now:
        # The process that ran this countdown is gone (a crash, a restart):
        # it was cut short, and the call waits for both users again, as after
        # a drop. Only that process's own clock takes a countdown live.
        return "interrupted", CallChanges(state=CallState.OPEN, clear=COUNTDOWN_INSTANTS)
    if state is CallState.LIVE and call.ends_at is not None and call.ends_at <= now:
        return "ended", CallChanges(
            state=CallState.ENDED, ended_at=now, end_reason=EndReason.TIME_LIMIT
        )
    return None
