"""The SQL store of gifts, and of the calls that special gifts schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence.calls import NoticesOf
from persistence.gifts import Gift, GiftBox, GiftKind, GiftStore
from persistence.models import CallRecord
from persistence.sql.calls import insert_call
from persistence.sql.engine import transaction_attempts
from persistence.sql.tables import gifts_table


def _gift_from_row(row: Any) -> Gift:
    return Gift(
        id=row.id,
        sender_id=row.sender_id,
        receiver_id=row.receiver_id,
        kind=GiftKind(row.kind),
        message=row.message,
        created_at=row.created_at,
        scheduled_at=row.scheduled_at,
        call_id=row.call_id,
        opened_at=row.opened_at,
    )


class SqlGiftStore(GiftStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _insert(self, conn: AsyncConnection, values: dict[str, Any]) -> Gift:
        result = await conn.execute(gifts_table.insert().values(**values))
        gift_id = result.inserted_primary_key[0]  # type: ignore[index]
        row = (await conn.execute(gifts_table.select().where(gifts_table.c.id == gift_id))).one()
        return _gift_from_row(row)

    async def create(self, sender_id: str, receiver_id: str, message: str) -> Gift:
        async with self._engine.begin() as conn:
            return await self._insert(
                conn,
                {
                    "sender_id": sender_id,
                    "receiver_id": receiver_id,
                    "kind": GiftKind.GENERAL.value,
                    "message": message,
                    "created_at": datetime.now(UTC),
                },
            )

    async def create_with_call(
        self,
        sender_id: str,
        receiver_id: str,
        message: str,
        *,
        scheduled_at: datetime,
        opens_at: datetime,
        closes_at: datetime,
        open_max: int = 0,
        opened: NoticesOf | None = None,
    ) -> tuple[Gift, CallRecord]:
        async def insert_both() -> tuple[Gift, CallRecord]:
            now = datetime.now(UTC)
            async with self._engine.begin() as conn:
                call = await insert_call(
                    conn,
                    caller_id=sender_id,
                    callee_id=receiver_id,
                    scheduled_at=scheduled_at,
                    opens_at=opens_at,
                    closes_at=closes_at,
                    created_at=now,
                    open_max=open_max,
                    opened=opened,
                )
                gift = await self._insert(
                    conn,
                    {
                        "sender_id": sender_id,
                        "receiver_id": receiver_id,
                        "kind": GiftKind.SPECIAL.value,
                        "message": message,
                        "scheduled_at": scheduled_at,
                        "call_id": call.id,
                        "created_at": now,
                    },
                )
            return gift, call

        # The booking quota's locking count (insert_call) can deadlock on MySQL
        # with another booking of the same sender: the loser is retried.
        return await transaction_attempts("gift.create_with_call", sender_id=sender_id)(insert_both)

    async def get(self, gift_id: int) -> Gift | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(gifts_table.select().where(gifts_table.c.id == gift_id))
            ).one_or_none()
        return _gift_from_row(row) if row else None

    async def list_for_user(
        self, user_id: str, box: GiftBox, limit: int = 100, before_id: int | None = None
    ) -> list[Gift]:
        g = gifts_table.c
        owner = g.receiver_id if box is GiftBox.RECEIVED else g.sender_id
        query = gifts_table.select().where(owner == user_id)
        if before_id is not None:
            query = query.where(g.id < before_id)
        query = query.order_by(g.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_gift_from_row(r) for r in rows]

    async def open(self, gift_id: int, at: datetime) -> Gift | None:
        g = gifts_table.c
        async with self._engine.begin() as conn:
            await conn.execute(
                gifts_table.update()
                .where(g.id == gift_id, g.opened_at.is_(None))
                .values(opened_at=at)
            )
            row = (await conn.execute(gifts_table.select().where(g.id == gift_id))).one_or_none()
        return _gift_from_row(row) if row else None

    async def has_sent(self, sender_id: str, receiver_id: str) -> bool:
        g = gifts_table.c
        query = (
            sa.select(g.id).where(g.sender_id == sender_id, g.receiver_id == receiver_id).limit(1)
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None
