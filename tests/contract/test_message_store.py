"""One contract suite for the chat stores, run against every backend:
messages on memory, SQLite and a real MongoDB wire server; rooms and gifts on
memory and SQLite."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from persistence.calls import CallStore, NewNotification, TooManyOpenCallsError
from persistence.chat import MessageStore, RoomStore
from persistence.gifts import GiftBox, GiftKind, GiftStore
from persistence.migrate import upgrade
from persistence.models import CallRecord, CallState, utcnow
from persistence.sql import SqlCallStore, SqlGiftStore, create_engine
from signaling.wire import message_wire
from tests.contract import message_backends

# The fixtures live in message_backends.py (tests/contract/conftest.py is shared).
mongo_server = message_backends.mongo_server
message_store = message_backends.message_store
chat_sql_stores = message_backends.chat_sql_stores

ROOM = 7


async def test_seq_starts_at_one_per_room(message_store: MessageStore) -> None:
    assert await message_store.last_seq(ROOM) == 0
    first, created = await message_store.append(ROOM, "alice", "hello", "c1")
    assert created and first.seq == 1
    assert (first.room_id, first.sender_id, first.content, first.client_msg_id) == (
        ROOM,
        "alice",
        "hello",
        "c1",
    )
    other, _ = await message_store.append(ROOM + 1, "bob", "elsewhere", "c1")
    assert other.seq == 1
    second, _ = await message_store.append(ROOM, "bob", "hi", "c1")
    assert second.seq == 2
    assert await message_store.last_seq(ROOM) == 2
    assert first.created_at.tzinfo is not None
    wire = message_wire(second)
    assert set(wire) == {"room_id", "seq", "sender_id", "content", "created_at", "client_msg_id"}
    assert wire["created_at"].endswith("Z")


async def test_a_retried_send_stores_once(message_store: MessageStore) -> None:
    first, created = await message_store.append(ROOM, "alice", "hello", "same")
    again, created_again = await message_store.append(ROOM, "alice", "hello", "same")
    assert created and not created_again
    assert again == first
    nxt, _ = await message_store.append(ROOM, "alice", "next", "other")
    assert nxt.seq == 2
    assert [m.seq for m in await message_store.after(ROOM, 0, 100)] == [1, 2]


async def test_concurrent_retries_of_one_message_store_it_once_without_a_gap(
    message_store: MessageStore,
) -> None:
    results = await asyncio.gather(
        *(message_store.append(ROOM, "alice", "once", "retry-me") for _ in range(20))
    )
    assert sum(created for _, created in results) == 1
    assert {m.seq for m, _ in results} == {1}
    nxt, _ = await message_store.append(ROOM, "bob", "after", "b1")
    assert nxt.seq == 2


async def test_two_users_times_200_concurrent_sends_get_seq_1_to_400(
    message_store: MessageStore,
) -> None:
    sends = [
        message_store.append(ROOM, user, f"{user} {i}", f"{user}-{i}")
        for i in range(200)
        for user in ("alice", "bob")
    ]
    results = await asyncio.gather(*sends)
    assert all(created for _, created in results)
    seqs = sorted(m.seq for m, _ in results)
    assert seqs == list(range(1, 401))
    stored = await message_store.after(ROOM, 0, 1000)
    assert [m.seq for m in stored] == list(range(1, 401))
    by_seq = {m.seq: m for m, _ in results}
    assert all(by_seq[m.seq] == m for m in stored)
    # Each sender's own messages keep the order they were stored in.
    assert await message_store.last_seq(ROOM) == 400


async def test_history_pages_newest_first_with_before_seq(message_store: MessageStore) -> None:
    for i in range(1, 26):
        await message_store.append(ROOM, "alice" if i % 2 else "bob", f"m{i}", f"c{i}")
    page = await message_store.before(ROOM, None, 10)
    assert [m.seq for m in page] == list(range(25, 15, -1))
    page = await message_store.before(ROOM, page[-1].seq, 10)
    assert [m.seq for m in page] == list(range(15, 5, -1))
    page = await message_store.before(ROOM, page[-1].seq, 10)
    assert [m.seq for m in page] == [5, 4, 3, 2, 1]
    assert await message_store.before(ROOM, 1, 10) == []
    assert await message_store.before(ROOM + 1, None, 10) == []


async def test_after_returns_the_missed_messages_in_order(message_store: MessageStore) -> None:
    for i in range(1, 11):
        await message_store.append(ROOM, "alice", f"m{i}", f"c{i}")
    assert [m.seq for m in await message_store.after(ROOM, 6, 100)] == [7, 8, 9, 10]
    assert [m.content for m in await message_store.after(ROOM, 0, 3)] == ["m1", "m2", "m3"]
    assert await message_store.after(ROOM, 10, 100) == []


async def test_unread_counts_follow_each_users_read_marker(message_store: MessageStore) -> None:
    other = ROOM + 1
    empty = await message_store.summaries("bob", [other])
    assert empty[other].unread_count == 0 and empty[other].last_message is None
    for i in range(3):
        await message_store.append(ROOM, "alice", f"a{i}", f"a{i}")
    for i in range(2):
        await message_store.append(ROOM, "bob", f"b{i}", f"b{i}")
    bob = (await message_store.summaries("bob", [ROOM, other]))[ROOM]
    alice = (await message_store.summaries("alice", [ROOM]))[ROOM]
    assert (bob.unread_count, alice.unread_count) == (3, 2)
    assert bob.last_message is not None and bob.last_message.seq == 5
    assert bob.last_message.content == "b1"

    assert await message_store.mark_read(ROOM, "bob", 2) == 2
    assert (await message_store.summaries("bob", [ROOM]))[ROOM].unread_count == 1
    # A marker never moves back, and never beyond the last message.
    assert await message_store.mark_read(ROOM, "bob", 1) == 2
    assert await message_store.mark_read(ROOM, "bob", 99) == 5
    summary = (await message_store.summaries("bob", [ROOM]))[ROOM]
    assert (summary.unread_count, summary.last_read_seq) == (0, 5)
    await message_store.append(ROOM, "alice", "new", "a-new")
    assert (await message_store.summaries("bob", [ROOM]))[ROOM].unread_count == 1
    # Alice's marker is hers alone.
    assert (await message_store.summaries("alice", [ROOM]))[ROOM].unread_count == 2


async def test_concurrent_read_markers_keep_the_highest(message_store: MessageStore) -> None:
    for i in range(50):
        await message_store.append(ROOM, "alice", f"m{i}", f"c{i}")
    await asyncio.gather(*(message_store.mark_read(ROOM, "bob", s) for s in range(1, 51)))
    assert (await message_store.summaries("bob", [ROOM]))[ROOM].last_read_seq == 50


async def test_ping_answers(message_store: MessageStore) -> None:
    await message_store.ping()


# ------------------------------------------------------------- rooms, gifts


async def test_one_room_per_pair_even_under_a_creation_race(
    chat_sql_stores: tuple[RoomStore, GiftStore, CallStore],
) -> None:
    rooms, _, _ = chat_sql_stores
    results = await asyncio.gather(
        *(
            rooms.get_or_create(*(("alice", "bob") if i % 2 else ("bob", "alice")))
            for i in range(30)
        )
    )
    assert len({room.id for room, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    room = results[0][0]
    assert (room.user_a, room.user_b) == ("alice", "bob")
    assert room.partner_of("alice") == "bob" and room.partner_of("bob") == "alice"
    assert await rooms.get(room.id) == room
    assert await rooms.find("bob", "alice") == room
    other, created = await rooms.get_or_create("alice", "carol")
    assert created and other.id != room.id
    assert {r.id for r in await rooms.list_for_user("alice")} == {room.id, other.id}
    assert [r.id for r in await rooms.list_for_user("bob")] == [room.id]
    assert await rooms.get(10_000) is None


async def test_gift_boxes_are_paged_by_id(
    chat_sql_stores: tuple[RoomStore, GiftStore, CallStore],
) -> None:
    """Newest first, ``limit`` at most, ``before_id`` the cursor: every gift of
    a box is reachable however many others arrive."""
    _, gifts, _ = chat_sql_stores
    made = [await gifts.create("spammer", "bob", f"spam {i}") for i in range(5)]
    other = await gifts.create("carol", "dave", "not bob's")
    ids = [g.id for g in reversed(made)]
    box = GiftBox.RECEIVED
    assert [g.id for g in await gifts.list_for_user("bob", box, 2)] == ids[:2]
    assert [g.id for g in await gifts.list_for_user("bob", box, 2, ids[1])] == ids[2:4]
    assert [g.id for g in await gifts.list_for_user("bob", box, 2, ids[3])] == ids[4:]
    assert await gifts.list_for_user("bob", box, 2, ids[4]) == []
    assert [g.id for g in await gifts.list_for_user("bob", box, 100, other.id + 1)] == ids
    assert [g.id for g in await gifts.list_for_user("spammer", GiftBox.SENT, 3, ids[0])] == ids[1:4]


async def test_gifts_boxes_and_opening(
    chat_sql_stores: tuple[RoomStore, GiftStore, CallStore],
) -> None:
    _, gifts, _ = chat_sql_stores
    first = await gifts.create("alice", "bob", "a rose")
    second = await gifts.create("alice", "bob", "")
    assert first.kind is GiftKind.GENERAL and first.opened_at is None and first.call_id is None
    assert [g.id for g in await gifts.list_for_user("bob", GiftBox.RECEIVED)] == [
        second.id,
        first.id,
    ]
    assert [g.id for g in await gifts.list_for_user("alice", GiftBox.SENT)] == [
        second.id,
        first.id,
    ]
    assert await gifts.list_for_user("alice", GiftBox.RECEIVED) == []
    assert await gifts.has_sent("alice", "bob") and not await gifts.has_sent("bob", "alice")
    at = utcnow()
    opened = await gifts.open(first.id, at)
    assert opened is not None and opened.opened_at is not None
    again = await gifts.open(first.id, at + timedelta(minutes=5))
    assert again is not None and again.opened_at == opened.opened_at
    assert await gifts.get(first.id) == opened
    assert await gifts.open(10_000, at) is None


async def test_a_special_gift_is_stored_with_its_call(
    chat_sql_stores: tuple[RoomStore, GiftStore, CallStore],
) -> None:
    _, gifts, calls = chat_sql_stores
    at = utcnow().replace(microsecond=0) + timedelta(hours=1)
    gift, call = await gifts.create_with_call(
        "alice",
        "bob",
        "let's talk",
        scheduled_at=at,
        opens_at=at - timedelta(minutes=5),
        closes_at=at + timedelta(minutes=10),
    )
    assert gift.kind is GiftKind.SPECIAL and gift.call_id == call.id
    assert gift.scheduled_at == at == call.scheduled_at
    assert (call.caller_id, call.callee_id, call.state) == ("alice", "bob", CallState.SCHEDULED)
    assert await calls.get(call.id) == call
    assert await gifts.get(gift.id) == gift


async def test_a_special_gift_inside_its_window_is_stored_with_its_call_open(
    chat_sql_stores: tuple[RoomStore, GiftStore, CallStore],
) -> None:
    _, gifts, calls = chat_sql_stores
    at = utcnow().replace(microsecond=0) + timedelta(minutes=2)
    made_from: list[CallRecord] = []

    def opened(call: CallRecord) -> list[NewNotification]:
        made_from.append(call)
        return [NewNotification(call.callee_id, "call_soon", {"call_id": call.id})]

    gift, call = await gifts.create_with_call(
        "alice",
        "bob",
        "see you soon",
        scheduled_at=at,
        opens_at=at - timedelta(minutes=5),
        closes_at=at + timedelta(minutes=10),
        opened=opened,
    )
    assert call.state is CallState.OPEN and gift.call_id == call.id
    assert made_from == [call] and await calls.get(call.id) == call


async def test_a_special_gift_over_the_booking_quota_stores_nothing(
    chat_sql_stores: tuple[RoomStore, GiftStore, CallStore],
) -> None:
    _, gifts, calls = chat_sql_stores
    at = utcnow().replace(microsecond=0) + timedelta(hours=1)
    window = {"scheduled_at": at, "opens_at": at, "closes_at": at + timedelta(minutes=10)}
    await gifts.create_with_call("alice", "bob", "one", **window, open_max=1)
    with pytest.raises(TooManyOpenCallsError):
        await gifts.create_with_call("alice", "bob", "two", **window, open_max=1)
    assert len(await calls.list_for_user("alice")) == 1
    assert [g.message for g in await gifts.list_for_user("alice", GiftBox.SENT)] == ["one"]


async def test_a_failed_special_gift_leaves_no_call(tmp_path: Path) -> None:
    """One transaction: when the gift's insert fails, its call is rolled back."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'tx.sqlite3'}")
    await upgrade(engine)
    try:
        gifts, calls = SqlGiftStore(engine), SqlCallStore(engine)
        at = utcnow() + timedelta(hours=1)
        with pytest.raises(sa.exc.IntegrityError):
            await gifts.create_with_call(
                "alice",
                "bob",
                None,  # type: ignore[arg-type]  # NOT NULL: fails after the call's insert
                scheduled_at=at,
                opens_at=at,
                closes_at=at + timedelta(minutes=10),
            )
        assert await calls.list_for_user("alice") == []
        assert await gifts.list_for_user("alice", GiftBox.SENT) == []
    finally:
        await engine.dispose()
