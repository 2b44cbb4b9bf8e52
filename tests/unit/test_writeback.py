"""The write-behind's group commit: calls' changes that wait together are
written in one transaction, a REST reader hurries them, and a group that
fails is written call by call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from persistence.calls import Decision, NoticesOf
from persistence.memory import MemoryCallStore
from persistence.models import CallChanges, CallRecord, CallState, utcnow
from scheduler.writeback import WriteBehind
from tests.contract.states import ms


class CountingStore(MemoryCallStore):
    """Counts group transactions and single writes; fails groups on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[int] = []
        self.singles = 0
        self.fail_groups = 0

    async def transition_each(
        self, writes: Sequence[tuple[CallRecord, CallChanges]]
    ) -> list[CallRecord | None]:
        if self.fail_groups:
            self.fail_groups -= 1
            raise ConnectionError("the database went away for a moment")
        self.groups.append(len(writes))
        written = []
        for call, changes in writes:  # not counted as single writes
            written.append(await MemoryCallStore.transition(self, call, changes))
        return written

    async def transition(
        self, call: CallRecord, changes: CallChanges, notices: NoticesOf | None = None
    ) -> CallRecord | None:
        self.singles += 1
        return await super().transition(call, changes, notices)


async def booked(calls: MemoryCallStore, n: int) -> list[CallRecord]:
    now = utcnow()
    return [
        await calls.create(f"a{i}", f"b{i}", now + ms(60), now - ms(1), now + ms(600))
        for i in range(n)
    ]


def to(state: CallState) -> Decision:
    """The rule "the call is in ``state``" (no change once it is)."""
    return lambda call: CallChanges(state=state) if call.state is not state else None


async def test_changes_that_wait_together_are_one_transaction() -> None:
    calls = CountingStore()
    told: list[tuple[int, CallState | None]] = []

    async def written(call_id: int, before: CallRecord | None, after: CallRecord | None) -> None:
        told.append((call_id, after.state if after else None))

    writer = WriteBehind(calls, written, linger_s=0.05)
    opened = await booked(calls, 5)
    for call in opened:
        writer.submit(call.id, to(CallState.OPEN), "open")
    assert writer.pending() == 5
    await asyncio.sleep(0.2)  # the linger passes: nobody hurried it
    assert calls.groups == [5] and calls.singles == 0
    assert sorted(told) == [(c.id, CallState.OPEN) for c in opened]
    assert writer.pending() == 0
    for call in opened:
        stored = await calls.get(call.id)
        assert stored is not None and stored.state is CallState.OPEN


async def test_a_flush_does_not_wait_for_the_linger() -> None:
    calls = CountingStore()

    async def written(call_id: int, before: CallRecord | None, after: CallRecord | None) -> None:
        return None

    writer = WriteBehind(calls, written, linger_s=30.0)
    (call,) = await booked(calls, 1)
    writer.submit(call.id, to(CallState.OPEN), "open")
    await asyncio.wait_for(writer.flush(call.id), timeout=5)
    stored = await calls.get(call.id)
    assert stored is not None and stored.state is CallState.OPEN
    assert not writer.pending_for(call.id)


async def test_a_group_that_fails_is_written_call_by_call() -> None:
    calls = CountingStore()
    calls.fail_groups = 1
    told: list[CallState | None] = []

    async def written(call_id: int, before: CallRecord | None, after: CallRecord | None) -> None:
        told.append(after.state if after else None)

    writer = WriteBehind(calls, written, linger_s=0.01)
    opened = await booked(calls, 3)
    for call in opened:
        writer.submit(call.id, to(CallState.OPEN), "open")
    await writer.flush()
    assert calls.groups == [] and calls.singles == 3
    assert told == [CallState.OPEN] * 3


async def test_a_calls_next_change_waits_for_its_write_in_flight() -> None:
    """Two groups at once never hold the same call: its next change is
    written after the one being written, from what that wrote."""
    calls = CountingStore()
    seen: list[tuple[CallState | None, CallState | None]] = []

    async def written(call_id: int, before: CallRecord | None, after: CallRecord | None) -> None:
        seen.append((before.state if before else None, after.state if after else None))

    writer = WriteBehind(calls, written, linger_s=0.0, max_writers=4)
    first, second = await booked(calls, 2)
    writer.submit(first.id, to(CallState.OPEN), "open")
    writer.submit(second.id, to(CallState.OPEN), "open")
    await asyncio.sleep(0)  # the first group has taken both
    writer.submit(first.id, to(CallState.WAITING), "alice in")
    await writer.flush()
    assert (CallState.OPEN, CallState.WAITING) in seen
    assert seen.count((CallState.SCHEDULED, CallState.OPEN)) == 2
    stored = await calls.get(first.id)
    assert stored is not None and (stored.state, stored.version) == (CallState.WAITING, 3)


async def test_an_urgent_change_is_written_without_the_linger() -> None:
    """``live`` must be in the database at once: a restart that does not
    find it takes the countdown for one a crash cut short."""
    calls = CountingStore()
    written_at: list[float] = []
    done = asyncio.Event()

    async def written(call_id: int, before: CallRecord | None, after: CallRecord | None) -> None:
        written_at.append(asyncio.get_running_loop().time())
        done.set()

    writer = WriteBehind(calls, written, linger_s=30.0)
    first, second = await booked(calls, 2)
    writer.submit(first.id, to(CallState.OPEN), "open")  # may wait for the linger…
    await asyncio.sleep(0.05)
    assert not done.is_set()
    writer.submit(second.id, to(CallState.OPEN), "went live", urgent=True)  # …not this
    await asyncio.wait_for(done.wait(), timeout=5)
    await asyncio.sleep(0)
    assert calls.groups == [2]  # what waited went with it
    for call in (first, second):
        stored = await calls.get(call.id)
        assert stored is not None and stored.state is CallState.OPEN
