"""Build call records directly, for the pure rules."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from persistence.models import CallRecord, CallState
from tests.contract.states import T0

OPENS_AT = T0 - timedelta(seconds=300)
CLOSES_AT = T0 + timedelta(seconds=600)
LIVE_AT = T0 + timedelta(seconds=60)
ENDS_AT = LIVE_AT + timedelta(seconds=60)


def record(state: CallState, **fields: Any) -> CallRecord:
    """A call scheduled at ``T0`` with a 300 s / 600 s window, in ``state``;
    a countdown or live call gets ``LIVE_AT``/``ENDS_AT`` unless told otherwise."""
    if state in (CallState.COUNTDOWN, CallState.LIVE):
        fields.setdefault("live_at", LIVE_AT)
        fields.setdefault("ends_at", ENDS_AT)
    return CallRecord(
        id=1,
        caller_id="alice",
        callee_id="bob",
        scheduled_at=T0,
        opens_at=OPENS_AT,
        closes_at=CLOSES_AT,
        state=state,
        **fields,
    )


def at(base: datetime, seconds: float) -> datetime:
    return base + timedelta(seconds=seconds)
