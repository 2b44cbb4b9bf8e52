"""The timed rules of the call lifecycle, as pure functions of a call and a time.

Which instant is due in which state is :data:`persistence.models.DEADLINES`,
the one table the stores' ``list_due`` reads too; here is what a timer does
about it.
"""

from __future__ import annotations

from datetime import datetime

from persistence.models import (
    CallChanges,
    CallRecord,
    CallState,
    EndReason,
    deadlines_of,
    passed_deadline,
)

#: What a countdown fixes, and what cutting it short clears.
COUNTDOWN_INSTANTS = frozenset({"live_at", "ends_at"})
#: States whose next instant (``live_at``, ``ends_at``) a process's own clock meets.
IN_CALL_STATES = frozenset({CallState.COUNTDOWN, CallState.LIVE})


def next_deadline(call: CallRecord) -> datetime | None:
    """When the call next needs the timer, or ``None`` if never again."""
    return min((at for _name, at in deadlines_of(call)), default=None)


def due_change(call: CallRecord, now: datetime) -> tuple[str, CallChanges] | None:
    """The change a timer firing at ``now`` makes to ``call``, named by kind.

    ``None`` when nothing is due yet (a timer that fired early or twice). The
    deadlines come from the record, never from the job, so a stale job of a
    countdown that was cancelled and restarted cannot go live early.
    """
    match passed_deadline(call, now):
        case "closes_at":
            return "missed", CallChanges(
                state=CallState.MISSED, ended_at=now, end_reason=EndReason.MISSED
            )
        case "opens_at":
            return "open", CallChanges(state=CallState.OPEN)
        case "live_at":
            # The process that ran this countdown is gone (a crash, a restart):
            # it was cut short, and the call waits for both users again, as
            # after a drop. Only that process's own clock takes a countdown live.
            return "interrupted", CallChanges(state=CallState.OPEN, clear=COUNTDOWN_INSTANTS)
        case "ends_at":
            return "ended", CallChanges(
                state=CallState.ENDED, ended_at=now, end_reason=EndReason.TIME_LIMIT
            )
        case None:
            return None
