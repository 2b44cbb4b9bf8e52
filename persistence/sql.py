"""SQL backends on SQLAlchemy 2 async: SQLite by default, MySQL/MariaDB via aiomysql."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from persistence.calls import CallStore, NotificationStore
from persistence.chat import (
    ChatMessage,
    ChatRoom,
    MessageStore,
    RoomStore,
    RoomSummary,
    ordered_pair,
)
from persistence.gifts import Gift, GiftBox, GiftKind, GiftStore
from persistence.models import (
    FINAL_STATES,
    CallChanges,
    CallRecord,
    CallState,
    EndReason,
    Notification,
    Question,
    apply_changes,
    as_utc,
)
from persistence.questions import QuestionStore
from persistence.sqltypes import MYSQL_TABLE_OPTIONS, ExactString, UtcDateTime

logger = logging.getLogger(__name__)

#: The tables as the stores use them. The schema in a database is made by the
#: Alembic migrations in ``persistence/migrations`` (see ``persistence.migrate``),
#: never from this metadata at start-up; a test checks that the two agree.
metadata = sa.MetaData()

#: User ids and client message ids: compared exactly on every database.
UserId = ExactString(64)

calls_table = sa.Table(
    "calls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("caller_id", UserId, nullable=False, index=True),
    sa.Column("callee_id", UserId, nullable=False, index=True),
    sa.Column("scheduled_at", UtcDateTime, nullable=False),
    sa.Column("opens_at", UtcDateTime, nullable=False),
    sa.Column("closes_at", UtcDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False, default=1),
    sa.Column("live_at", UtcDateTime, nullable=True),
    sa.Column("ends_at", UtcDateTime, nullable=True),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("ended_at", UtcDateTime, nullable=True),
    sa.Column("end_reason", sa.String(16), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

notifications_table = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", UserId, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("call_id", sa.Integer, nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_notifications_user_id_id", "user_id", "id"),
    **MYSQL_TABLE_OPTIONS,
)

questions_table = sa.Table(
    "questions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("text", sa.String(500), nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

chat_rooms_table = sa.Table(
    "chat_rooms",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_a", UserId, nullable=False),
    sa.Column("user_b", UserId, nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # The pair key: one room per pair of users, whoever inserts first.
    sa.UniqueConstraint("user_a", "user_b", name="uq_chat_rooms_pair"),
    **MYSQL_TABLE_OPTIONS,
)

#: One row per room: the last ``seq`` handed out. Incremented inside the
#: transaction that inserts the message, so a rolled-back insert leaves no gap.
chat_counters_table = sa.Table(
    "chat_counters",
    metadata,
    sa.Column("room_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("last_seq", sa.Integer, nullable=False),
    sa.Column("last_at", UtcDateTime, nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

chat_messages_table = sa.Table(
    "chat_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("room_id", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("sender_id", UserId, nullable=False),
    sa.Column("client_msg_id", UserId, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("room_id", "seq", name="uq_chat_messages_room_seq"),
    sa.UniqueConstraint(
        "room_id", "sender_id", "client_msg_id", name="uq_chat_messages_client_msg"
    ),
    **MYSQL_TABLE_OPTIONS,
)

chat_reads_table = sa.Table(
    "chat_reads",
    metadata,
    sa.Column("room_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("user_id", UserId, primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

gifts_table = sa.Table(
    "gifts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sender_id", UserId, nullable=False),
    sa.Column("receiver_id", UserId, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("message", sa.String(500), nullable=False),
    sa.Column("scheduled_at", UtcDateTime, nullable=True),
    sa.Column(
        "call_id",
        sa.Integer,
        sa.ForeignKey("calls.id", name="fk_gifts_call_id_calls"),
        nullable=True,
    ),
    sa.Column("opened_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_gifts_sender_receiver", "sender_id", "receiver_id"),
    sa.Index("ix_gifts_receiver_id", "receiver_id", "id"),
    **MYSQL_TABLE_OPTIONS,
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


def is_mysql(engine: AsyncEngine | AsyncConnection) -> bool:
    """MySQL or MariaDB (``mysql+aiomysql://`` names both)."""
    return engine.dialect.name in ("mysql", "mariadb")


def create_engine(url: str) -> AsyncEngine:
    """An async engine with the settings each dialect needs to be safe."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # One connection: SQLite has a single writer anyway, and a second
        # pooled connection would wait for the write lock in SQLite's busy
        # handler (sleeps of up to 100 ms) instead of in an asyncio queue.
        # pool_reset_on_return=None: pysqlite opens a transaction only before
        # a write, and every write here commits, so the ROLLBACK on return
        # would be a thread round trip that does nothing.
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            pool_reset_on_return=None,
        )

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
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        from pymysql.constants.CLIENT import FOUND_ROWS  # type: ignore[import-untyped]

        # FOUND_ROWS: an UPDATE reports the rows it matched, not only the rows
        # whose values changed, so a compare-and-set that rewrites identical
        # values still counts as a win. (SQLAlchemy's MySQL dialects add it
        # too; stated here because the stores depend on it.) utf8mb4: 4-byte
        # characters (emoji) in ids and messages, whatever the server default.
        connect_args["client_flag"] = FOUND_ROWS
        if "charset" not in parsed.query:
            connect_args["charset"] = "utf8mb4"
    # pre_ping + recycle: MySQL closes idle connections after wait_timeout
    # (8 hours by default) and proxies often sooner; a pooled connection is
    # tested before use and never kept for more than an hour.
    return create_async_engine(
        url, pool_pre_ping=True, pool_recycle=3600, connect_args=connect_args
    )


async def create_schema(engine: AsyncEngine) -> None:
    """Bring the database's schema to the newest migration (Alembic); a no-op
    when it is there already. Kept under this name for the callers that made
    the schema before migrations existed."""
    from persistence.migrate import upgrade

    await upgrade(engine)


#: MySQL error codes after which InnoDB has rolled the transaction back and a
#: retry of the whole transaction is the documented remedy: a deadlock, a
#: lock wait timeout.
_MYSQL_RETRYABLE = frozenset({1213, 1205})


def is_retryable(exc: sa.exc.DBAPIError) -> bool:
    """Whether a failed transaction may simply be run again."""
    args: tuple[Any, ...] = getattr(exc.orig, "args", ())
    return bool(args) and args[0] in _MYSQL_RETRYABLE


def _retrying(exc: sa.exc.DBAPIError, operation: str, **ids: Any) -> None:
    """Re-raise ``exc`` unless the transaction may be run again; log the retry."""
    if not is_retryable(exc):
        raise exc
    logger.info(
        "%s retried after MySQL error %s",
        operation,
        exc.orig.args[0] if exc.orig is not None else None,
        extra={
            "event": "db.retry",
            "operation": operation,
            "code": exc.orig.args[0] if exc.orig is not None else None,
            **ids,
        },
    )


# Built once: constructing a statement costs more than running it on SQLite.
_CALL_BY_ID = calls_table.select().where(calls_table.c.id == sa.bindparam("call_id"))
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
    ) -> CallRecord:
        created_at = datetime.now(UTC)
        values = {
            "caller_id": caller_id,
            "callee_id": callee_id,
            "scheduled_at": _naive(scheduled_at),
            "opens_at": _naive(opens_at),
            "closes_at": _naive(closes_at),
            "state": CallState.SCHEDULED.value,
            "version": 1,
            "created_at": _naive(created_at),
        }
        async with self._engine.begin() as conn:
            result = await conn.execute(calls_table.insert(), values)
        # No read-back: the row is exactly these values and the new id.
        call = CallRecord(
            id=int(result.inserted_primary_key[0]),  # type: ignore[index]
            caller_id=caller_id,
            callee_id=callee_id,
            scheduled_at=as_utc(scheduled_at),
            opens_at=as_utc(opens_at),
            closes_at=as_utc(closes_at),
            state=CallState.SCHEDULED,
            created_at=created_at,
        )
        self._remember(call)
        return call

    async def get(self, call_id: int) -> CallRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_CALL_BY_ID, {"call_id": call_id})).one_or_none()
        return _call_from_row(row) if row else None

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
        return [_call_from_row(r) for r in rows]

    async def transition(self, call: CallRecord, changes: CallChanges) -> CallRecord | None:
        # One UPDATE, no read-back: the new record is what apply_changes makes
        # of the version that matched.
        updated = apply_changes(call, changes)
        params = {
            "match_id": call.id,
            "match_version": call.version,
            "new_state": updated.state.value,
            "new_version": updated.version,
            "new_live_at": _naive(updated.live_at),
            "new_ends_at": _naive(updated.ends_at),
            "new_started_at": _naive(updated.started_at),
            "new_ended_at": _naive(updated.ended_at),
            "new_end_reason": updated.end_reason.value if updated.end_reason else None,
        }
        async with self._engine.begin() as conn:
            result = await conn.execute(_CALL_CAS, params)
        return updated if result.rowcount == 1 else None

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
                notifications_table.insert(),
                {
                    "user_id": user_id,
                    "kind": kind,
                    "call_id": call_id,
                    "payload": orjson.dumps(payload).decode(),
                    "created_at": _naive(created_at),
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
        # A uniform offset into the count, then that row in primary-key order:
        # every question equally likely whatever the gaps deletions left in
        # the ids, and the database walks the id index, never sorts or scans
        # the rows (no ORDER BY RAND()).
        q = questions_table.c
        async with self._engine.connect() as conn:
            total = int((await conn.execute(sa.select(sa.func.count(q.id)))).scalar_one())
            if total == 0:
                return None
            offset = random.randrange(total)
            row = (
                await conn.execute(sa.select(q.id, q.text).order_by(q.id).limit(1).offset(offset))
            ).one_or_none()
            if row is None:  # a delete between the two statements: take the last one
                row = (
                    await conn.execute(sa.select(q.id, q.text).order_by(q.id.desc()).limit(1))
                ).one_or_none()
        return Question(row.id, row.text) if row is not None else None

    async def all(self) -> list[Question]:
        q = questions_table.c
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(q.id, q.text).order_by(q.id))).all()
        return [Question(row.id, row.text) for row in rows]


#: Attempts at a write that can lose a race on a unique key (counter row,
#: read marker); each attempt re-reads, so only a storm could exhaust them.
_RACE_ATTEMPTS = 8


def _room_from_row(row: Any) -> ChatRoom:
    return ChatRoom(row.id, row.user_a, row.user_b, as_utc(row.created_at))


def _message_from_row(row: Any) -> ChatMessage:
    return ChatMessage(
        room_id=row.room_id,
        seq=row.seq,
        sender_id=row.sender_id,
        content=row.content,
        client_msg_id=row.client_msg_id,
        created_at=as_utc(row.created_at),
    )


def _gift_from_row(row: Any) -> Gift:
    return Gift(
        id=row.id,
        sender_id=row.sender_id,
        receiver_id=row.receiver_id,
        kind=GiftKind(row.kind),
        message=row.message,
        created_at=as_utc(row.created_at),
        scheduled_at=_aware(row.scheduled_at),
        call_id=row.call_id,
        opened_at=_aware(row.opened_at),
    )


class SqlRoomStore(RoomStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get_or_create(self, user1: str, user2: str) -> tuple[ChatRoom, bool]:
        user_a, user_b = ordered_pair(user1, user2)
        for _ in range(_RACE_ATTEMPTS):
            existing = await self.find(user1, user2)
            if existing is not None:
                return existing, False
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(
                        chat_rooms_table.insert().values(
                            user_a=user_a, user_b=user_b, created_at=_naive(datetime.now(UTC))
                        )
                    )
            except sa.exc.IntegrityError:
                # The other user's insert won: theirs is the room. find() reads
                # on a connection of its own, in a fresh transaction, so even
                # under REPEATABLE READ it sees the winner's committed row.
                room = await self.find(user1, user2)
                assert room is not None, "unique pair violated but no room found"
                return room, False
            except sa.exc.DBAPIError as exc:
                _retrying(exc, "chat_room.create", user_a=user_a, user_b=user_b)
                continue
            room = await self.find(user1, user2)
            assert room is not None
            return room, True
        raise RuntimeError(f"room of {user_a!r} and {user_b!r}: too many concurrent writers")

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
                room_id=room_id, last_seq=1, last_at=_naive(now)
            )
            await conn.execute(
                bump.on_duplicate_key_update(last_seq=k.last_seq + 1, last_at=bump.inserted.last_at)
            )
        else:
            bumped = await conn.execute(
                chat_counters_table.update()
                .where(k.room_id == room_id)
                .values(last_seq=k.last_seq + 1, last_at=_naive(now))
            )
            if bumped.rowcount != 1:
                await conn.execute(
                    chat_counters_table.insert().values(
                        room_id=room_id, last_seq=1, last_at=_naive(now)
                    )
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
        for _ in range(_RACE_ATTEMPTS):
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
                            created_at=_naive(now),
                        )
                    )
            except sa.exc.IntegrityError:
                # Either a concurrent retry of this very message won (return
                # it) or another sender created the counter row first (retry).
                existing = await self._find(room_id, sender_id, client_msg_id)
                if existing is not None:
                    return existing, False
                continue
            except sa.exc.DBAPIError as exc:
                # InnoDB rolled it back (a deadlock): the seq was not used.
                _retrying(exc, "chat_message.append", room_id=room_id)
                continue
            message = ChatMessage(room_id, seq, sender_id, content, client_msg_id, now)
            return message, True
        raise RuntimeError(f"room {room_id}: too many concurrent writers")

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
        r = chat_reads_table.c
        where = (r.room_id == room_id, r.user_id == user_id)
        for _ in range(_RACE_ATTEMPTS):
            try:
                async with self._write_lock, self._engine.begin() as conn:
                    if is_mysql(conn):
                        # Insert-or-raise in one statement (no gap lock taken
                        # by an UPDATE of a missing marker, see _next_seq).
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
                            chat_reads_table.update()
                            .where(*where, r.seq < target)
                            .values(seq=target)
                        )
                    marker = (
                        await conn.execute(sa.select(r.seq).where(*where))
                    ).scalar_one_or_none()
                    if marker is None:
                        await conn.execute(
                            chat_reads_table.insert().values(
                                room_id=room_id, user_id=user_id, seq=target
                            )
                        )
                        marker = target
            except sa.exc.IntegrityError:
                continue  # the first marker was inserted meanwhile: update it
            except sa.exc.DBAPIError as exc:
                _retrying(exc, "chat_read.mark", room_id=room_id)
                continue
            return int(marker)
        raise RuntimeError(f"room {room_id}: too many concurrent read markers")

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


class SqlGiftStore(GiftStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _insert(self, conn: Any, values: dict[str, Any]) -> Gift:
        result = await conn.execute(gifts_table.insert().values(**values))
        gift_id = result.inserted_primary_key[0]
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
                    "created_at": _naive(datetime.now(UTC)),
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
    ) -> tuple[Gift, CallRecord]:
        now = _naive(datetime.now(UTC))
        async with self._engine.begin() as conn:
            result = await conn.execute(
                calls_table.insert().values(
                    caller_id=sender_id,
                    callee_id=receiver_id,
                    scheduled_at=_naive(scheduled_at),
                    opens_at=_naive(opens_at),
                    closes_at=_naive(closes_at),
                    state=CallState.SCHEDULED.value,
                    version=1,
                    created_at=now,
                )
            )
            call_id = result.inserted_primary_key[0]  # type: ignore[index]
            call_row = (
                await conn.execute(calls_table.select().where(calls_table.c.id == call_id))
            ).one()
            gift = await self._insert(
                conn,
                {
                    "sender_id": sender_id,
                    "receiver_id": receiver_id,
                    "kind": GiftKind.SPECIAL.value,
                    "message": message,
                    "scheduled_at": _naive(scheduled_at),
                    "call_id": call_id,
                    "created_at": now,
                },
            )
        return gift, _call_from_row(call_row)

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
                .values(opened_at=_naive(at))
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
