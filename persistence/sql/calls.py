"""The SQL stores of calls and of the notifications they produce."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence.calls import (
    CallStore,
    NewNotification,
    NoticesOf,
    NotificationStore,
    TooManyOpenCallsError,
)
from persistence.models import (
    DEADLINES,
    FINAL_STATES,
    CallChanges,
    CallRecord,
    CallState,
    EndReason,
    Notification,
    apply_changes,
    as_utc,
)
from persistence.sql.engine import transaction_attempts
from persistence.sql.tables import calls_table, notifications_table


def call_from_row(row: Any) -> CallRecord:
    """The record of a row of :data:`calls_table`."""
    return CallRecord(
        id=row.id,
        caller_id=row.caller_id,
        callee_id=row.callee_id,
        scheduled_at=row.scheduled_at,
        opens_at=row.opens_at,
        closes_at=row.closes_at,
        state=CallState(row.state),
        version=row.version,
        live_at=row.live_at,
        ends_at=row.ends_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        end_reason=EndReason(row.end_reason) if row.end_reason else None,
        created_at=row.created_at,
    )


async def insert_call(
    conn: AsyncConnection,
    *,
    caller_id: str,
    callee_id: str,
    scheduled_at: datetime,
    opens_at: datetime,
    closes_at: datetime,
    created_at: datetime,
    open_max: int = 0,
    opened: NoticesOf | None = None,
) -> CallRecord:
    """Insert a call in state ``scheduled`` in the caller's transaction: the
    one insert of a call, whether alone or with the gift that schedules it.
    With ``open_max``, first count the caller's calls that are not over, in
    the same transaction; with ``opened``, insert it ``open`` with those
    notifications (``CallStore.create``)."""
    if open_max:
        booked = (await conn.execute(_COUNT_OPEN_BOOKED, {"caller_id": caller_id})).scalar_one()
        if booked >= open_max:
            raise TooManyOpenCallsError(caller_id)
    state = CallState.SCHEDULED if opened is None else CallState.OPEN
    values = {
        "caller_id": caller_id,
        "callee_id": callee_id,
        "scheduled_at": scheduled_at,
        "opens_at": opens_at,
        "closes_at": closes_at,
        "state": state.value,
        "version": 1,
        "created_at": created_at,
    }
    result = await conn.execute(calls_table.insert(), values)
    # No read-back: the row is exactly these values and the new id.
    call = CallRecord(
        id=int(result.inserted_primary_key[0]),  # type: ignore[index]
        caller_id=caller_id,
        callee_id=callee_id,
        scheduled_at=as_utc(scheduled_at),
        opens_at=as_utc(opens_at),
        closes_at=as_utc(closes_at),
        state=state,
        created_at=as_utc(created_at),
    )
    if opened is not None:
        await insert_notices(conn, call.id, opened(call))
    return call


async def insert_notices(
    conn: AsyncConnection, call_id: int | None, notices: Sequence[NewNotification]
) -> None:
    """Insert notifications in the caller's transaction (one executemany)."""
    if not notices:
        return
    created_at = datetime.now(UTC)
    rows = [
        {
            "user_id": notice.user_id,
            "kind": notice.kind,
            "call_id": call_id,
            "payload": orjson.dumps(notice.payload).decode(),
            "created_at": created_at,
        }
        for notice in notices
    ]
    await conn.execute(notifications_table.insert(), rows)


# Built once: constructing a statement costs more than running it on SQLite.
_CALL_BY_ID = calls_table.select().where(calls_table.c.id == sa.bindparam("call_id"))
_CALLS_BY_IDS = calls_table.select().where(
    calls_table.c.id.in_(sa.bindparam("call_ids", expanding=True))
)
_CALL_CAS = (
    calls_table.update()
    .where(
        calls_table.c.id == sa.bindparam("match_id"),
        calls_table.c.version == sa.bindparam("match_version"),
    )
    .values(
        state=sa.bindparam("new_state"),
        version=sa.bindparam("new_version"),
        live_at=sa.bindparam("new_live_at"),
        ends_at=sa.bindparam("new_ends_at"),
        started_at=sa.bindparam("new_started_at"),
        ended_at=sa.bindparam("new_ended_at"),
        end_reason=sa.bindparam("new_end_reason"),
    )
)


def _due_calls() -> sa.Select[Any]:
    """The query of :meth:`SqlCallStore.list_due`, made from
    :data:`~persistence.models.DEADLINES`: for each deadline, the states that
    have it, with that instant at or before ``:now``."""
    states_by_deadline: dict[str, list[str]] = {}
    for state, names in DEADLINES.items():
        for name in names:
            states_by_deadline.setdefault(name, []).append(state.value)
    c = calls_table.c
    now: sa.BindParameter[datetime] = sa.bindparam("now")
    return calls_table.select().where(
        sa.or_(
            *(
                sa.and_(c.state.in_(states), c[name] <= now)
                for name, states in states_by_deadline.items()
            )
        )
    )


_DUE_CALLS = _due_calls()


