"""The CallStore contract, run against every backend."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from persistence.calls import (
    CallStore,
    NewNotification,
    NoticesOf,
    TooManyOpenCallsError,
    Update,
)
from persistence.factory import Stores
from persistence.models import (
    ALLOWED_TRANSITIONS,
    FINAL_STATES,
    CallChanges,
    CallRecord,
    CallState,
    EndReason,
    IllegalTransitionError,
    is_due,
    utcnow,
)
from tests.contract.conftest import BACKENDS
from tests.contract.states import T0, always, create_call, drive_to, ms

DATETIME_FIELDS = (
    "scheduled_at",
    "opens_at",
    "closes_at",
    "live_at",
    "ends_at",
    "started_at",
    "ended_at",
    "created_at",
)


class YieldingCallStore(CallStore):
    """Delegates to a real store but yields after every read and before every
    write, so concurrent ``update()`` calls all decide on the same version and
    really race."""

    def __init__(self, inner: CallStore) -> None:
        super().__init__()
        self.inner = inner
        self.lost_races = 0

    async def create(
        self,
        caller_id: str,
        callee_id: str,
        scheduled_at: datetime,
        opens_at: datetime,
        closes_at: datetime,
        *,
        open_max: int = 0,
        opened: NoticesOf | None = None,
    ) -> CallRecord:
        return await self.inner.create(
            caller_id,
            callee_id,
            scheduled_at,
            opens_at,
            closes_at,
            open_max=open_max,
            opened=opened,
        )

    async def get(self, call_id: int) -> CallRecord | None:
        call = await self.inner.get(call_id)
        await asyncio.sleep(0)
        return call

    async def list_for_user(self, user_id: str, limit: int = 100) -> list[CallRecord]:
        return await self.inner.list_for_user(user_id, limit)

    async def transition(
        self, call: CallRecord, changes: CallChanges, notices: NoticesOf | None = None
    ) -> CallRecord | None:
        await asyncio.sleep(0)  # writers deciding on a remembered record race here
        after = await self.inner.transition(call, changes, notices)
        self.lost_races += after is None
        return after

    async def list_unfinished(self) -> list[CallRecord]:
        return await self.inner.list_unfinished()

    async def list_due(self, now: datetime) -> list[CallRecord]:
        return await self.inner.list_due(now)

    async def count_by_state(self) -> dict[CallState, int]:
        return await self.inner.count_by_state()


def ids(calls: Iterable[CallRecord]) -> list[int]:
    return [c.id for c in calls]


def assert_same_instants(read: CallRecord, written: dict[str, datetime | None]) -> None:
    """Every datetime is aware UTC and the instant that was written, to the ms."""
    for name, want in written.items():
        got = getattr(read, name)
        if want is None:
            assert got is None, name
            continue
        assert got.utcoffset() == timedelta(0), f"{name} is not UTC: {got!r}"
        assert abs(got - want) < timedelta(milliseconds=1), f"{name}: {got} != {want}"


# ------------------------------------------------------------ create / get / list


async def test_create_stores_a_scheduled_call_at_version_1(calls: CallStore) -> None:
    before = utcnow()
    call = await calls.create("alice", "bob", T0, T0 - ms(300), T0 + ms(600))

    assert (call.caller_id, call.callee_id) == ("alice", "bob")
    assert (call.scheduled_at, call.opens_at, call.closes_at) == (T0, T0 - ms(300), T0 + ms(600))
    assert call.state is CallState.SCHEDULED and call.version == 1
    assert (call.live_at, call.ends_at, call.started_at, call.ended_at) == (None,) * 4
    assert call.end_reason is None
    assert before - ms(1) <= call.created_at <= utcnow() + ms(1)
    assert await calls.get(call.id) == call


def soon_notices(call: CallRecord) -> list[NewNotification]:
    """Notifications made from the call as written (its id and state)."""
    payload = {"call_id": call.id, "state": call.state.value}
    return [
        NewNotification(call.caller_id, "call_soon", payload),
        NewNotification(call.callee_id, "call_soon", {**payload, "to": "callee"}),
    ]


async def notices_of(stores: Stores, *users: str) -> list[tuple[str, str, int | None, Any]]:
    found = [n for user in users for n in await stores.notifications.list_for_user(user)]
    return sorted((n.user_id, n.kind, n.call_id, n.payload) for n in found)


async def test_a_call_booked_open_is_stored_with_its_notifications(stores: Stores) -> None:
    calls = stores.calls
    call = await calls.create("alice", "bob", T0, T0 - ms(300), T0 + ms(600), opened=soon_notices)

    assert call.state is CallState.OPEN and call.version == 1
    assert await calls.get(call.id) == call
    made = {"call_id": call.id, "state": "open"}
    assert await notices_of(stores, "alice", "bob") == [
        ("alice", "call_soon", call.id, made),
        ("bob", "call_soon", call.id, {**made, "to": "callee"}),
    ]
    (read,) = await stores.notifications.list_for_user("alice")
    assert read.created_at.utcoffset() == timedelta(0)


async def test_a_booking_over_the_quota_stores_no_notification(stores: Stores) -> None:
    await stores.calls.create("alice", "bob", T0, T0, T0 + ms(600), opened=soon_notices)
    with pytest.raises(TooManyOpenCallsError):
        await stores.calls.create(
            "alice", "bob", T0, T0, T0 + ms(600), open_max=1, opened=soon_notices
        )
    assert len(await notices_of(stores, "alice", "bob")) == 2  # the first booking's


async def test_notifications_are_stored_with_the_change_that_wins_only(stores: Stores) -> None:
    calls = stores.calls
    call = await create_call(calls, "alice", "bob")
    open_ = CallChanges(state=CallState.OPEN)

    # A decision of no change and a lost compare-and-set store nothing.
    _, unchanged = await calls.update(call.id, lambda c: None, notices=soon_notices)
    assert unchanged is None
    winner = await calls.transition(call, open_)
    assert await calls.transition(call, open_, soon_notices) is None
    assert await notices_of(stores, "alice", "bob") == []

    # The change that is written stores them, made from what it wrote.
    waiting = CallChanges(state=CallState.WAITING)
    _, after = await calls.update(call.id, lambda c: waiting, notices=soon_notices)
    assert after is not None and winner is not None and after.version == winner.version + 1
    made = {"call_id": call.id, "state": "waiting"}
    assert await notices_of(stores, "alice", "bob") == [
        ("alice", "call_soon", call.id, made),
        ("bob", "call_soon", call.id, {**made, "to": "callee"}),
    ]
    # None to store is nothing stored.
    await calls.update(call.id, lambda c: open_, notices=lambda c: ())
    assert len(await notices_of(stores, "alice", "bob")) == 2


async def test_ids_are_distinct_and_get_of_an_unknown_id_is_none(calls: CallStore) -> None:
    first, second = await create_call(calls), await create_call(calls)
    assert first.id != second.id
    assert await calls.get(second.id + 1000) is None


async def test_list_for_user_is_newest_scheduled_first_and_only_participants(
    calls: CallStore,
) -> None:
    middle = await create_call(calls, "alice", "bob", scheduled_at=T0)
    newest = await create_call(calls, "carol", "alice", scheduled_at=T0 + ms(3600))
    oldest = await create_call(calls, "alice", "dave", scheduled_at=T0 - ms(3600))
    others = await create_call(calls, "bob", "carol", scheduled_at=T0 + ms(7200))

    assert ids(await calls.list_for_user("alice")) == ids([newest, middle, oldest])
    assert ids(await calls.list_for_user("bob")) == ids([others, middle])
    assert ids(await calls.list_for_user("alice", limit=2)) == ids([newest, middle])
    assert await calls.list_for_user("zed") == []
    assert await calls.list_for_user("alice") == [
        await calls.get(i) for i in ids([newest, middle, oldest])
    ]


async def test_list_for_user_is_paged_by_scheduled_at_and_id(calls: CallStore) -> None:
    """``before`` is the (scheduled_at, id) of the last call of a page: the next
    page holds the calls after it in the list's order, ties on
    ``scheduled_at`` broken by the id, so none is skipped or repeated."""
    tied = [await create_call(calls, "alice", "spam", scheduled_at=T0) for _ in range(3)]
    newer = await create_call(calls, "bob", "alice", scheduled_at=T0 + ms(60))
    older = await create_call(calls, "alice", "carol", scheduled_at=T0 - ms(60))
    await create_call(calls, "dave", "erin", scheduled_at=T0 - ms(30))
    order = ids([newer, *sorted(tied, key=lambda c: c.id, reverse=True), older])

    def key(call: CallRecord) -> tuple[datetime, int]:
        return call.scheduled_at, call.id

    seen: list[int] = []
    page = await calls.list_for_user("alice", 2)
    while page:
        assert len(page) <= 2
        seen += ids(page)
        page = await calls.list_for_user("alice", 2, key(page[-1]))
    assert seen == order
    last = await calls.get(order[-1])
    assert last is not None and await calls.list_for_user("alice", 2, key(last)) == []
    middle = await calls.get(order[2])
    assert middle is not None
    assert ids(await calls.list_for_user("alice", 100, key(middle))) == order[3:]


# ------------------------------------------------------------ compare-and-set


async def test_transition_is_compare_and_set_on_the_version(calls: CallStore) -> None:
    call = await create_call(calls)

    opened = await calls.transition(call, CallChanges(state=CallState.OPEN))
    assert opened is not None
    assert (opened.state, opened.version) == (CallState.OPEN, call.version + 1)

    stale = await calls.transition(
        call, CallChanges(state=CallState.CANCELLED, end_reason=EndReason.CANCELLED)
    )
    assert stale is None
    assert await calls.get(call.id) == opened


async def test_transition_of_an_unknown_call_is_none(calls: CallStore) -> None:
    call = await create_call(calls)
    ghost = dataclasses.replace(call, id=call.id + 1000)
    assert await calls.transition(ghost, CallChanges(state=CallState.OPEN)) is None
    assert await calls.get(ghost.id) is None


async def test_update_applies_the_decision_and_returns_before_and_after(
    calls: CallStore,
) -> None:
    call = await create_call(calls)
    before, after = await calls.update(call.id, always(CallChanges(state=CallState.OPEN)))
    assert before == call
    assert after is not None and after == await calls.get(call.id)
    assert (after.state, after.version) == (CallState.OPEN, 2)


async def test_update_without_a_decision_writes_nothing(calls: CallStore) -> None:
    call = await create_call(calls)
    assert await calls.update(call.id, lambda c: None) == (call, None)
    assert await calls.get(call.id) == call


async def test_update_decides_again_on_a_fresh_read_when_its_guess_was_stale(
    calls: CallStore,
) -> None:
    """The store's remembered record of a call that changed behind its back
    (another process) makes a decision an illegal edge: that is a stale
    guess, decided again on the stored record, not an error."""
    call = await create_call(calls, "alice", "bob")
    await calls.transition(call, CallChanges(state=CallState.OPEN))  # not remembered
    _, after = await calls.update(call.id, lambda c: CallChanges(state=CallState.WAITING))
    assert after is not None and after.state is CallState.WAITING and after.version == 3


async def test_transition_each_sets_each_call_on_its_own(calls: CallStore) -> None:
    first, second, third = [await create_call(calls, "alice", f"u{i}") for i in range(3)]
    open_ = CallChanges(state=CallState.OPEN)
    moved = await calls.transition(second, open_)  # second's version moved on
    written = await calls.transition_each([(third, open_), (second, open_), (first, open_)])
    assert [w.state if w else None for w in written] == [CallState.OPEN, None, CallState.OPEN]
    for before, after in ((first, written[2]), (third, written[0])):
        assert after is not None and after.version == before.version + 1
        assert await calls.get(before.id) == after
    assert await calls.get(second.id) == moved
    assert await calls.transition_each([]) == []


async def test_get_each_reads_the_calls_that_exist(calls: CallStore) -> None:
    made = [await create_call(calls, "alice", f"u{i}") for i in range(3)]
    found = await calls.get_each([made[2].id, 10_000, made[0].id])
    assert found == {made[2].id: made[2], made[0].id: made[0]}
    assert await calls.get_each([]) == {}


async def test_update_each_writes_what_it_decided_in_one_group(calls: CallStore) -> None:
    """A group commit: changes decided on the records the store remembers,
    or read for the group, are written together; each call that needs
    ``update`` (no change or an illegal edge decided, a lost compare-and-set,
    no such call) is ``None`` here."""
    made = [await calls.create(f"a{i}", "bob", T0, T0 - ms(300), T0 + ms(600)) for i in range(5)]
    remembered, forgotten, unchanged, stale, illegal = made
    calls.forget_recent(forgotten.id)
    moved = await calls.transition(stale, CallChanges(state=CallState.OPEN))  # behind its back
    assert moved is not None
    open_ = CallChanges(state=CallState.OPEN)
    results = await calls.update_each(
        [
            Update(remembered.id, lambda c: open_, "open"),
            Update(forgotten.id, lambda c: open_, "open"),
            Update(unchanged.id, lambda c: None, "nothing"),
            Update(stale.id, lambda c: CallChanges(state=CallState.CANCELLED), "cancel"),
            Update(illegal.id, lambda c: CallChanges(state=CallState.LIVE), "no edge"),
            Update(10_000, lambda c: open_, "no such call"),
        ]
    )
    assert results[2:] == [None, None, None, None]
    for call, result in zip((remembered, forgotten), results, strict=False):
        assert result is not None
        before, after = result
        assert (before, after.state, after.version) == (call, CallState.OPEN, 2)
        assert calls.recent(call.id) == after == await calls.get(call.id)
    assert await calls.get(stale.id) == moved and calls.recent(stale.id) is None
    for untouched in (unchanged, illegal):
        assert await calls.get(untouched.id) == untouched


async def test_update_of_an_unknown_call_does_not_decide(calls: CallStore) -> None:
    decided: list[CallRecord] = []

    def decide(c: CallRecord) -> CallChanges:
        decided.append(c)
        return CallChanges(state=CallState.OPEN)

    assert await calls.update(12345, decide) == (None, None)
    assert decided == []


async def test_update_refuses_every_non_edge_and_writes_nothing(calls: CallStore) -> None:
    refused = 0
    for source in CallState:
        call = await drive_to(calls, await create_call(calls), source)
        for target in CallState:
            if target is source or target in ALLOWED_TRANSITIONS[source]:
                continue
            with pytest.raises(IllegalTransitionError):
                await calls.update(call.id, always(CallChanges(state=target)))
            refused += 1
        assert await calls.get(call.id) == call
    assert refused > 40  # the table has far more non-edges than edges


@pytest.mark.parametrize("racing", [False, True], ids=["plain", "forced-races"])
async def test_concurrent_updates_all_land_with_increasing_versions(
    calls: CallStore, racing: bool
) -> None:
    store = YieldingCallStore(calls) if racing else calls
    call = await drive_to(store, await create_call(store), CallState.WAITING)
    # At most this many writers race, so even the unluckiest loses fewer
    # times than update() retries (each loss is another writer's win).
    writers = 8

    def one_second_later(c: CallRecord) -> CallChanges:
        return CallChanges(state=c.state, started_at=(c.started_at or T0) + ms(1))

    results = await asyncio.gather(
        *(store.update(call.id, one_second_later) for _ in range(writers))
    )

    versions = []
    for before, after in results:
        assert before is not None and after is not None
        assert after.version == before.version + 1
        versions.append(after.version)
    assert sorted(versions) == list(range(call.version + 1, call.version + writers + 1))
    final = await calls.get(call.id)
    assert final is not None
    assert final.version == call.version + writers
    assert final.started_at == T0 + ms(writers), "an update was lost"
    if isinstance(store, YieldingCallStore):
        assert store.lost_races > 0, "the writers did not race: the test proves nothing"


# ------------------------------------------------------------ fields


async def test_changes_set_fields_and_clear_only_the_named_ones(calls: CallStore) -> None:
    live_at, ends_at = T0 + ms(5), T0 + ms(65)
    countdown = await drive_to(
        calls, await create_call(calls), CallState.COUNTDOWN, live_at=live_at, ends_at=ends_at
    )
    assert (countdown.live_at, countdown.ends_at) == (live_at, ends_at)

    kept = await calls.transition(countdown, CallChanges(state=CallState.CONNECTING))
    assert kept is not None and (kept.live_at, kept.ends_at) == (live_at, ends_at)

    cleared = await calls.transition(
        kept, CallChanges(state=CallState.WAITING, clear=frozenset({"live_at", "ends_at"}))
    )
    assert cleared is not None
    assert (cleared.live_at, cleared.ends_at) == (None, None)
    assert await calls.get(countdown.id) == cleared


async def test_every_optional_field_can_be_set_and_cleared(calls: CallStore) -> None:
    call = await drive_to(calls, await create_call(calls), CallState.WAITING)
    values: dict[str, Any] = {
        "live_at": T0 + ms(1),
        "ends_at": T0 + ms(2),
        "started_at": T0 + ms(3),
        "ended_at": T0 + ms(4),
        "end_reason": EndReason.REPLACED,
    }
    filled = await calls.transition(call, CallChanges(state=CallState.WAITING, **values))
    assert filled is not None
    assert {name: getattr(filled, name) for name in values} == values
    assert await calls.get(call.id) == filled

    emptied = await calls.transition(
        filled, CallChanges(state=CallState.WAITING, clear=frozenset(values))
    )
    assert emptied is not None
    assert {name: getattr(emptied, name) for name in values} == dict.fromkeys(values)
    assert await calls.get(call.id) == emptied


# ------------------------------------------------------------ queries


async def test_list_unfinished_is_every_call_not_in_a_final_state(calls: CallStore) -> None:
    by_state = {s: await drive_to(calls, await create_call(calls), s) for s in CallState}
    unfinished = await calls.list_unfinished()
    assert sorted(ids(unfinished)) == sorted(
        c.id for s, c in by_state.items() if s not in FINAL_STATES
    )
    assert all(c == by_state[c.state] for c in unfinished)


async def test_count_by_state(calls: CallStore) -> None:
    assert await calls.count_by_state() == {}
    for state, n in ((CallState.SCHEDULED, 3), (CallState.LIVE, 2), (CallState.MISSED, 1)):
        for _ in range(n):
            await drive_to(calls, await create_call(calls), state)
    assert await calls.count_by_state() == {
        CallState.SCHEDULED: 3,
        CallState.LIVE: 2,
        CallState.MISSED: 1,
    }


async def book(calls: CallStore, caller: str, callee: str, open_max: int) -> CallRecord:
    return await calls.create(caller, callee, T0, T0 - ms(300), T0 + ms(600), open_max=open_max)


async def test_the_booking_quota_counts_only_the_callers_calls_not_over(
    calls: CallStore,
) -> None:
    for state in (CallState.SCHEDULED, CallState.WAITING, CallState.LIVE, CallState.ENDED):
        await drive_to(calls, await create_call(calls, "alice", "bob"), state)
    await drive_to(calls, await create_call(calls, "alice", "carol"), CallState.CANCELLED)
    await create_call(calls, "bob", "alice")  # booked by bob: not alice's quota
    # Alice has 3 calls not over: a 4th is refused at 3 and nothing is stored.
    with pytest.raises(TooManyOpenCallsError):
        await book(calls, "alice", "dave", open_max=3)
    assert len(await calls.list_for_user("alice")) == 6
    assert (await book(calls, "alice", "dave", open_max=4)).caller_id == "alice"
    assert (await book(calls, "bob", "alice", open_max=2)).caller_id == "bob"
    assert (await book(calls, "carol", "alice", open_max=1)).caller_id == "carol"


async def test_concurrent_bookings_of_one_caller_never_pass_the_quota(calls: CallStore) -> None:
    """The count and the insert are one transaction (locking on MySQL, whose
    deadlocks between them are retried): of 6 bookings at once, 3 pass."""
    results = await asyncio.gather(
        *(book(calls, "alice", f"partner{n}", open_max=3) for n in range(6)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, TooManyOpenCallsError)]
    assert len(refused) == 3, results
    assert len(await calls.list_for_user("alice")) == 3


#: (state, opens_at, closes_at, live_at, ends_at) in seconds from ``now``, due?
DUE_CASES: list[tuple[str, CallState, float, float, float, float, bool]] = [
    ("scheduled, window ahead", CallState.SCHEDULED, 1, 10, 0, 0, False),
    ("scheduled, window opens now", CallState.SCHEDULED, 0, 10, 0, 0, True),
    ("scheduled, window open", CallState.SCHEDULED, -1, 10, 0, 0, True),
    ("scheduled, window closed", CallState.SCHEDULED, -20, -1, 0, 0, True),
    *(
        case
        for s in (CallState.OPEN, CallState.WAITING, CallState.CONNECTING)
        for case in (
            (f"{s}, window closes later", s, -10, 1, 0, 0, False),
            (f"{s}, window closes now", s, -10, 0, 0, 0, True),
            (f"{s}, window closed", s, -10, -1, 0, 0, True),
        )
    ),
    ("countdown, live ahead (window closed)", CallState.COUNTDOWN, -20, -1, 1, 61, False),
    ("countdown, live now", CallState.COUNTDOWN, -10, 10, 0, 60, True),
    ("countdown, live passed", CallState.COUNTDOWN, -10, 10, -1, 59, True),
    ("live, limit ahead", CallState.LIVE, -20, -10, -5, 1, False),
    ("live, limit now", CallState.LIVE, -20, 10, -5, 0, True),
    ("live, limit passed", CallState.LIVE, -20, 10, -5, -1, True),
    *(
        (f"{s}, all in the past", s, -20, -10, -5, -1, False)
        for s in (CallState.ENDED, CallState.MISSED, CallState.CANCELLED)
    ),
]


async def make_due_cases(calls: CallStore, now: datetime) -> dict[str, CallRecord]:
    made = {}
    for label, state, opens, closes, live, ends, _ in DUE_CASES:
        call = await calls.create(
            "alice", "bob", now + ms(opens), now + ms(opens), now + ms(closes)
        )
        made[label] = await drive_to(
            calls, call, state, live_at=now + ms(live), ends_at=now + ms(ends)
        )
    return made


async def test_list_due_follows_every_rule_of_is_due(calls: CallStore) -> None:
    made = await make_due_cases(calls, T0)
    due = await calls.list_due(T0)

    expected = {label for label, *_, is_expected in DUE_CASES if is_expected}
    assert {label for label, call in made.items() if call.id in ids(due)} == expected
    assert sorted(ids(due)) == sorted(c.id for c in made.values() if is_due(c, T0))
    assert all(c == made_call for c in due for made_call in made.values() if made_call.id == c.id)


@pytest.mark.parametrize("state", sorted(set(CallState) - FINAL_STATES))
async def test_a_closed_window_is_due_in_exactly_the_states_that_can_be_missed(
    calls: CallStore, state: CallState
) -> None:
    """Only the window's close has come (its opening and the countdown's
    instants are ahead): the call is due exactly when the state machine lets
    it be missed. Not the same set as ``PRE_LIVE_STATES``: a ``scheduled``
    call is missed, a ``countdown`` runs to live whatever the window."""
    call = await calls.create("alice", "bob", T0, T0 + ms(10), T0 - ms(0.001))
    call = await drive_to(calls, call, state, live_at=T0 + ms(10), ends_at=T0 + ms(70))

    due = call.id in ids(await calls.list_due(T0))

    assert due is (CallState.MISSED in ALLOWED_TRANSITIONS[state])


async def test_list_due_agrees_on_every_backend(tmp_path: Path) -> None:
    answers: dict[str, list[str]] = {}
    for backend in BACKENDS:
        folder = tmp_path / backend.name
        folder.mkdir()
        async with backend.open(folder) as stores:
            made = await make_due_cases(stores.calls, T0)
            due = set(ids(await stores.calls.list_due(T0)))
            answers[backend.name] = sorted(label for label, c in made.items() if c.id in due)
    assert len(set(map(tuple, answers.values()))) == 1, answers


# ------------------------------------------------------------ time zones


def written_instants(at: datetime, live_at: datetime) -> dict[str, datetime | None]:
    """What :func:`live_call` writes, field by field."""
    return {
        "scheduled_at": at,
        "opens_at": at - ms(300),
        "closes_at": at + ms(600),
        "live_at": live_at,
        "ends_at": live_at + ms(60),
        "started_at": live_at,
        "ended_at": None,
    }


async def live_call(calls: CallStore, at: datetime, live_at: datetime) -> CallRecord:
    call = await calls.create("alice", "bob", at, at - ms(300), at + ms(600))
    return await drive_to(calls, call, CallState.LIVE, live_at=live_at, ends_at=live_at + ms(60))


async def test_datetimes_read_back_aware_utc_and_unchanged(calls: CallStore) -> None:
    live_at = T0 + timedelta(seconds=5, microseconds=123456)
    created_before = utcnow()
    live = await live_call(calls, T0, live_at)
    ended = await drive_to(
        calls, await create_call(calls, "carol", "dave"), CallState.ENDED, ended_at=T0 + ms(99)
    )
    expected = written_instants(T0, live_at)

    reads = [
        await calls.get(live.id),
        *await calls.list_for_user("alice"),
        *await calls.list_unfinished(),
        *await calls.list_due(live_at + ms(61)),
    ]
    assert len(reads) == 4
    for read in reads:
        assert read is not None and read.id == live.id
        assert_same_instants(read, expected)
        assert read.created_at.utcoffset() == timedelta(0)
        assert created_before - ms(1) <= read.created_at <= utcnow() + ms(1)
    read_ended = await calls.get(ended.id)
    assert read_ended is not None
    assert_same_instants(read_ended, {"ended_at": T0 + ms(99)})


async def test_datetimes_in_another_zone_read_back_as_the_same_utc_instant(
    calls: CallStore,
) -> None:
    plus_two = timezone(timedelta(hours=2))
    at, live_at = T0.astimezone(plus_two), (T0 + ms(1)).astimezone(plus_two)
    live = await live_call(calls, at, live_at)

    for read in (live, await calls.get(live.id)):
        assert read is not None
        assert_same_instants(read, written_instants(T0, T0 + ms(1)))
