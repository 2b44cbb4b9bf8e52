"""CallTimers: every effect exactly once, whenever and however often a job fires."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from persistence.factory import Stores
from persistence.models import CallRecord, CallState, EndReason, utcnow
from scheduler.service import CallTimers
from tests.contract.states import drive_to, ms
from tests.unit.conftest import QUESTIONS
from tests.unit.doubles import RecordingNotifier, assert_on_time

TO = RecordingNotifier.TO


async def window_call(stores: Stores, opens_in: float, closes_in: float) -> CallRecord:
    now = utcnow()
    return await stores.calls.create(
        "alice", "bob", now + ms(opens_in + 1), now + ms(opens_in), now + ms(closes_in)
    )


async def countdown_call(stores: Stores, live_in: float, limit_s: float) -> CallRecord:
    call = await window_call(stores, -10, 600)
    live_at = utcnow() + ms(live_in)
    return await drive_to(
        stores.calls, call, CallState.COUNTDOWN, live_at=live_at, ends_at=live_at + ms(limit_s)
    )


async def test_firing_twice_opens_the_window_once(
    stores: Stores, timers: CallTimers, notifier: RecordingNotifier
) -> None:
    call = await window_call(stores, -1, 600)

    first = await timers.fire(call.id, call.opens_at)
    second = await timers.fire(call.id, call.opens_at)

    assert first is not None and first.state is CallState.OPEN
    assert second == first
    assert notifier.count("call_soon") == 1
    for user, partner in (("alice", "bob"), ("bob", "alice")):
        notes = await stores.notifications.list_for_user(user)
        assert [(n.kind, n.payload["partner_id"]) for n in notes] == [("call_soon", partner)]


async def test_concurrent_fires_have_one_effect(
    stores: Stores, timers: CallTimers, notifier: RecordingNotifier
) -> None:
    call = await countdown_call(stores, live_in=-0.5, limit_s=60)
    results = await asyncio.gather(*(timers.fire(call.id) for _ in range(5)))
    assert {r.state for r in results if r is not None} == {CallState.LIVE}
    assert notifier.count("call_live") == 1


async def test_firing_early_does_nothing(
    stores: Stores, timers: CallTimers, notifier: RecordingNotifier
) -> None:
    call = await window_call(stores, 60, 600)
    assert await timers.fire(call.id) == call
    assert notifier.log == []
    assert await stores.notifications.list_for_user("alice") == []


async def test_firing_late_catches_up_every_step_once(
    stores: Stores, notifier: RecordingNotifier
) -> None:
    lateness: list[tuple[str, float]] = []
    timers = CallTimers(
        stores.calls,
        stores.notifications,
        stores.questions,
        notifier,
        observe_lateness=lambda kind, seconds: lateness.append((kind, seconds)),
    )
    call = await countdown_call(stores, live_in=-2, limit_s=1)

    final = await timers.fire(call.id, call.live_at)
    assert await timers.fire(call.id, call.live_at) == final

    assert final is not None
    assert (final.state, final.end_reason) == (CallState.ENDED, EndReason.TIME_LIMIT)
    assert final.started_at == call.live_at  # the limit counts from the planned instant
    assert [s.event for s in notifier.log] == ["call_live", "call_ended"]
    assert notifier.questions[0] is not None and notifier.questions[0].text in QUESTIONS
    assert [kind for kind, _ in lateness] == ["live"]
    assert lateness[0][1] >= 2


async def test_a_closed_window_is_missed_once(
    stores: Stores, timers: CallTimers, notifier: RecordingNotifier
) -> None:
    call = await window_call(stores, -20, -1)  # never opened: straight to missed
    for _ in range(2):
        missed = await timers.fire(call.id)
        assert missed is not None
        assert (missed.state, missed.end_reason) == (CallState.MISSED, EndReason.MISSED)
    assert [s.event for s in notifier.log] == ["call_ended"]
    assert await stores.notifications.list_for_user("bob") == []


async def test_firing_for_an_unknown_call_is_harmless(
    timers: CallTimers, notifier: RecordingNotifier
) -> None:
    assert await timers.fire(404) is None
    assert notifier.log == []


async def test_sweep_fires_every_overdue_call(
    stores: Stores, timers: CallTimers, notifier: RecordingNotifier
) -> None:
    overdue = [await window_call(stores, -1, 600), await countdown_call(stores, -1, 60)]
    await window_call(stores, 60, 600)  # not due yet

    assert await timers.sweep() == 2
    assert await timers.sweep() == 0
    assert sorted(s.event for s in notifier.log) == ["call_live", "call_soon"]
    assert sorted(c.id for c in notifier.calls) == sorted(c.id for c in overdue)


@pytest.fixture
async def started() -> AsyncIterator[list[CallTimers]]:
    """Timers a test starts; whatever is still running is shut down after it."""
    running: list[CallTimers] = []
    yield running
    for timers in running:
        await timers.shutdown()


async def test_after_a_restart_new_timers_rearm_and_end_the_call_on_time(
    stores: Stores, started: list[CallTimers]
) -> None:
    before_restart, after_restart = RecordingNotifier(), RecordingNotifier()
    call = await countdown_call(stores, live_in=0.4, limit_s=0.3)
    await window_call(stores, 3600, 7200)  # unfinished too, but nothing due for an hour

    old = CallTimers(stores.calls, stores.notifications, stores.questions, before_restart)
    started.append(old)
    assert await old.start() == 2
    await old.shutdown()  # the process dies before the countdown ends

    new = CallTimers(stores.calls, stores.notifications, stores.questions, after_restart)
    started.append(new)
    assert await new.start() == 2

    (live,) = await after_restart.wait_for(TO, "call_live")
    (ended,) = await after_restart.wait_for(TO, "call_ended")
    assert_on_time(live.at, call.live_at)
    assert_on_time(ended.at, call.ends_at)
    final = await stores.calls.get(call.id)
    assert final is not None
    assert (final.state, final.end_reason) == (CallState.ENDED, EndReason.TIME_LIMIT)
    assert before_restart.log == []
    assert after_restart.count("call_live") == after_restart.count("call_ended") == 1


async def test_rearming_after_the_deadline_fires_at_once(
    stores: Stores, notifier: RecordingNotifier, started: list[CallTimers]
) -> None:
    call = await countdown_call(stores, live_in=-5, limit_s=60)
    timers = CallTimers(stores.calls, stores.notifications, stores.questions, notifier)
    started.append(timers)
    await timers.start()
    await notifier.wait_for(TO, "call_live")
    current = await stores.calls.get(call.id)
    assert current is not None
    assert (current.state, current.started_at) == (CallState.LIVE, call.live_at)
