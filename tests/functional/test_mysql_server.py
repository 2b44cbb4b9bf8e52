"""The real server on MariaDB: it migrates an empty database at start-up and
runs a whole call (countdown, live, time limit) and a chat on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from persistence.migrate import head_revision
from tests.contract.mysql_scratch import ScratchDatabase
from tests.functional.chat_support import ChatClient, open_room
from tests.functional.conftest import Lab, call_state, to_live
from tests.support import RunningServer


@pytest.fixture
async def database(mysql_url: str) -> AsyncIterator[ScratchDatabase]:
    """An empty MariaDB database (no tables) on the session's server, dropped
    after the test."""
    scratch = ScratchDatabase(mysql_url)
    await asyncio.to_thread(scratch.create)
    try:
        yield scratch
    finally:
        await asyncio.to_thread(scratch.drop)


async def query(database: ScratchDatabase, sql: str) -> list[tuple[object, ...]]:
    """What the database itself says, on a connection of its own."""

    def run() -> list[tuple[object, ...]]:
        with database.connect() as conn, conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    return await asyncio.to_thread(run)


async def test_a_whole_call_and_a_chat_on_mariadb(lab: Lab, database: ScratchDatabase) -> None:
    server: RunningServer = await lab.start(database_url=database.url)
    tables = {row[0] for row in await query(database, "SHOW TABLES")}
    assert {"calls", "chat_messages", "gifts", "alembic_version"} <= tables
    assert await query(database, "SELECT * FROM alembic_version") == [(head_revision(),)]

    call = await server.schedule("alice", "bob")
    call_id = call["id"]
    alice, bob = await lab.connect(server, "alice"), await lab.connect(server, "bob")
    live = await to_live(alice, bob, call_id)
    assert live["call_id"] == call_id
    for client in (alice, bob):
        assert await client.take("ended") == {"call_id": call_id, "reason": "time_limit"}
    state = await call_state(server, "bob", call_id)
    assert (state["state"], state["end_reason"]) == ("ended", "time_limit")
    stored = await query(
        database,
        f"SELECT state, version, started_at, ended_at FROM calls WHERE id = {call_id}",
    )
    state_, version, started_at, ended_at = stored[0]
    assert state_ == "ended" and started_at is not None and ended_at is not None
    # Every step was written; steps that queued up together share one write.
    assert version >= 4, stored

    room_id = await open_room(server, "alice", "bob")
    chat_alice = await ChatClient(server, "alice").connect()
    chat_bob = await ChatClient(server, "bob").connect()
    try:
        sent = [await chat_alice.send(room_id, f"hi {i}", f"m-{i}") for i in range(1, 4)]
        assert [m["seq"] for m in sent] == [1, 2, 3]
        assert await chat_bob.wait_for("message", 3) == sent
    finally:
        await chat_alice.close()
        await chat_bob.close()
    assert await query(
        database, f"SELECT last_seq FROM chat_counters WHERE room_id = {room_id}"
    ) == [(3,)]
