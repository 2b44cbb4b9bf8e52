"""The pure timer rules: scheduler.jobs.next_deadline and due_change."""

from __future__ import annotations

from datetime import datetime

import pytest

from persistence.models import (
    ALLOWED_TRANSITIONS,
    FINAL_STATES,
    CallChanges,
    CallState,
    EndReason,
    is_due,
)
from scheduler.jobs import COUNTDOWN_INSTANTS, due_change, next_deadline
from tests.unit.records import CLOSES_AT, ENDS_AT, LIVE_AT, OPENS_AT, at, record

WINDOW_STATES = (CallState.OPEN, CallState.WAITING, CallState.CONNECTING)


@pytest.mark.parametrize(
    ("state", "deadline"),
    [
        (CallState.SCHEDULED, OPENS_AT),
        *((s, CLOSES_AT) for s in WINDOW_STATES),
        (CallState.COUNTDOWN, LIVE_AT),
        (CallState.LIVE, ENDS_AT),
        *((s, None) for s in sorted(FINAL_STATES)),
    ],
)
def test_next_deadline(state: CallState, deadline: datetime | None) -> None:
    assert next_deadline(record(state)) == deadline


def missed(now: datetime) -> tuple[str, CallChanges]:
    return "missed", CallChanges(state=CallState.MISSED, ended_at=now, end_reason=EndReason.MISSED)


@pytest.mark.parametrize("late_s", [0.0, 0.001, 3600.0], ids=["on-time", "1ms-late", "hour-late"])
def test_scheduled_opens_at_its_deadline(late_s: float) -> None:
    call = record(CallState.SCHEDULED)
    assert due_change(call, at(OPENS_AT, -0.001)) is None
    now = at(OPENS_AT, late_s)
    if now < CLOSES_AT:
        assert due_change(call, now) == ("open", CallChanges(state=CallState.OPEN))
    else:  # so late that the window closed too: straight to missed
        assert due_change(call, now) == missed(now)


@pytest.mark.parametrize("state", [CallState.SCHEDULED, *WINDOW_STATES])
@pytest.mark.parametrize("late_s", [0.0, 5.0], ids=["on-time", "late"])
def test_the_window_closes_into_missed(state: CallState, late_s: float) -> None:
    call = record(state)
    if state is not CallState.SCHEDULED:
        assert due_change(call, at(CLOSES_AT, -0.001)) is None
        assert due_change(call, OPENS_AT) is None
    now = at(CLOSES_AT, late_s)
    assert due_change(call, now) == missed(now)


CUT_SHORT = ("interrupted", CallChanges(state=CallState.OPEN, clear=COUNTDOWN_INSTANTS))


@pytest.mark.parametrize("late_s", [0.0, 7.5], ids=["on-time", "late"])
def test_a_countdown_a_database_timer_meets_was_cut_short(late_s: float) -> None:
    # Only the clock of the process running the countdown takes it live; a
    # database timer meets it only when that process is gone.
    call = record(CallState.COUNTDOWN)
    assert due_change(call, at(LIVE_AT, -0.001)) is None
    assert due_change(call, at(LIVE_AT, late_s)) == CUT_SHORT


def test_a_countdown_is_not_missed_while_it_runs_past_the_window() -> None:
    late_live = at(CLOSES_AT, 10)
    call = record(CallState.COUNTDOWN, live_at=late_live, ends_at=at(late_live, 60))
    assert due_change(call, at(CLOSES_AT, 5)) is None
    assert due_change(call, late_live) == CUT_SHORT


def test_a_countdown_without_live_at_is_never_due() -> None:
    call = record(CallState.COUNTDOWN, live_at=None, ends_at=None)
    assert due_change(call, at(LIVE_AT, 10_000)) is None
    assert next_deadline(call) is None


def test_a_stale_deadline_of_a_restarted_countdown_does_nothing() -> None:
    # The countdown planned for LIVE_AT was cancelled and restarted 30 s later:
    # the job armed for LIVE_AT fires on time and must find nothing to do.
    restarted = record(CallState.COUNTDOWN, live_at=at(LIVE_AT, 30), ends_at=at(ENDS_AT, 30))
    assert due_change(restarted, LIVE_AT) is None
    assert due_change(restarted, at(LIVE_AT, 29.999)) is None
    assert due_change(restarted, at(LIVE_AT, 30)) is not None


def test_a_cancelled_countdown_back_in_waiting_is_not_due_at_the_old_live_at() -> None:
    cancelled = record(CallState.WAITING)
    assert due_change(cancelled, LIVE_AT) is None
    assert next_deadline(cancelled) == CLOSES_AT


@pytest.mark.parametrize("late_s", [0.0, 2.0], ids=["on-time", "late"])
def test_live_ends_at_the_time_limit(late_s: float) -> None:
    call = record(CallState.LIVE, started_at=LIVE_AT)
    assert due_change(call, at(ENDS_AT, -0.001)) is None
    now = at(ENDS_AT, late_s)
    assert due_change(call, now) == (
        "ended",
        CallChanges(state=CallState.ENDED, ended_at=now, end_reason=EndReason.TIME_LIMIT),
    )


def test_live_is_not_missed_when_the_window_closes() -> None:
    call = record(CallState.LIVE, live_at=at(CLOSES_AT, -10), ends_at=at(CLOSES_AT, 50))
    assert due_change(call, at(CLOSES_AT, 1)) is None


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
def test_a_final_call_is_never_due(state: CallState) -> None:
    assert due_change(record(state), at(ENDS_AT, 10**6)) is None


@pytest.mark.parametrize("state", list(CallState))
def test_every_due_change_is_an_edge_of_the_state_machine(state: CallState) -> None:
    for now in (OPENS_AT, CLOSES_AT, LIVE_AT, ENDS_AT, at(ENDS_AT, 10**6)):
        due = due_change(record(state), now)
        if due is not None:
            assert due[1].state in ALLOWED_TRANSITIONS[state], (state, now, due)


@pytest.mark.parametrize("state", list(CallState))
def test_a_timer_has_a_change_exactly_when_the_stores_list_the_call_as_due(
    state: CallState,
) -> None:
    for now in (OPENS_AT, CLOSES_AT, LIVE_AT, ENDS_AT, at(ENDS_AT, 10**6)):
        call = record(state)
        assert (due_change(call, now) is not None) is is_due(call, now), (state, now)
