"""SQL backends on SQLAlchemy 2 async: SQLite by default, MySQL/MariaDB via aiomysql."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from persistence.calls import CallStore, NotificationStore
from persistence.models import (
    FINAL_STATES,
    CallChanges,
    CallRecord,
    CallState,
    EndReason,
    Notification,
    Question,
    as_utc,
)
from persistence.questions import QuestionStore

logger = logging.getLogger(__name__)

metadata = sa.MetaData()

calls_table = sa.Table(
    "calls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("caller_id", sa.String(64), nullable=False, index=True),
    sa.Column("callee_id", sa.String(64), nullable=False, index=True),
    sa.Column("scheduled_at", sa.DateTime, nullable=False),
    sa.Column("opens_at", sa.DateTime, nullable=False),
    sa.Column("closes_at", sa.DateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False, default=1),
    sa.Column("live_at", sa.DateTime, nullable=True),
    sa.Column("ends_at", sa.DateTime, nullable=True),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("ended_at", sa.DateTime, nullable=True),
    sa.Column("end_reason", sa.String(16), nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

notifications_table = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("call_id", sa.Integer, nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_notifications_user_id_id", "user_id", "id"),
)

questions_table = sa.Table(
    "questions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("text", sa.String(500), nullable=False),
)


def _naive(value: datetime | None) -> datetime | None:
    """Stored as naive UTC: neither SQLite nor MySQL DATETIME keeps a zone."""
    if value is None:
        return None
    return as_utc(value).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _call_from_row(row: Any) -> CallRecord:
    return CallRecord(
        id=row.id,
        caller_id=row.caller_id,
        callee_id=row.callee_id,
        scheduled_at=as_utc(row.scheduled_at),
        opens_at=as_utc(row.opens_at),
        closes_at=as_utc(row.closes_at),
        state=CallState(row.state),
        version=row.version,
        live_at=_aware(row.live_at),
        ends_at=_aware(row.ends_at),
        started_at=_aware(row.started_at),
        ended_at=_aware(row.ended_at),
        end_reason=EndReason(row.end_reason) if row.end_reason else None,
        created_at=as_utc(row.created_at),
    )


def create_engine(url: str) -> AsyncEngine:
    """An async engine with the settings each dialect needs to be safe."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers run beside the single writer; busy_timeout
            # makes a second writer wait instead of failing.
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_recycle=3600)


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


