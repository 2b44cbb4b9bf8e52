"""CallTimers: every effect exactly once, whenever and however often a job fires."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from persistence.factory import Stores
from persistence.models import CallRecord, CallState, EndReason, utcnow
from scheduler.service import CallTimers
from tests.contract.states import drive_to, ms
from tests.unit.doubles import RecordingNotifier, assert_on_time

TO = RecordingNotifier.TO


async def window_call(stores: Stores, opens_in: float, closes_in: float) -> CallRecord:
    now = utcnow()
    return await stores.calls.create(
        "alice", "bob", now + ms(opens_in + 1), now + ms(opens_in), now + ms(closes_in)
    )


async def live_call(stores: Stores, ends_in: float) -> CallRecord:
    """A live call whose limit is ``ends_in`` seconds away (negative: passed)."""
    call = await window_call(stores, -10, 600)
    ends_at = utcnow() + ms(ends_in)
    live_at = ends_at - ms(60)
    return await drive_to(stores.calls, call, CallState.LIVE, live_at=live_at, ends_at=ends_at)


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
    # Its notifications are stored once, with the opening, made from the open call.
    notes = await stores.notifications.list_for_user("alice")
    assert [(n.kind, n.call_id, n.payload) for n in notes] == [
        ("call_soon", call.id, {"call_id": call.id})
    ]


async def test_concurrent_fires_have_one_effect(
    stores: Stores, timers: CallTimers, notifier: RecordingNotifier
) -> None:
    call = await live_call(stores, ends_in=-0.5)
    results = await asyncio.gather(*(timers.fire(call.id) for _ in range(5)))
    assert {r.state for r in results if r is not None} == {CallState.ENDED}
    assert notifier.count("call_ended") == 1
    stored = await stores.calls.get(call.id)
    assert stored is not None and stored.version == call.version + 1


async def test_an_orphaned_countdown_waits_for_both_users_again(
    stores: Stores, timers: CallTimers, notifier: RecordingNotifier
) -> None:
    # No process ran this countdown's clock (it crashed): the database timer
    # cuts it short, as a drop would, instead of going live with nobody in it.
    call = await countdown_call(stores, live_in=-0.5, limit_s=60)
    results = await asyncio.gather(*(timers.fire(call.id) for _ in range(3)))
    assert {r.state for r in results if r is not None} == {CallState.OPEN}
    stored = await stores.calls.get(call.id)
    assert stored is not None
    assert (stored.state, stored.live_at, stored.ends_at) == (CallState.OPEN, None, None)
    assert stored.version == call.version + 1
    assert notifier.log == []


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
        notifier,
        observe_lateness=lambda kind, seconds: lateness.append((kind, seconds)),
    )
    # A countdown orphaned in a window that has closed since: cut short, then missed.
    opened = await window_call(stores, -10, -1)
    live_at = utcnow() - ms(2)
    call = await drive_to(
        stores.calls, opened, CallState.COUNTDOWN, live_at=live_at, ends_at=live_at + ms(60)
    )

    final = await timers.fire(call.id, call.live_at)
    assert await timers.fire(call.id, call.live_at) == final

    assert final is not None
    assert (final.state, final.end_reason) == (CallState.MISSED, EndReason.MISSED)
    assert [s.event for s in notifier.log] == ["call_ended"]
    assert [kind for kind, _ in lateness] == ["interrupted"]
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
    assert [s.event for s in notifier.log] == ["call_soon"]
    assert [c.id for c in notifier.calls] == [overdue[0].id]
    cut_short = await stores.calls.get(overdue[1].id)
    assert cut_short is not None and cut_short.state is CallState.OPEN


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
    call = await live_call(stores, ends_in=0.4)
    await window_call(stores, 3600, 7200)  # unfinished too, but nothing due for an hour

    old = CallTimers(stores.calls, before_restart, takeover_s=0)
    started.append(old)
    assert await old.start() == 2
    await old.shutdown()  # the process dies before the countdown ends

    new = CallTimers(stores.calls, after_restart, takeover_s=0)
    started.append(new)
    assert await new.start() == 2

    (ended,) = await after_restart.wait_for(TO, "call_ended")
    assert_on_time(ended.at, call.ends_at)
    final = await stores.calls.get(call.id)
    assert final is not None
    assert (final.state, final.end_reason) == (CallState.ENDED, EndReason.TIME_LIMIT)
    assert before_restart.log == []
    assert after_restart.count("call_ended") == 1


async def test_rearming_after_the_deadline_fires_at_once(
    stores: Stores, notifier: RecordingNotifier, started: list[CallTimers]
) -> None:
    call = await live_call(stores, ends_in=-5)
    timers = CallTimers(stores.calls, notifier)
    started.append(timers)
    await timers.start()
    await notifier.wait_for(TO, "call_ended")
    current = await stores.calls.get(call.id)
    assert current is not None
    assert (current.state, current.end_reason) == (CallState.ENDED, EndReason.TIME_LIMIT)


async def test_a_change_heard_from_another_process_arms_the_takeover_without_a_read(
    stores: Stores, notifier: RecordingNotifier, started: list[CallTimers]
) -> None:
    timers = CallTimers(stores.calls, notifier, takeover_s=0.1)
    started.append(timers)
    await timers.start()
    # Made live by another process after this one started: only the
    # announcement tells this one about it.
    call = await live_call(stores, ends_in=0.2)
    reads: list[int] = []
    original_get = stores.calls.get

    async def counting_get(call_id: int) -> CallRecord | None:
        reads.append(call_id)
        return await original_get(call_id)

    stores.calls.get = counting_get  # type: ignore[method-assign]
    timers.heard(call.id, CallState.LIVE, call.ends_at)
    await asyncio.sleep(0.05)
    assert reads == []  # armed from the message alone
    (ended,) = await notifier.wait_for(TO, "call_ended")
    # A takeover: the process that ran the clock had its chance first.
    assert call.ends_at is not None
    assert (ended.at - call.ends_at).total_seconds() >= 0.1
    timers.heard(call.id, CallState.ENDED, None)  # the final word drops the job
    assert await timers.sweep() == 0
