"""Reach any call state through legal edges only, via the store contract.

Shared by the contract suite and the unit tests of the services built on it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from persistence.calls import CallStore, Decision
from persistence.models import CallChanges, CallRecord, CallState, EndReason

#: A fixed instant with millisecond precision: what every backend must keep.
T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

_PRE_LIVE = (CallState.OPEN, CallState.WAITING, CallState.CONNECTING)

#: The states passed through (after ``scheduled``) to reach each state.
PATHS: dict[CallState, tuple[CallState, ...]] = {
    CallState.SCHEDULED: (),
    CallState.OPEN: _PRE_LIVE[:1],
    CallState.WAITING: _PRE_LIVE[:2],
    CallState.CONNECTING: _PRE_LIVE,
    CallState.COUNTDOWN: (*_PRE_LIVE, CallState.COUNTDOWN),
    CallState.LIVE: (*_PRE_LIVE, CallState.COUNTDOWN, CallState.LIVE),
    CallState.ENDED: (*_PRE_LIVE, CallState.COUNTDOWN, CallState.LIVE, CallState.ENDED),
    CallState.MISSED: (CallState.MISSED,),
    CallState.CANCELLED: (CallState.CANCELLED,),
}


def ms(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


async def create_call(
    store: CallStore,
    caller: str = "alice",
    callee: str = "bob",
    *,
    scheduled_at: datetime = T0,
    opens_in: float = -300.0,
    closes_in: float = 600.0,
) -> CallRecord:
    """A ``scheduled`` call whose window is given relative to ``scheduled_at``."""
    return await store.create(
        caller, callee, scheduled_at, scheduled_at + ms(opens_in), scheduled_at + ms(closes_in)
    )


def always(changes: CallChanges) -> Decision:
    """A decision that makes ``changes`` whatever the call looks like."""
    return lambda _call: changes


def step_changes(
    state: CallState, *, live_at: datetime, ends_at: datetime, ended_at: datetime
) -> CallChanges:
    """The changes a real writer makes when it moves a call into ``state``."""
    if state is CallState.COUNTDOWN:
        return CallChanges(state=state, live_at=live_at, ends_at=ends_at)
    if state is CallState.LIVE:
        return CallChanges(state=state, started_at=live_at)
    if state is CallState.ENDED:
        return CallChanges(state=state, ended_at=ended_at, end_reason=EndReason.TIME_LIMIT)
    if state is CallState.MISSED:
        return CallChanges(state=state, ended_at=ended_at, end_reason=EndReason.MISSED)
    if state is CallState.CANCELLED:
        return CallChanges(state=state, ended_at=ended_at, end_reason=EndReason.CANCELLED)
    return CallChanges(state=state)


async def drive_to(
    store: CallStore,
    call: CallRecord,
    target: CallState,
    *,
    live_at: datetime | None = None,
    ends_at: datetime | None = None,
    ended_at: datetime | None = None,
) -> CallRecord:
    """Move ``call`` to ``target`` through :data:`PATHS` with ``update()``."""
    live = live_at or call.scheduled_at
    ends = ends_at or live + ms(60)
    ended = ended_at or ends
    for state in PATHS[target]:
        changes = step_changes(state, live_at=live, ends_at=ends, ended_at=ended)
        _, after = await store.update(call.id, always(changes), cause="test")
        assert after is not None and after.state is state
        call = after
    return call
