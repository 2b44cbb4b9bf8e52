"""Deadline-first: what users see never waits on the database.

The call store here answers every write only after a delay far longer than
the countdown; the events still arrive on their instants, and the database
catches up with the same outcome, once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from persistence.calls import NoticesOf
from persistence.factory import Stores, open_stores
from persistence.memory import MemoryCallStore
from persistence.models import CallChanges, CallRecord, CallState, EndReason, Question
from persistence.questions import CachedQuestionStore, QuestionStore
from scheduler.instants import InstantTimers
from scheduler.writeback import WriteBehind
from signaling.calls.connections import Joined, JoinedConnections
from tests.contract.states import ms
from tests.unit.conftest import QUESTIONS, RULES
from tests.unit.doubles import Harness

#: Far longer than RULES' countdown (0.2 s) and limit (0.4 s).
WRITE_DELAY_S = 0.8
#: How late an instant may reach a user here (the loop, not the database).
PROMPT_S = 0.1


class SlowCallStore(MemoryCallStore):
    """A database whose every write waits: a queue of other calls' writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[CallState] = []

    async def transition(
        self, call: CallRecord, changes: CallChanges, notices: NoticesOf | None = None
    ) -> CallRecord | None:
        await asyncio.sleep(WRITE_DELAY_S)
        written = await super().transition(call, changes, notices)
        if written is not None:
            self.writes.append(written.state)
        return written


@pytest.fixture
async def slow() -> AsyncIterator[tuple[Harness, SlowCallStore]]:
    stores = await open_stores("memory://")
    await stores.questions.seed(QUESTIONS)
    calls = SlowCallStore()
    stores = Stores(
        calls=calls,
        notifications=stores.notifications,
        questions=stores.questions,
        presence=stores.presence,
        rooms=stores.rooms,
        gifts=stores.gifts,
        messages=stores.messages,
    )
    async with Harness.running(stores, RULES) as harness:
        yield harness, calls
    await stores.close()


def late_s(at: datetime, instant: datetime) -> float:
    return (at - instant).total_seconds()


async def test_a_slow_database_delays_no_instant(slow: tuple[Harness, SlowCallStore]) -> None:
    harness, calls = slow
    call = await harness.schedule()  # booked open (REST: the database first)
    assert call.state is CallState.OPEN
    await harness.both_in(call.id)
    await harness.connected("a1", call.id)
    await harness.connected("b1", call.id)

    countdown = (await harness.outbox.wait_for("a1", "countdown"))[0]
    live = (await harness.outbox.wait_for("a1", "live"))[0]
    ended = (await harness.outbox.wait_for("a1", "ended"))[0]
    # Joins and the countdown cost no write on the way: all at once.
    assert calls.writes == []
    live_at = datetime.fromisoformat(countdown.payload["live_at"].replace("Z", "+00:00"))
    ends_at = datetime.fromisoformat(live.payload["ends_at"].replace("Z", "+00:00"))
    assert 0 <= late_s(live.at, live_at) < PROMPT_S
    assert 0 <= late_s(ended.at, ends_at) < PROMPT_S
    assert ended.payload == {"call_id": call.id, "reason": "time_limit"}
    assert live.payload["question"]["text"] in QUESTIONS
    for sid in ("a1", "b1"):
        assert harness.outbox.events(sid) == (
            ["countdown", "live", "ended"]
            if sid == "b1"
            else ["partner_joined", "countdown", "live", "ended"]
        )

    # The database follows in order, with the instants the users were told;
    # what queued up while it was busy was written as one change.
    stored = await harness.call(call.id)
    assert calls.writes[-1] is CallState.ENDED
    assert len(calls.writes) < 6, calls.writes  # some steps shared a write
    assert calls.writes == sorted(calls.writes, key=list(CallState).index)
    assert (stored.state, stored.end_reason) == (CallState.ENDED, EndReason.TIME_LIMIT)
    assert stored.started_at == live_at and stored.ends_at == ends_at