#: Built once: a booking runs it, and building it costs more than running it.
_COUNT_OPEN_BOOKED = (
    sa.select(sa.func.count())
    .select_from(calls_table)
    .where(
        calls_table.c.caller_id == sa.bindparam("caller_id"),
        calls_table.c.state.not_in([s.value for s in FINAL_STATES]),
    )
    # MySQL: lock the caller's rows and the gaps beside them, so two bookings
    # of one caller count one after the other (InnoDB's plain reads would
    # both see the same snapshot); a deadlock between them is retried.
    # SQLite has no FOR UPDATE, and needs none: one connection, one writer.
    .with_for_update()
)


def _cas_params(call: CallRecord, updated: CallRecord) -> dict[str, Any]:
    """The parameters of :data:`_CALL_CAS` writing ``updated`` over ``call``."""
    return {
        "match_id": call.id,
        "match_version": call.version,
        "new_state": updated.state.value,
        "new_version": updated.version,
        "new_live_at": updated.live_at,
        "new_ends_at": updated.ends_at,
        "new_started_at": updated.started_at,
        "new_ended_at": updated.ended_at,
        "new_end_reason": updated.end_reason.value if updated.end_reason else None,
    }


class SqlCallStore(CallStore):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        self._engine = engine

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
        async def insert() -> CallRecord:
            async with self._engine.begin() as conn:
                return await insert_call(
                    conn,
                    caller_id=caller_id,
                    callee_id=callee_id,
                    scheduled_at=scheduled_at,
                    opens_at=opens_at,
                    closes_at=closes_at,
                    created_at=datetime.now(UTC),
                    open_max=open_max,
                    opened=opened,
                )

        call: CallRecord = await transaction_attempts("call.create", caller_id=caller_id)(insert)
        self._remember(call)
        return call

    async def get(self, call_id: int) -> CallRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_CALL_BY_ID, {"call_id": call_id})).one_or_none()
        return call_from_row(row) if row else None

    async def list_for_user(
        self, user_id: str, limit: int = 100, before: tuple[datetime, int] | None = None
    ) -> list[CallRecord]:
        c = calls_table.c
        query = calls_table.select().where(sa.or_(c.caller_id == user_id, c.callee_id == user_id))
        if before is not None:
            at, call_id = before
            query = query.where(
                sa.or_(c.scheduled_at < at, sa.and_(c.scheduled_at == at, c.id < call_id))
            )
        query = query.order_by(c.scheduled_at.desc(), c.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [call_from_row(r) for r in rows]

    async def transition(
        self, call: CallRecord, changes: CallChanges, notices: NoticesOf | None = None
    ) -> CallRecord | None:
        # One UPDATE, no read-back: the new record is what apply_changes makes
        # of the version that matched.
        updated = apply_changes(call, changes)
        async with self._engine.begin() as conn:
            result = await conn.execute(_CALL_CAS, _cas_params(call, updated))
            if result.rowcount != 1:
                return None
            if notices is not None:
                await insert_notices(conn, call.id, notices(updated))
        return updated

    async def get_each(self, call_ids: Sequence[int]) -> dict[int, CallRecord]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_CALLS_BY_IDS, {"call_ids": list(call_ids)})).all()
        return {row.id: call_from_row(row) for row in rows}

    async def transition_each(
        self, writes: Sequence[tuple[CallRecord, CallChanges]]
    ) -> list[CallRecord | None]:
        # One transaction, one UPDATE per call: a group commit. In id order,
        # so that two groups on MySQL lock their rows in the same order.
        order = sorted(range(len(writes)), key=lambda i: writes[i][0].id)
        results: list[CallRecord | None] = [None] * len(writes)
        async with self._engine.begin() as conn:
            for index in order:
                call, changes = writes[index]
                updated = apply_changes(call, changes)
                result = await conn.execute(_CALL_CAS, _cas_params(call, updated))
                results[index] = updated if result.rowcount == 1 else None
        return results

    async def list_unfinished(self) -> list[CallRecord]:
        finals = [s.value for s in FINAL_STATES]
        query = calls_table.select().where(calls_table.c.state.not_in(finals))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [call_from_row(r) for r in rows]

    async def list_due(self, now: datetime) -> list[CallRecord]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_DUE_CALLS, {"now": now})).all()
        return [call_from_row(r) for r in rows]

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
                notifications_table.insert(),
                {
                    "user_id": user_id,
                    "kind": kind,
                    "call_id": call_id,
                    "payload": orjson.dumps(payload).decode(),
                    "created_at": created_at,
                },
            )
        new_id = result.inserted_primary_key[0]  # type: ignore[index]
        return Notification(new_id, user_id, kind, call_id, dict(payload), created_at)

    async def list_for_user(
        self, user_id: str, limit: int = 50, before_id: int | None = None
    ) -> list[Notification]:
        t = notifications_table.c
        query = notifications_table.select().where(t.user_id == user_id)
        if before_id is not None:
            query = query.where(t.id < before_id)
        query = query.order_by(t.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Notification(r.id, r.user_id, r.kind, r.call_id, orjson.loads(r.payload), r.created_at)
            for r in rows
        ]
