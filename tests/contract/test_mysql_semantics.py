"""What the SQL stores rely on from MySQL/MariaDB, checked on the real server:
rowcounts that count matched rows, compare-and-set under REPEATABLE READ,
deadlocks recognised as retryable, and races between two connection pools
(two server processes) on the chat counters and the room pair key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from pymysql.constants.CLIENT import FOUND_ROWS
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.gifts import GiftBox
from persistence.models import CallChanges, CallState, utcnow
from persistence.sql import (
    SqlCallStore,
    SqlGiftStore,
    SqlMessageStore,
    SqlRoomStore,
    calls_table,
    create_engine,
    is_retryable,
    questions_table,
)
from tests.contract import mysql_scratch
from tests.contract.states import create_call


@pytest.fixture
async def engine(mysql_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the shared scratch database (on ``mysql_url``), its tables empty."""
    made = create_engine(await mysql_scratch.SHARED.fresh())
    try:
        yield made
    finally:
        await made.dispose()


@pytest.fixture
async def second_engine(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """Another pool on the same database: what a second server process has."""
    made = create_engine(mysql_scratch.SHARED.url)
    try:
        yield made
    finally:
        await made.dispose()


async def test_the_server_is_mariadb_at_repeatable_read(engine: AsyncEngine) -> None:
    """The default isolation level is the one the stores are checked at here."""
    async with engine.connect() as conn:
        level = await conn.get_isolation_level()
        assert conn.dialect.name == "mysql"
    assert level == "REPEATABLE READ"


async def test_an_update_reports_the_rows_it_matched_not_only_those_it_changed(
    engine: AsyncEngine,
) -> None:
    # Without CLIENT_FOUND_ROWS MySQL answers 0 here, and a compare-and-set
    # that writes the values already stored would look like a lost race.
    async with engine.begin() as conn:
        result = await conn.execute(questions_table.insert().values(text="same?"))
        question_id = result.inserted_primary_key[0]  # type: ignore[index]
    async with engine.begin() as conn:
        same = await conn.execute(
            questions_table.update().where(questions_table.c.id == question_id).values(text="same?")
        )
        raw = await conn.get_raw_connection()
        assert raw.driver_connection.client_flag & FOUND_ROWS
    assert same.rowcount == 1

    def without_the_flag() -> int:
        with mysql_scratch.SHARED.connect(client_flag=0) as plain, plain.cursor() as cur:
            return int(cur.execute("UPDATE questions SET text = 'same?'"))

    assert await asyncio.to_thread(without_the_flag) == 0, "the server's default changed"


async def test_compare_and_set_holds_inside_a_stale_snapshot(engine: AsyncEngine) -> None:
    """A transaction that read version 1 before another writer moved the call
    to version 2 still cannot write over it: InnoDB's UPDATE reads the latest
    committed row (a locking read), not the transaction's snapshot."""
    calls = SqlCallStore(engine)
    call = await create_call(calls)
    c = calls_table.c
    async with engine.connect() as stale:
        await stale.begin()
        seen = (await stale.execute(sa.select(c.version).where(c.id == call.id))).scalar_one()
        assert seen == 1
        won = await calls.transition(call, CallChanges(state=CallState.OPEN))
        assert won is not None and won.version == 2
        # The snapshot still says version 1 ...
        again = (await stale.execute(sa.select(c.version).where(c.id == call.id))).scalar_one()
        assert again == 1
        # ... yet the compare-and-set on version 1 matches nothing.
        lost = await stale.execute(
            calls_table.update()
            .where(c.id == call.id, c.version == 1)
            .values(state=CallState.CANCELLED.value, version=2)
        )
        assert lost.rowcount == 0
        await stale.rollback()
    assert await calls.get(call.id) == won


async def test_a_deadlock_is_recognised_as_retryable(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(questions_table.insert(), [{"text": "a"}, {"text": "b"}])
    q = questions_table.c
    first_locked, second_locked = asyncio.Event(), asyncio.Event()

    async def lock_in_order(
        first: int, second: int, mine: asyncio.Event, theirs: asyncio.Event
    ) -> None:
        async with engine.begin() as conn:
            await conn.execute(questions_table.update().where(q.id == first).values(text="x"))
            mine.set()
            await theirs.wait()
            await conn.execute(questions_table.update().where(q.id == second).values(text="y"))

    results = await asyncio.wait_for(
        asyncio.gather(
            lock_in_order(1, 2, first_locked, second_locked),
            lock_in_order(2, 1, second_locked, first_locked),
            return_exceptions=True,
        ),
        timeout=30,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1, results
    (error,) = errors
    assert isinstance(error, sa.exc.DBAPIError), error
    assert is_retryable(error), error
    assert not is_retryable(sa.exc.DBAPIError("SELECT 1", None, Exception(1062, "Duplicate entry")))


async def test_two_pools_sending_at_once_share_one_gapless_seq(
    engine: AsyncEngine, second_engine: AsyncEngine
) -> None:
    stores = [SqlMessageStore(engine), SqlMessageStore(second_engine)]
    sends = [
        stores[i % 2].append(9, sender, f"{sender} {i}", f"{sender}-{i}")
        for i in range(100)
        for sender in ("alice", "bob")
    ]
    results = await asyncio.gather(*sends)
    assert sorted(m.seq for m, created in results if created) == list(range(1, 201))
    stored = await stores[0].after(9, 0, 500)
    assert [m.seq for m in stored] == list(range(1, 201))


async def test_two_pools_creating_one_room_at_once_make_one(
    engine: AsyncEngine, second_engine: AsyncEngine
) -> None:
    stores = [SqlRoomStore(engine), SqlRoomStore(second_engine)]
    results = await asyncio.gather(
        *(
            stores[i % 2].get_or_create(*(("alice", "bob") if i % 3 else ("bob", "alice")))
            for i in range(40)
        )
    )
    assert len({room.id for room, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_a_send_chosen_as_deadlock_victim_is_retried_without_a_gap(
    engine: AsyncEngine, second_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """Another transaction (heavier, so InnoDB rolls the send back, not it)
    holds the gap where the message goes and then wants the counter row the
    send holds: a real deadlock. The send runs again and keeps seq 1."""
    store = SqlMessageStore(engine)
    room = 11
    caplog.set_level(logging.INFO, "persistence.sql")
    async with second_engine.connect() as other:
        await other.begin()
        await other.execute(questions_table.insert(), [{"text": f"weight {i}"} for i in range(20)])
        await other.execute(
            sa.text("SELECT * FROM chat_messages WHERE room_id = :room AND seq = 1 FOR UPDATE"),
            {"room": room},
        )
        send = asyncio.create_task(store.append(room, "alice", "hello", "c1"))
        await wait_for_a_lock_wait(engine)
        # Closes the cycle. InnoDB answers the lighter transaction, the send,
        # with 1213 at once; this UPDATE then finds no counter row (the send's
        # insert of it was rolled back) and the send's retry waits for us.
        await other.execute(
            sa.text("UPDATE chat_counters SET last_seq = last_seq WHERE room_id = :room"),
            {"room": room},
        )
        assert not send.done()
        await other.rollback()
    message, created = await asyncio.wait_for(send, 30)
    assert created and message.seq == 1
    assert await store.last_seq(room) == 1
    retries = [r for r in caplog.records if getattr(r, "event", "") == "db.retry"]
    assert [(r.operation, r.code) for r in retries] == [("chat_message.append", 1213)]  # type: ignore[attr-defined]


async def wait_for_a_lock_wait(engine: AsyncEngine) -> None:
    """Until some transaction of the server waits for a row lock (each look in
    a transaction of its own)."""
    query = sa.text("SELECT trx_state, trx_query FROM information_schema.innodb_trx")
    for _ in range(50):
        # InnoDB refreshes what this table shows at most every 0.1 s.
        await asyncio.sleep(0.15)
        async with engine.connect() as conn:
            transactions = (await conn.execute(query)).all()
        if any(state == "LOCK WAIT" for state, _ in transactions):
            return
    raise AssertionError(f"the send never waited for the gap lock: {transactions}")


async def test_a_failed_special_gift_leaves_no_call(engine: AsyncEngine) -> None:
    """One InnoDB transaction: when the gift's insert fails, its call is gone too."""
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
