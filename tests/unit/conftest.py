from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from persistence.factory import Stores, open_stores
from scheduler.service import CallTimers
from signaling.calls.state import CallRules
from tests.unit.doubles import Harness, RecordingNotifier

QUESTIONS = ("What made you smile today?", "Tea or coffee?")
#: Short enough to run whole calls in well under a second.
RULES = CallRules(
    countdown_s=0.2,
    limit_s=0.4,
    signal_queue_max=4,
    ice_servers=({"urls": ["stun:stun.example.org:3478"]},),
)


@pytest.fixture
async def stores() -> AsyncIterator[Stores]:
    opened = await open_stores("memory://")
    await opened.questions.seed(QUESTIONS)
    yield opened
    await opened.close()


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


@pytest.fixture
def timers(stores: Stores, notifier: RecordingNotifier) -> CallTimers:
    """Timers that report to a recording notifier; not started, so only the
    test decides when they fire."""
    return CallTimers(stores.calls, notifier, sweep_interval_s=3600)


@pytest.fixture
async def harness(stores: Stores) -> AsyncIterator[Harness]:
    async with Harness.running(stores, RULES) as running:
        yield running
