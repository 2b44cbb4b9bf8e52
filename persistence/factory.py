"""Pick a backend from a URL scheme; the one place that knows every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from persistence.calls import CallStore, NotificationStore
from persistence.chat import MessageStore, RoomStore
from persistence.gifts import GiftStore
from persistence.memory import (
    MemoryCallStore,
    MemoryGiftStore,
    MemoryMessageStore,
    MemoryNotificationStore,
    MemoryPresenceStore,
    MemoryQuestionStore,
    MemoryRoomStore,
)
from persistence.presence import PresenceStore
from persistence.push import MemoryPushStore, PushStore
from persistence.questions import CachedQuestionStore

if TYPE_CHECKING:
    from persistence.redis import ProcessBeacon

MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")


class BackendUnavailableError(RuntimeError):
    """A backend's driver is missing or its URL is not understood."""


@dataclass
class Stores:
    """Every store the server uses, opened together and closed together."""

    calls: CallStore
    notifications: NotificationStore
    questions: CachedQuestionStore
    presence: PresenceStore
    rooms: RoomStore
    gifts: GiftStore
    messages: MessageStore
    push: PushStore = field(default_factory=MemoryPushStore)
    _closers: list[object] = field(default_factory=list)

    async def ping(self) -> None:
        """Raise if a backend does not answer (used by the health route)."""
        await self.calls.get(0)
        await self.messages.ping()
        await self.presence.ping()

    async def close(self) -> None:
        # The message store opened last (it may be a MongoDB client of its own).
        await self.messages.close()
        await self.presence.close()
        await self.questions.close()
        for engine in reversed(self._closers):
            dispose = getattr(engine, "dispose", None)
            if dispose is not None:
                await dispose()


async def open_message_store(url: str) -> MessageStore:
    """A message store of its own backend: ``mongodb://`` (or ``+srv``) only."""
    if not url.startswith(MONGO_SCHEMES):
        raise BackendUnavailableError(
            f"unsupported message store URL scheme: {url.split(':', maxsplit=1)[0]}"
            " (mongodb://… or empty for the SQL database)"
        )
    try:
        from persistence.mongo import MongoMessageStore
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the MongoDB message store needs the 'mongo' extra "
            f"(pip install 'giftcall-signaling[mongo]'): {exc.name} is missing"
        ) from None
    return await MongoMessageStore.open(url)


async def open_presence(
    redis_url: str = "", redis_prefix: str = "giftcall", beacon: ProcessBeacon | None = None
) -> PresenceStore:
    """In this process without Redis. With it: each call's presence in its
    home process's memory, shared through Redis when its users are on two
    processes (``beacon`` names this process); without a beacon, always in Redis."""
    if not redis_url:
        return MemoryPresenceStore()
    try:
        from persistence.affine import AffinePresenceStore
        from persistence.redis import RedisPresenceStore
    except ImportError as exc:
        raise BackendUnavailableError(
            f"shared presence needs the 'redis' extra "
            f"(pip install 'giftcall-signaling[redis]'): {exc.name} is missing"
        ) from None
    if beacon is None:
        return RedisPresenceStore.from_url(redis_url, redis_prefix)
    return await AffinePresenceStore.open(redis_url, redis_prefix, beacon)


async def open_stores(
    database_url: str,
    message_store_url: str = "",
    redis_url: str = "",
    redis_prefix: str = "giftcall",
    beacon: ProcessBeacon | None = None,
) -> Stores:
    """Open the stores for ``database_url`` (``memory://`` or a SQLAlchemy URL)
    and make sure their schema exists. Chat messages go to ``message_store_url``
    when it is set (``mongodb://…``), else to the same database."""
    if database_url.startswith("memory:"):
        memory_notifications = MemoryNotificationStore()
        memory_calls = MemoryCallStore(memory_notifications)
        messages = (
            await open_message_store(message_store_url)
            if message_store_url
            else MemoryMessageStore()
        )
        return Stores(
            calls=memory_calls,
            notifications=memory_notifications,
            questions=CachedQuestionStore(MemoryQuestionStore()),
            presence=await open_presence(redis_url, redis_prefix, beacon),
            rooms=MemoryRoomStore(),
            gifts=MemoryGiftStore(memory_calls),
            messages=messages,
            push=MemoryPushStore(),
        )
    if not database_url.startswith(("sqlite", "mysql", "mariadb")):
        raise BackendUnavailableError(
            f"unsupported database URL scheme: {database_url.split(':', maxsplit=1)[0]}"
        )
    try:
        from persistence.push_sql import SqlPushStore
        from persistence.sql import (
            SqlCallStore,
            SqlGiftStore,
            SqlMessageStore,
            SqlNotificationStore,
            SqlQuestionStore,
            SqlRoomStore,
            create_engine,
        )

        engine = create_engine(database_url)
    except ImportError as exc:  # a driver (aiosqlite, aiomysql) is not installed
        raise BackendUnavailableError(f"database driver missing: {exc.name}") from None
    try:
        # The schema is Alembic's (persistence/migrations): made or upgraded
        # here, before any store touches it; a no-op when it is current.
        from persistence.migrate import upgrade

        await upgrade(engine)
        presence = await open_presence(redis_url, redis_prefix, beacon)
    except BaseException:
        await engine.dispose()
        raise
    try:
        sql_messages: MessageStore = (
            await open_message_store(message_store_url)
            if message_store_url
            else SqlMessageStore(engine)
        )
    except BaseException:
        await presence.close()
        await engine.dispose()
        raise
    return Stores(
        calls=SqlCallStore(engine),
        notifications=SqlNotificationStore(engine),
        questions=CachedQuestionStore(SqlQuestionStore(engine)),
        presence=presence,
        rooms=SqlRoomStore(engine),
        gifts=SqlGiftStore(engine),
        messages=sql_messages,
        push=SqlPushStore(engine),
        _closers=[engine],
    )
