"""The guard of persistence/sql/aiosqlite_fence.py: every private name of
aiosqlite and SQLAlchemy it relies on, and what it is for (one trip to the
connection's thread per statement). An upgrade that breaks either fails here."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import aiosqlite as sqlalchemy_aiosqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.sql import aiosqlite_fence
from persistence.sql.engine import create_engine

TABLE = sa.Table(
    "things",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(20)),
)


def test_aiosqlite_has_the_private_names_the_fence_uses() -> None:
    assert inspect.iscoroutinefunction(aiosqlite.Connection._execute)
    assert list(inspect.signature(aiosqlite.Connection._execute).parameters)[:2] == ["self", "fn"]
    assert isinstance(aiosqlite.Connection.__dict__["_conn"], property)
    connection = aiosqlite.Connection(lambda: None, 64)  # type: ignore[arg-type,return-value]
    assert not connection._thread.daemon  # what connect() changes
    for method in ("commit", "rollback"):
        assert inspect.iscoroutinefunction(getattr(aiosqlite.Connection, method)), method


def test_sqlalchemy_takes_a_driver_connection_through_async_creator_fn() -> None:
    connect = inspect.getsource(sqlalchemy_aiosqlite.AsyncAdapt_aiosqlite_dbapi.connect)
    assert 'kw.pop("async_creator_fn", None)' in connect
    assert "connection = creator_fn(*arg, **kw)" in connect


class Trips:
    """Counts the trips made to a connection's thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = aiosqlite.Connection._execute

        async def counted(connection: aiosqlite.Connection, fn: Any, *args: Any) -> Any:
            self.count += 1
            return await real(connection, fn, *args)

        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'fence.sqlite3'}")
    async with engine.begin() as conn:
        await conn.run_sync(TABLE.metadata.create_all)
    yield engine
    await engine.dispose()


async def test_a_statement_is_one_trip_and_its_results_are_whole(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, aiosqlite_fence.OneTripConnection)
    trips = Trips(monkeypatch)
    async with engine.begin() as conn:
        inserted = await conn.execute(TABLE.insert(), {"name": "one"})
        assert inserted.inserted_primary_key == (1,)  # lastrowid, read in the trip
        await conn.execute(TABLE.insert(), [{"name": "two"}, {"name": "three"}])
    assert trips.count == 3  # insert, executemany, commit
    trips.count = 0
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(TABLE.c.name).order_by(TABLE.c.id))).all()
    assert [r.name for r in rows] == ["one", "two", "three"]
    assert trips.count == 1  # no cursor(), fetchall() or close() trip, no rollback
    trips.count = 0
    async with engine.begin() as conn:
        updated = await conn.execute(TABLE.update().where(TABLE.c.id > 1).values(name="x"))
        assert updated.rowcount == 2  # what compare-and-set counts on
    assert trips.count == 2  # update, commit


async def test_a_failed_statement_rolls_back_and_the_connection_stays_usable(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:  # the connection's last trip left no transaction
        await conn.execute(TABLE.insert(), {"id": 7, "name": "a"})
    with pytest.raises(sa.exc.IntegrityError):  # fails first thing in its transaction
        async with engine.begin() as conn:
            await conn.execute(TABLE.insert(), {"id": 7, "name": "b"})
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        sqlite_conn = raw.driver_connection._conn  # type: ignore[union-attr]
        assert not await raw.driver_connection._execute(lambda: sqlite_conn.in_transaction)  # type: ignore[union-attr]
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(TABLE.insert(), {"id": 7, "name": "a"})
            await conn.execute(TABLE.insert(), {"id": 7, "name": "b"})
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(TABLE))).scalar() == 1
