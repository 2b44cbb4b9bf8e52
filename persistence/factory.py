"""Pick a backend from a URL scheme; the one place that knows every backend."""

from __future__ import annotations

from dataclasses import dataclass, field

from persistence.calls import CallStore, NotificationStore
from persistence.memory import (
    MemoryCallStore,
    MemoryNotificationStore,
    MemoryPresenceStore,
    MemoryQuestionStore,
)
from persistence.presence import PresenceStore
from persistence.questions import QuestionStore


class BackendUnavailableError(RuntimeError):
    """A backend's driver is missing or its URL is not understood."""


@dataclass
class Stores:
    """Every store the server uses, opened together and closed together."""

    calls: CallStore
    notifications: NotificationStore
    questions: QuestionStore
    presence: PresenceStore
    _closers: list[object] = field(default_factory=list)

    async def ping(self) -> None:
        """Raise if a backend does not answer (used by the health route)."""
        await self.calls.get(0)

    async def close(self) -> None:
        for engine in reversed(self._closers):
            dispose = getattr(engine, "dispose", None)
            if dispose is not None:
                await dispose()


async def open_stores(database_url: str) -> Stores:
    """Open the stores for ``database_url`` (``memory://`` or a SQLAlchemy URL)
    and make sure their schema exists."""
    if database_url.startswith("memory:"):
        return Stores(
            calls=MemoryCallStore(),
            notifications=MemoryNotificationStore(),
            questions=MemoryQuestionStore(),
            presence=MemoryPresenceStore(),
        )
    if not database_url.startswith(("sqlite", "mysql")):
        raise BackendUnavailableError(
            f"unsupported database URL scheme: {database_url.split(':', maxsplit=1)[0]}"
        )
    try:
        from persistence.sql import (
            SqlCallStore,
            SqlNotificationStore,
            SqlQuestionStore,
            create_engine,
            create_schema,
        )

        engine = create_engine(database_url)
    except ImportError as exc:  # a driver (aiosqlite, aiomysql) is not installed
        raise BackendUnavailableError(f"database driver missing: {exc.name}") from None
    await create_schema(engine)
    return Stores(
        calls=SqlCallStore(engine),
        notifications=SqlNotificationStore(engine),
        questions=SqlQuestionStore(engine),
        presence=MemoryPresenceStore(),
        _closers=[engine],
    )