async def test_the_database_timer_leaves_a_running_clock_alone(
    slow: tuple[Harness, SlowCallStore],
) -> None:
    harness, calls = slow
    call = await harness.schedule()
    await harness.both_in(call.id)
    await harness.connected("a1", call.id)
    await harness.connected("b1", call.id)
    await harness.outbox.wait_for("a1", "live")
    # A backup job firing now (the owner's write of `live` is still queued)
    # must neither send `live` again nor end the call.
    assert await harness.timers.fire(call.id) is None
    await harness.outbox.wait_for("a1", "ended")
    await harness.service.flush(call.id)
    await asyncio.sleep(0.1)
    assert harness.outbox.events("a1").count("live") == 1
    assert harness.outbox.events("a1").count("ended") == 1
    assert calls.writes.count(CallState.ENDED) == 1


async def test_a_drop_during_the_countdown_cancels_it_in_memory_and_behind(
    slow: tuple[Harness, SlowCallStore],
) -> None:
    harness, calls = slow
    call = await harness.schedule()
    await harness.both_in(call.id)
    await harness.connected("a1", call.id)
    await harness.connected("b1", call.id)
    await harness.outbox.wait_for("a1", "countdown")
    await harness.disconnect("b1")
    await asyncio.sleep(RULES.countdown_s + RULES.limit_s + 0.1)
    assert "live" not in harness.outbox.events("a1")
    stored = await harness.call(call.id)
    assert stored.state is CallState.WAITING and stored.live_at is None
    # The countdown's write and the drop's: one after the other, or one
    # write of both steps if they waited together; never live.
    assert calls.writes[-1] is CallState.WAITING and CallState.LIVE not in calls.writes


async def test_a_hang_up_is_sent_first_and_written_once(
    slow: tuple[Harness, SlowCallStore],
) -> None:
    harness, calls = slow
    call = await harness.schedule()
    await harness.both_in(call.id)
    await harness.connected("a1", call.id)
    await harness.connected("b1", call.id)
    await harness.outbox.wait_for("b1", "live")
    await harness.leave("a1", call.id)
    ended = await harness.outbox.wait_for("b1", "ended")
    assert ended[0].payload == {"call_id": call.id, "reason": "left"}
    stored = await harness.call(call.id)
    assert (stored.state, stored.end_reason) == (CallState.ENDED, EndReason.LEFT)
    await asyncio.sleep(RULES.limit_s)
    assert harness.outbox.events("b1").count("ended") == 1
    assert calls.writes.count(CallState.ENDED) == 1


# ------------------------------------------------------------ the parts


async def test_instant_timers_replace_cancel_and_fire_a_passed_instant_at_once() -> None:
    fired: list[str] = []
    lateness: list[tuple[str, float]] = []
    instants = InstantTimers(lambda kind, s: lateness.append((kind, s)))

    async def note(what: str) -> None:
        fired.append(what)

    from persistence.models import utcnow

    instants.arm(1, utcnow() + ms(0.05), "live", lambda: note("first"))
    instants.arm(1, utcnow() + ms(0.05), "live", lambda: note("replacement"))
    instants.arm(2, utcnow() + ms(0.05), "live", lambda: note("cancelled"))
    instants.cancel(2)
    instants.arm(3, utcnow() - ms(5), "ended", lambda: note("passed"))
    assert instants.holds(1) and not instants.holds(2)
    await asyncio.sleep(0.15)
    assert sorted(fired) == ["passed", "replacement"]
    assert not instants.holds(1)
    late = dict(lateness)
    assert late["ended"] >= 5 and 0 <= late["live"] < PROMPT_S
    await instants.close()


