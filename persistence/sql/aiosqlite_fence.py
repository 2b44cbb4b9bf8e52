"""The one module that touches aiosqlite's private names.

aiosqlite runs each sqlite3 call in its connection's own thread, and SQLAlchemy's
aiosqlite adapter makes one such trip per DB-API call: ``cursor()``,
``execute()``, ``fetchall()`` and ``close()`` for one SELECT. Each trip is a
thread wake-up, a hand-over of the GIL and a wake-up of the event loop: about
0.8 ms of CPU per statement on a 2-core machine, a third of what a whole call
costs the server. :class:`OneTripConnection` is aiosqlite's connection whose
cursors run a statement, read all its rows and close the sqlite3 cursor in one
trip; ``commit`` and ``rollback`` stay one trip each, as in aiosqlite.

Private names used, each pinned by ``tests/unit/test_aiosqlite_fence.py``:
``Connection._execute`` (run a function in the connection's thread, await its
result), ``Connection._conn`` (the sqlite3 connection; read only inside that
thread) and ``Connection._thread``; and SQLAlchemy's ``async_creator_fn``, the
keyword through which its adapter takes a driver connection made by us (what
its public ``async_creator`` uses).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

#: What one trip brings back: description, rows, rowcount, lastrowid, and
#: whether a transaction is open after it.
_Outcome = tuple[Any, list[Any], int, int | None, bool]


class OneTripCursor:
    """A DB-API cursor for SQLAlchemy's aiosqlite adapter: ``execute`` and
    ``executemany`` are one trip to the connection's thread; ``fetch*`` and
    ``close`` read what that trip brought back, without one."""

    arraysize = 1

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> OneTripCursor:
        self._take(await self._connection.in_thread(_run, sql, parameters or (), False))
        return self

    async def executemany(self, sql: str, parameters: Sequence[Sequence[Any]]) -> OneTripCursor:
        self._take(await self._connection.in_thread(_run, sql, parameters, True))
        return self

    def _take(self, outcome: _Outcome) -> None:
        self.description, self._rows, self.rowcount, self.lastrowid, in_transaction = outcome
        self._connection.in_transaction = in_transaction

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        taken, self._rows = self._rows[:count], self._rows[count:]
        return taken

    async def fetchall(self) -> list[Any]:
        taken, self._rows = self._rows, []
        return taken

    async def close(self) -> None:
        self._rows = []


def _run(conn: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """In the connection's thread: the statement, its rows, its counts."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description is not None else []
        return description, rows, cursor.rowcount, cursor.lastrowid, conn.in_transaction
    finally:
        cursor.close()


class OneTripConnection(aiosqlite.Connection):
    """aiosqlite's connection, whose ``cursor()`` is a :class:`OneTripCursor`
    (aiosqlite's own costs a trip to make, and one per call after), and whose
    ``commit`` and ``rollback`` make no trip when no transaction is open
    (SQLAlchemy rolls back every connection it gets back after a read)."""

    #: Whether a transaction may be open, as the last trip saw it.
    in_transaction = True

    async def commit(self) -> None:
        if self.in_transaction:
            await super().commit()
            self.in_transaction = False

    async def rollback(self) -> None:
        if self.in_transaction:
            await super().rollback()
            self.in_transaction = False

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)

    async def in_thread(self, function: Any, *args: Any) -> Any:
        """``function(sqlite3_connection, *args)`` in the connection's thread."""
        # Unknown until the trip reports it: a statement that fails may have
        # opened a transaction, which a rollback must then end.
        self.in_transaction = True
        return await self._execute(lambda: function(self._conn, *args))


def connect(database: str, **kwargs: Any) -> OneTripConnection:
    """``aiosqlite.connect`` for :class:`OneTripConnection`."""
    connection = OneTripConnection(lambda: sqlite3.connect(database, **kwargs), 64)
    # As SQLAlchemy does for aiosqlite's own: a connection nobody closed
    # must not keep the interpreter from exiting.
    connection._thread.daemon = True
    return connection


def use_one_trip_cursors(engine: AsyncEngine) -> None:
    """Make ``engine`` (``sqlite+aiosqlite``) connect through :func:`connect`,
    with the arguments SQLAlchemy computed from its URL and ``connect_args``."""

    @sa.event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
        return dialect.loaded_dbapi.connect(*cargs, async_creator_fn=connect, **cparams)