class SqlCallStore(CallStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(
        self,
        caller_id: str,
        callee_id: str,
        scheduled_at: datetime,
        opens_at: datetime,
        closes_at: datetime,
    ) -> CallRecord:
        values = {
            "caller_id": caller_id,
            "callee_id": callee_id,
            "scheduled_at": _naive(scheduled_at),
            "opens_at": _naive(opens_at),
            "closes_at": _naive(closes_at),
            "state": CallState.SCHEDULED.value,
            "version": 1,
            "created_at": _naive(datetime.now(UTC)),
        }
        async with self._engine.begin() as conn:
            result = await conn.execute(calls_table.insert().values(**values))
            call_id = result.inserted_primary_key[0]  # type: ignore[index]
            row = (
                await conn.execute(calls_table.select().where(calls_table.c.id == call_id))
            ).one()
        return _call_from_row(row)

    async def get(self, call_id: int) -> CallRecord | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(calls_table.select().where(calls_table.c.id == call_id))
            ).one_or_none()
        return _call_from_row(row) if row else None

    async def list_for_user(self, user_id: str, limit: int = 100) -> list[CallRecord]:
        c = calls_table.c
        query = (
            calls_table.select()
            .where(sa.or_(c.caller_id == user_id, c.callee_id == user_id))
            .order_by(c.scheduled_at.desc(), c.id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_call_from_row(r) for r in rows]

    async def transition(self, call: CallRecord, changes: CallChanges) -> CallRecord | None:
        c = calls_table.c
        values: dict[str, Any] = {"state": changes.state.value, "version": call.version + 1}
        for name in ("live_at", "ends_at", "started_at", "ended_at"):
            value = getattr(changes, name)
            if value is not None:
                values[name] = _naive(value)
            elif name in changes.clear:
                values[name] = None
        if changes.end_reason is not None:
            values["end_reason"] = changes.end_reason.value
        elif "end_reason" in changes.clear:
            values["end_reason"] = None
        statement = (
            calls_table.update().where(c.id == call.id, c.version == call.version).values(**values)
        )
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
            if result.rowcount != 1:
                return None
            row = (await conn.execute(calls_table.select().where(c.id == call.id))).one()
        return _call_from_row(row)

    async def list_unfinished(self) -> list[CallRecord]:
        finals = [s.value for s in FINAL_STATES]
        query = calls_table.select().where(calls_table.c.state.not_in(finals))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_call_from_row(r) for r in rows]

    async def list_due(self, now: datetime) -> list[CallRecord]:
        c = calls_table.c
        at = _naive(now)
        pre_live = [
            CallState.SCHEDULED.value,
            CallState.OPEN.value,
            CallState.WAITING.value,
            CallState.CONNECTING.value,
        ]
        query = calls_table.select().where(
            sa.or_(
                sa.and_(c.state == CallState.SCHEDULED.value, c.opens_at <= at),
                sa.and_(c.state.in_(pre_live), c.closes_at <= at),
                sa.and_(c.state == CallState.COUNTDOWN.value, c.live_at <= at),
                sa.and_(c.state == CallState.LIVE.value, c.ends_at <= at),
            )
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_call_from_row(r) for r in rows]

    async def count_by_state(self) -> dict[CallState, int]:
        query = sa.select(calls_table.c.state, sa.func.count()).group_by(calls_table.c.state)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {CallState(state): count for state, count in rows}


class SqlNotificationStore(NotificationStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(
        self, user_id: str, kind: str, call_id: int | None, payload: dict[str, Any]
    ) -> Notification:
        created_at = datetime.now(UTC)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                notifications_table.insert().values(
                    user_id=user_id,
                    kind=kind,
                    call_id=call_id,
                    payload=orjson.dumps(payload).decode(),
                    created_at=_naive(created_at),
                )
            )
        new_id = result.inserted_primary_key[0]  # type: ignore[index]
        return Notification(new_id, user_id, kind, call_id, dict(payload), created_at)

    async def list_for_user(self, user_id: str, limit: int = 50) -> list[Notification]:
        t = notifications_table.c
        query = (
            notifications_table.select()
            .where(t.user_id == user_id)
            .order_by(t.id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Notification(
                r.id, r.user_id, r.kind, r.call_id, orjson.loads(r.payload), as_utc(r.created_at)
            )
            for r in rows
        ]


class SqlQuestionStore(QuestionStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, text: str) -> Question:
        async with self._engine.begin() as conn:
            result = await conn.execute(questions_table.insert().values(text=text))
        return Question(result.inserted_primary_key[0], text)  # type: ignore[index]

    async def count(self) -> int:
        async with self._engine.connect() as conn:
            return int(
                (await conn.execute(sa.select(sa.func.count(questions_table.c.id)))).scalar_one()
            )

    async def random(self) -> Question | None:
        # A random point in the id range, then the first id at or above it:
        # two index look-ups, never an ORDER BY RAND() scan of the table.
        q = questions_table.c
        async with self._engine.connect() as conn:
            bounds = (await conn.execute(sa.select(sa.func.min(q.id), sa.func.max(q.id)))).one()
            if bounds[0] is None:
                return None
            pick = random.randint(bounds[0], bounds[1])
            row = (
                await conn.execute(
                    questions_table.select().where(q.id >= pick).order_by(q.id).limit(1)
                )
            ).one()
        return Question(row.id, row.text)