async def test_write_behind_keeps_each_calls_order_and_retries_a_failed_write() -> None:
    calls = MemoryCallStore()
    now = __import__("persistence.models", fromlist=["utcnow"]).utcnow()
    call = await calls.create("alice", "bob", now + ms(60), now - ms(1), now + ms(600))
    failures = {"left": 1}
    original = calls.transition

    async def flaky(
        record: CallRecord, changes: CallChanges, notices: NoticesOf | None = None
    ) -> CallRecord | None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("the database went away for a moment")
        return await original(record, changes, notices)

    calls.transition = flaky  # type: ignore[method-assign]
    seen: list[tuple[CallState | None, CallState | None]] = []

    async def written(_: int, before: CallRecord | None, after: CallRecord | None) -> None:
        seen.append((before.state if before else None, after.state if after else None))

    writer = WriteBehind(calls, written)
    writer.submit(call.id, lambda c: CallChanges(state=CallState.OPEN), "open")
    await writer.flush()
    # Queued together: written as one change, each step checked in order.
    for state in (CallState.WAITING, CallState.CONNECTING):
        writer.submit(call.id, lambda c, s=state: CallChanges(state=s), f"to {state}")
    writer.submit(
        call.id,
        lambda c: (
            CallChanges(state=CallState.COUNTDOWN, live_at=now, ends_at=now + ms(60))
            if c.state is CallState.CONNECTING
            else None
        ),
        "countdown",
    )
    assert writer.pending_for(call.id)
    await writer.flush()
    assert not writer.pending_for(call.id)
    assert seen == [
        (CallState.SCHEDULED, CallState.OPEN),
        (CallState.OPEN, CallState.COUNTDOWN),
    ]
    stored = await calls.get(call.id)
    assert stored is not None and stored.version == call.version + 2
    assert (stored.live_at, stored.ends_at) == (now, now + ms(60))


async def test_write_behind_refuses_a_batch_with_an_illegal_step() -> None:
    calls = MemoryCallStore()
    now = __import__("persistence.models", fromlist=["utcnow"]).utcnow()
    call = await calls.create("alice", "bob", now + ms(60), now - ms(1), now + ms(600))
    seen: list[tuple[CallRecord | None, CallRecord | None]] = []

    async def written(_: int, before: CallRecord | None, after: CallRecord | None) -> None:
        seen.append((before, after))

    writer = WriteBehind(calls, written)
    writer.submit(call.id, lambda c: CallChanges(state=CallState.OPEN), "open")
    writer.submit(call.id, lambda c: CallChanges(state=CallState.LIVE), "no edge open -> live")
    await writer.flush()
    assert seen == [(None, None)]  # given up, loudly (logged)
    assert (await calls.get(call.id)) == call


class CountingQuestions(QuestionStore):
    def __init__(self, texts: tuple[str, ...]) -> None:
        self.reads = 0
        self._questions = [Question(i + 1, t) for i, t in enumerate(texts)]

    async def add(self, text: str) -> Question:
        question = Question(len(self._questions) + 1, text)
        self._questions.append(question)
        return question

    async def count(self) -> int:
        return len(self._questions)

    async def random(self) -> Question | None:
        self.reads += 1
        return self._questions[0]

    async def all(self) -> list[Question]:
        self.reads += 1
        return list(self._questions)


async def test_the_question_bank_answers_from_memory() -> None:
    store = CountingQuestions(QUESTIONS)
    bank = CachedQuestionStore(store)
    assert await bank.load() == len(QUESTIONS)
    reads = store.reads
    drawn = {(await bank.random()).text for _ in range(200)}  # type: ignore[union-attr]
    assert drawn == set(QUESTIONS) and store.reads == reads
    added = await bank.add("A new one?")
    assert added in await bank.all()
    await bank.close()


def test_joined_connections_keep_a_successor_when_the_replaced_one_goes() -> None:
    joined = JoinedConnections()
    joined.add("old", Joined(7, "alice", "bob"))
    joined.add("new", Joined(7, "alice", "bob"))  # alice's second tab took over
    joined.add("b1", Joined(7, "bob", "alice"))
    assert joined.remove("old") is not None
    assert joined.sid_of(7, "alice") == "new"
    joined.drop_call(7)
    assert joined.get("new") is None and joined.sid_of(7, "bob") is None


