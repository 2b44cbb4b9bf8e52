"""Records and enums shared by every store backend."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal


def utcnow() -> datetime:
    """Timezone-aware now; every timestamp in the project is aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Backends that drop tzinfo (SQLite, MySQL) store UTC; put it back."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class CallState(enum.StrEnum):
    """The states of PROTOCOL.md, in lifecycle order."""

    SCHEDULED = "scheduled"
    OPEN = "open"
    WAITING = "waiting"
    CONNECTING = "connecting"
    COUNTDOWN = "countdown"
    LIVE = "live"
    ENDED = "ended"
    MISSED = "missed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({CallState.ENDED, CallState.MISSED, CallState.CANCELLED})
#: States in which the join window is open and the call has not gone live yet.
PRE_LIVE_STATES = frozenset(
    {CallState.OPEN, CallState.WAITING, CallState.CONNECTING, CallState.COUNTDOWN}
)


#: Every edge of the call state machine; anything else is a bug, not a race.
ALLOWED_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.SCHEDULED: frozenset({CallState.OPEN, CallState.MISSED, CallState.CANCELLED}),
    CallState.OPEN: frozenset(
        {CallState.WAITING, CallState.CONNECTING, CallState.MISSED, CallState.CANCELLED}
    ),
    CallState.WAITING: frozenset(
        {CallState.OPEN, CallState.CONNECTING, CallState.MISSED, CallState.CANCELLED}
    ),
    CallState.CONNECTING: frozenset(
        {
            CallState.OPEN,
            CallState.WAITING,
            CallState.COUNTDOWN,
            CallState.MISSED,
            CallState.CANCELLED,
        }
    ),
    CallState.COUNTDOWN: frozenset(
        {
            CallState.OPEN,
            CallState.WAITING,
            CallState.CONNECTING,
            CallState.LIVE,
            CallState.CANCELLED,
        }
    ),
    CallState.LIVE: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
    CallState.MISSED: frozenset(),
    CallState.CANCELLED: frozenset(),
}


#: The instants of a call that its timers act on.
Deadline = Literal["opens_at", "closes_at", "live_at", "ends_at"]

#: The deadlines of each state, the one acted on first when several have come
#: listed first: a window that closed makes a call missed even if it opened. The
#: close is the deadline of exactly the states with an edge to ``missed``
#: (``scheduled`` included, ``countdown`` not: both users are in and connected,
#: and it runs to live whatever the window), so this is not
#: :data:`PRE_LIVE_STATES`. The stores' ``list_due`` and the scheduler's
#: ``next_deadline`` and ``due_change`` all read this table.
DEADLINES: dict[CallState, tuple[Deadline, ...]] = {
    CallState.SCHEDULED: ("closes_at", "opens_at"),
    CallState.OPEN: ("closes_at",),
    CallState.WAITING: ("closes_at",),
    CallState.CONNECTING: ("closes_at",),
    CallState.COUNTDOWN: ("live_at",),
    CallState.LIVE: ("ends_at",),
}


class IllegalTransitionError(ValueError):
    """A transition that is not an edge of the state machine."""


class EndReason(enum.StrEnum):
    TIME_LIMIT = "time_limit"
    LEFT = "left"
    CANCELLED = "cancelled"
    MISSED = "missed"
    REPLACED = "replaced"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One scheduled call as stored.

    ``version`` grows by one on every change: writers update with
    compare-and-set on it, so a timer that fires twice (or on two processes)
    changes the call once.
    """

    id: int
    caller_id: str
    callee_id: str
    scheduled_at: datetime
    opens_at: datetime
    closes_at: datetime
    state: CallState
    version: int = 1
    live_at: datetime | None = None
    ends_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: EndReason | None = None
    created_at: datetime = field(default_factory=utcnow)

    def has_participant(self, user_id: str) -> bool:
        return user_id in (self.caller_id, self.callee_id)

    def partner_of(self, user_id: str) -> str:
        return self.callee_id if user_id == self.caller_id else self.caller_id


def deadlines_of(call: CallRecord) -> list[tuple[Deadline, datetime]]:
    """The call's deadlines that are set, in :data:`DEADLINES` order (a
    countdown or live call without its instants has none)."""
    instants = ((name, getattr(call, name)) for name in DEADLINES.get(call.state, ()))
    return [(name, at) for name, at in instants if at is not None]


def passed_deadline(call: CallRecord, now: datetime) -> Deadline | None:
    """The deadline of ``call`` that has come at ``now``, if any (the first in
    :data:`DEADLINES` order): the one a timer firing at ``now`` acts on."""
    return next((name for name, at in deadlines_of(call) if at <= now), None)


def is_due(call: CallRecord, now: datetime) -> bool:
    """Whether a timer firing at ``now`` has something to do: the rule of
    every backend's ``CallStore.list_due``."""
    return passed_deadline(call, now) is not None


@dataclass(frozen=True, slots=True)
class CallChanges:
    """The fields a transition may set; ``None`` leaves a field as it is
    unless it is named in ``clear``."""

    state: CallState
    live_at: datetime | None = None
    ends_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: EndReason | None = None
    clear: frozenset[str] = frozenset()


def apply_changes(call: CallRecord, changes: CallChanges) -> CallRecord:
    """The record ``changes`` turn ``call`` into (one version later); every
    backend writes exactly this."""
    updates: dict[str, Any] = {"state": changes.state, "version": call.version + 1}
    for name in ("live_at", "ends_at", "started_at", "ended_at", "end_reason"):
        value = getattr(changes, name)
        if isinstance(value, datetime):
            updates[name] = as_utc(value)
        elif value is not None:
            updates[name] = value
        elif name in changes.clear:
            updates[name] = None
    return dataclasses.replace(call, **updates)


def then(first: CallChanges, second: CallChanges) -> CallChanges:
    """One change with the effect of ``first`` followed by ``second``."""
    values: dict[str, Any] = {}
    clear = set(first.clear)
    for name in ("live_at", "ends_at", "started_at", "ended_at", "end_reason"):
        later, earlier = getattr(second, name), getattr(first, name)
        if later is not None:
            values[name] = later
            clear.discard(name)
        elif name in second.clear:
            clear.add(name)
        elif earlier is not None:
            values[name] = earlier
    return CallChanges(state=second.state, clear=frozenset(clear), **values)


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    user_id: str
    kind: str
    call_id: int | None
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Question:
    id: int
    text: str
