"""The SQL stores of chat rooms and their messages."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence.chat import (
    ChatMessage,
    ChatRoom,
    MessageStore,
    RoomStore,
    RoomSummary,
    ordered_pair,
)
from persistence.sql.engine import LostRaceError, is_mysql, transaction_attempts
from persistence.sql.tables import (
    chat_counters_table,
    chat_messages_table,
    chat_reads_table,
    chat_rooms_table,
)


def _room_from_row(row: Any) -> ChatRoom:
    return ChatRoom(row.id, row.user_a, row.user_b, row.created_at)


def _message_from_row(row: Any) -> ChatMessage:
    return ChatMessage(
        room_id=row.room_id,
        seq=row.seq,
        sender_id=row.sender_id,
        content=row.content,
        client_msg_id=row.client_msg_id,
        created_at=row.created_at,
    )


class SqlRoomStore(RoomStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get_or_create(self, user1: str, user2: str) -> tuple[ChatRoom, bool]:
        existing = await self.find(user1, user2)
        if existing is not None:
            return existing, False
        user_a, user_b = ordered_pair(user1, user2)
        attempts = transaction_attempts("chat_room.create", user_a=user_a, user_b=user_b)
        return await attempts(self._create, user_a, user_b)

    async def _create(self, user_a: str, user_b: str) -> tuple[ChatRoom, bool]:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    chat_rooms_table.insert().values(
                        user_a=user_a, user_b=user_b, created_at=datetime.now(UTC)
                    )
                )
            created = True
        except sa.exc.IntegrityError:
            # The other user's insert won: theirs is the room. find() reads on
            # a connection of its own, in a fresh transaction, so even under
            # REPEATABLE READ it sees the winner's committed row.
            created = False
        room = await self.find(user_a, user_b)
        assert room is not None, "the pair's room was inserted but is not found"
        return room, created

    async def get(self, room_id: int) -> ChatRoom | None:
        query = chat_rooms_table.select().where(chat_rooms_table.c.id == room_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return _room_from_row(row) if row else None

    async def find(self, user1: str, user2: str) -> ChatRoom | None:
        user_a, user_b = ordered_pair(user1, user2)
        c = chat_rooms_table.c
        query = chat_rooms_table.select().where(c.user_a == user_a, c.user_b == user_b)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return _room_from_row(row) if row else None

    async def list_for_user(self, user_id: str) -> list[ChatRoom]:
        c = chat_rooms_table.c
        query = chat_rooms_table.select().where(sa.or_(c.user_a == user_id, c.user_b == user_id))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_room_from_row(r) for r in rows]


class SqlMessageStore(MessageStore):
    """Messages in the SQL database; ``seq`` comes from a per-room counter row
    that the inserting transaction increments first (so the write lock is
    taken before anything is read, and a rollback returns the number)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # SQLite has one writer per file and makes the others poll with
        # sleeps (busy_timeout): queueing this process's writers here instead
        # cuts a send's latency by an order of magnitude under load. Other
        # processes still wait on the file lock; MySQL locks the counter row.
        self._write_lock: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )

    async def _find(self, room_id: int, sender_id: str, client_msg_id: str) -> ChatMessage | None:
        m = chat_messages_table.c
        query = chat_messages_table.select().where(
            m.room_id == room_id, m.sender_id == sender_id, m.client_msg_id == client_msg_id
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return _message_from_row(row) if row else None

    async def _next_seq(self, conn: AsyncConnection, room_id: int, now: datetime) -> int:
        """Take the room's next ``seq`` inside the caller's transaction; the
        counter row stays locked until it commits or rolls back."""
        k = chat_counters_table.c
        if is_mysql(conn):
            # One statement whether or not the row exists: an UPDATE of a
            # missing row would take a gap lock in InnoDB, and two first
            # senders holding one each would deadlock on their INSERTs.
            bump = mysql.insert(chat_counters_table).values(
                room_id=room_id, last_seq=1, last_at=now
            )
            await conn.execute(
                bump.on_duplicate_key_update(last_seq=k.last_seq + 1, last_at=bump.inserted.last_at)
            )
        else:
            bumped = await conn.execute(
                chat_counters_table.update()
                .where(k.room_id == room_id)
                .values(last_seq=k.last_seq + 1, last_at=now)
            )
            if bumped.rowcount != 1:
                await conn.execute(
                    chat_counters_table.insert().values(room_id=room_id, last_seq=1, last_at=now)
                )
                return 1
        # This transaction's own write: visible to its reads at any isolation level.
        seq = (await conn.execute(sa.select(k.last_seq).where(k.room_id == room_id))).scalar_one()
        return int(seq)

    async def append(
        self, room_id: int, sender_id: str, content: str, client_msg_id: str
    ) -> tuple[ChatMessage, bool]:
        existing = await self._find(room_id, sender_id, client_msg_id)
        if existing is not None:
            return existing, False
        attempts = transaction_attempts("chat_message.append", room_id=room_id)
        return await attempts(self._append, room_id, sender_id, content, client_msg_id)

    async def _append(
        self, room_id: int, sender_id: str, content: str, client_msg_id: str
    ) -> tuple[ChatMessage, bool]:
        try:
            async with self._write_lock, self._engine.begin() as conn:
                now = datetime.now(UTC)
                seq = await self._next_seq(conn, room_id, now)
                await conn.execute(
                    chat_messages_table.insert().values(
                        room_id=room_id,
                        seq=seq,
                        sender_id=sender_id,
                        client_msg_id=client_msg_id,
                        content=content,
                        created_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            # Either a concurrent retry of this very message won (return it)
            # or another sender created the counter row first (again).
            existing = await self._find(room_id, sender_id, client_msg_id)
            if existing is not None:
                return existing, False
            raise LostRaceError(f"room {room_id}: its first counter row") from None
        return ChatMessage(room_id, seq, sender_id, content, client_msg_id, now), True

    async def after(self, room_id: int, after_seq: int, limit: int) -> list[ChatMessage]:
        m = chat_messages_table.c
        query = (
            chat_messages_table.select()
            .where(m.room_id == room_id, m.seq > after_seq)
            .order_by(m.seq)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_message_from_row(r) for r in rows]

    async def before(self, room_id: int, before_seq: int | None, limit: int) -> list[ChatMessage]:
        m = chat_messages_table.c
        query = chat_messages_table.select().where(m.room_id == room_id)
        if before_seq is not None:
            query = query.where(m.seq < before_seq)
        query = query.order_by(m.seq.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_message_from_row(r) for r in rows]

    async def last_seq(self, room_id: int) -> int:
        k = chat_counters_table.c
        async with self._engine.connect() as conn:
            value = (
                await conn.execute(sa.select(k.last_seq).where(k.room_id == room_id))
            ).scalar_one_or_none()
        return int(value or 0)

    async def mark_read(self, room_id: int, user_id: str, seq: int) -> int:
        # ``last_seq`` only grows, so clamping to a value read just before is
        # still safe; the write transaction then starts with its write.
        target = min(seq, await self.last_seq(room_id))
        attempts = transaction_attempts("chat_read.mark", room_id=room_id)
        return int(await attempts(self._mark_read, room_id, user_id, target))

    async def _mark_read(self, room_id: int, user_id: str, target: int) -> int:
        r = chat_reads_table.c
        where = (r.room_id == room_id, r.user_id == user_id)
        try:
            async with self._write_lock, self._engine.begin() as conn:
                if is_mysql(conn):
                    # Insert-or-raise in one statement (no gap lock taken by
                    # an UPDATE of a missing marker, see _next_seq).
                    upsert = mysql.insert(chat_reads_table).values(
                        room_id=room_id, user_id=user_id, seq=target
                    )
                    await conn.execute(
                        upsert.on_duplicate_key_update(
                            seq=sa.func.greatest(r.seq, upsert.inserted.seq)
                        )
                    )
                else:
                    await conn.execute(
                        chat_reads_table.update().where(*where, r.seq < target).values(seq=target)
                    )
                marker = (await conn.execute(sa.select(r.seq).where(*where))).scalar_one_or_none()
                if marker is None:
                    await conn.execute(
                        chat_reads_table.insert().values(
                            room_id=room_id, user_id=user_id, seq=target
                        )
                    )
                    marker = target
        except sa.exc.IntegrityError:
            # The first marker was inserted meanwhile: the next attempt updates it.
            raise LostRaceError(f"room {room_id}: the read marker of {user_id!r}") from None
        return int(marker)

    async def summaries(self, user_id: str, room_ids: list[int]) -> dict[int, RoomSummary]:
        if not room_ids:
            return {}
        m, k, r = chat_messages_table.c, chat_counters_table.c, chat_reads_table.c
        last_query = (
            chat_messages_table.select()
            .join(chat_counters_table, sa.and_(k.room_id == m.room_id, k.last_seq == m.seq))
            .where(m.room_id.in_(room_ids))
        )
        reads_query = sa.select(r.room_id, r.seq).where(
            r.user_id == user_id, r.room_id.in_(room_ids)
        )
        unread_query = (
            sa.select(m.room_id, sa.func.count())
            .select_from(
                chat_messages_table.outerjoin(
                    chat_reads_table, sa.and_(r.room_id == m.room_id, r.user_id == user_id)
                )
            )
            .where(
                m.room_id.in_(room_ids),
                m.sender_id != user_id,
                m.seq > sa.func.coalesce(r.seq, 0),
            )
            .group_by(m.room_id)
        )
        async with self._engine.connect() as conn:
            last = {row.room_id: _message_from_row(row) for row in await conn.execute(last_query)}
            reads = {row.room_id: int(row.seq) for row in await conn.execute(reads_query)}
            unread = {rid: int(n) for rid, n in await conn.execute(unread_query)}
        return {
            rid: RoomSummary(rid, last.get(rid), unread.get(rid, 0), reads.get(rid, 0))
            for rid in room_ids
        }
