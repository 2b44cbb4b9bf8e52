"""signaling.calls.state.presence_state: the pre-live state presence means."""

from __future__ import annotations

import pytest

from persistence.models import FINAL_STATES, CallChanges, CallState
from signaling.calls.state import presence_state
from tests.unit.records import record

CLEAR = frozenset({"live_at", "ends_at"})
BY_COUNT = {0: CallState.OPEN, 1: CallState.WAITING, 2: CallState.CONNECTING}


@pytest.mark.parametrize(
    "state", [CallState.OPEN, CallState.WAITING, CallState.CONNECTING, CallState.COUNTDOWN]
)
@pytest.mark.parametrize("present", [0, 1, 2, 3])
def test_pre_live_states_follow_presence(state: CallState, present: int) -> None:
    target = BY_COUNT[min(present, 2)]
    change = presence_state(record(state), present)
    if target is state:
        assert change is None
    else:
        # Leaving countdown this way cancels it: its instants are cleared.
        assert change == CallChanges(state=target, clear=CLEAR)


@pytest.mark.parametrize("state", [CallState.SCHEDULED, CallState.LIVE, *sorted(FINAL_STATES)])
@pytest.mark.parametrize("present", [0, 1, 2])
def test_other_states_ignore_presence(state: CallState, present: int) -> None:
    assert presence_state(record(state), present) is None


def test_a_running_countdown_with_both_present_goes_back_to_connecting() -> None:
    # A rejoin during the countdown means a new negotiation.
    assert presence_state(record(CallState.COUNTDOWN), 2) == CallChanges(
        state=CallState.CONNECTING, clear=CLEAR
    )