async def test_a_join_after_a_countdown_ran_out_elsewhere_finds_the_call_live(
    harness: Harness,
) -> None:
    # The process that ran the countdown died just after sending `live`,
    # before writing it: the instants it wrote stand for whoever comes back.
    from persistence.models import utcnow
    from tests.contract.states import drive_to

    call = await harness.schedule()
    live_at = utcnow() - ms(0.05)
    await drive_to(
        harness.stores.calls, call, CallState.COUNTDOWN, live_at=live_at, ends_at=live_at + ms(1)
    )
    ack = await harness.join("b2", "bob", call.id)
    assert ack["call"]["state"] == "live"
    assert ack["ends_at"] is not None
    stored = await harness.call(call.id)
    assert (stored.state, stored.started_at) == (CallState.LIVE, live_at)
    # ... and its end runs on this process's clock.
    ended = await harness.outbox.wait_for("b2", "ended")
    assert ended[0].payload == {"call_id": call.id, "reason": "time_limit"}


async def test_an_instant_never_runs_before_its_wall_clock_time() -> None:
    from persistence.models import utcnow

    instants = InstantTimers()
    early: list[float] = []
    done = asyncio.Event()
    remaining = 40

    for call_id in range(remaining):
        at = utcnow() + ms(0.001 * (call_id % 7))

        async def check(at: datetime = at) -> None:
            nonlocal remaining
            early.append((at - utcnow()).total_seconds())
            remaining -= 1
            if remaining == 0:
                done.set()

        instants.arm(call_id, at, "ended", check)
    await asyncio.wait_for(done.wait(), 5)
    assert max(early) <= 0, max(early)
    await instants.close()


async def test_two_connections_crossing_between_calls_do_not_deadlock(harness: Harness) -> None:
    first = await harness.schedule()
    second = await harness.schedule()
    await harness.join("s1", "alice", first.id)
    await harness.join("s2", "bob", second.id)
    presence = harness.stores.presence
    plain_lock = presence.lock

    @contextlib.asynccontextmanager
    async def lingering_lock(call_id: int) -> AsyncIterator[None]:
        async with plain_lock(call_id):
            await asyncio.sleep(0.01)  # as a Redis round trip would: others run meanwhile
            yield

    presence.lock = lingering_lock  # type: ignore[method-assign]
    # Each moves to the call the other is leaving, at the same moment.
    acks = await asyncio.wait_for(
        asyncio.gather(harness.join("s1", "alice", second.id), harness.join("s2", "bob", first.id)),
        2.0,
    )
    assert all(ack["ok"] for ack in acks)
    assert await harness.stores.presence.members(first.id) == {"bob": "s2"}
    assert await harness.stores.presence.members(second.id) == {"alice": "s1"}


async def test_an_instant_that_fails_hands_the_call_to_the_database_timers(
    harness: Harness,
) -> None:
    call = await harness.schedule()
    await harness.both_in(call.id)
    await harness.connected("a1", call.id)
    await harness.connected("b1", call.id)
    await harness.outbox.wait_for("a1", "countdown")
    assert await harness.machine.held.runs_clock(call.id)
    presence = harness.stores.presence
    plain_members = presence.members

    async def broken_members(call_id: int) -> dict[str, str]:
        raise ConnectionError("presence went away")

    presence.members = broken_members  # type: ignore[method-assign]
    await asyncio.sleep(RULES.countdown_s + 0.1)
    presence.members = plain_members  # type: ignore[method-assign]
    assert "live" not in harness.outbox.events("a1")
    # The clock let go: the database timers (the sweep) may act on the call now.
    await harness.service.flush(call.id)
    assert not await harness.machine.held.runs_clock(call.id)


async def test_live_is_stored_without_waiting_for_the_group(stores: Stores) -> None:
    """The other changes of a call may wait for the write-behind's group (a
    long linger here); ``live`` may not: a server killed just after sending
    it must find the call live at restart, not an orphaned countdown."""
    import dataclasses

    rules = dataclasses.replace(RULES, write_linger_s=30.0, limit_s=30.0)
    async with Harness.running(stores, rules) as harness:
        call = await harness.schedule()
        await harness.both_in(call.id)
        await harness.connected("a1", call.id)
        await harness.connected("b1", call.id)
        await harness.outbox.wait_for("a1", "live")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0  # far less than the 30 s linger
        while (stored := await stores.calls.get(call.id)) is None or (
            stored.state is not CallState.LIVE
        ):
            assert loop.time() < deadline, f"live not stored: {stored}"
            await asyncio.sleep(0.01)
        assert stored.live_at is not None and stored.ends_at is not None
