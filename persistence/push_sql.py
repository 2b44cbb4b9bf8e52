"""The SQL backend of :class:`persistence.push.PushStore` (SQLite, MySQL/MariaDB).

Its tables join the shared :data:`persistence.sql.metadata` when this module is
imported (``persistence.migrate`` imports it, so the schema check sees them);
the schema itself is made by migration ``0002_push``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.push import (
    MAX_DELIVERY_KEY,
    MAX_ENDPOINT,
    PushStore,
    PushSubscription,
    endpoint_hash,
)
from persistence.sql import LostRaceError, UserId, metadata, transaction_attempts
from persistence.sqltypes import MYSQL_TABLE_OPTIONS, UtcDateTime

push_subscriptions_table = sa.Table(
    "push_subscriptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", UserId, nullable=False, index=True),
    sa.Column("endpoint", sa.String(MAX_ENDPOINT), nullable=False),
    # The endpoint's SHA-256: a unique key on the URL itself would exceed
    # InnoDB's 3072-byte index limit in utf8mb4.
    sa.Column("endpoint_hash", sa.String(64), nullable=False),
    sa.Column("p256dh", sa.String(128), nullable=False),
    sa.Column("auth", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("endpoint_hash", name="uq_push_subscriptions_endpoint"),
    **MYSQL_TABLE_OPTIONS,
)

#: One row per notice delivered to one subscription: the primary key is what
#: makes a second sender (a timer that fired twice, another process) lose.
push_deliveries_table = sa.Table(
    "push_deliveries",
    metadata,
    sa.Column("key", sa.String(MAX_DELIVERY_KEY), primary_key=True, autoincrement=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    **MYSQL_TABLE_OPTIONS,
)


def _subscription(row: sa.Row[tuple[object, ...]]) -> PushSubscription:
    m = row._mapping
    return PushSubscription(
        id=int(m["id"]),
        user_id=str(m["user_id"]),
        endpoint=str(m["endpoint"]),
        p256dh=str(m["p256dh"]),
        auth=str(m["auth"]),
        created_at=m["created_at"],
    )


class SqlPushStore(PushStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(
        self, user_id: str, endpoint: str, p256dh: str, auth: str, *, keep: int
    ) -> PushSubscription:
        # Two posts of one endpoint at once: the loser's insert hits the
        # unique key and its second attempt replaces the winner's row.
        attempts = transaction_attempts("push_subscription.add", attempts=2, user_id=user_id)
        return await attempts(self._replace, user_id, endpoint, p256dh, auth, keep)

    async def _replace(
        self, user_id: str, endpoint: str, p256dh: str, auth: str, keep: int
    ) -> PushSubscription:
        t = push_subscriptions_table.c
        created_at = datetime.now(UTC)
        key = endpoint_hash(endpoint)
        try:
            async with self._engine.begin() as conn:
                await conn.execute(push_subscriptions_table.delete().where(t.endpoint_hash == key))
                result = await conn.execute(
                    push_subscriptions_table.insert(),
                    {
                        "user_id": user_id,
                        "endpoint": endpoint,
                        "endpoint_hash": key,
                        "p256dh": p256dh,
                        "auth": auth,
                        "created_at": created_at,
                    },
                )
                ids = (
                    await conn.execute(
                        sa.select(t.id).where(t.user_id == user_id).order_by(t.id.desc())
                    )
                ).scalars()
                evicted = list(ids)[keep:]
                if evicted:
                    await conn.execute(push_subscriptions_table.delete().where(t.id.in_(evicted)))
        except sa.exc.IntegrityError as exc:
            raise LostRaceError(f"push subscription of {user_id!r}: its endpoint") from exc
        new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return PushSubscription(new_id, user_id, endpoint, p256dh, auth, created_at)

    async def remove(self, user_id: str, endpoint: str) -> bool:
        t = push_subscriptions_table.c
        query = push_subscriptions_table.delete().where(
            t.endpoint_hash == endpoint_hash(endpoint), t.user_id == user_id
        )
        async with self._engine.begin() as conn:
            result = await conn.execute(query)
        return bool(result.rowcount)

    async def discard(self, subscription_id: int) -> None:
        t = push_subscriptions_table.c
        async with self._engine.begin() as conn:
            await conn.execute(push_subscriptions_table.delete().where(t.id == subscription_id))

    async def list_for_user(self, user_id: str) -> list[PushSubscription]:
        t = push_subscriptions_table.c
        query = push_subscriptions_table.select().where(t.user_id == user_id).order_by(t.id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_subscription(r) for r in rows]

    async def claim_delivery(self, key: str) -> bool:
        row = {"key": key, "created_at": datetime.now(UTC)}
        try:
            async with self._engine.begin() as conn:
                await conn.execute(push_deliveries_table.insert(), row)
        except sa.exc.IntegrityError:
            return False  # someone delivered (or is delivering) it already
        return True

    async def prune_deliveries(self, before: datetime) -> int:
        t = push_deliveries_table.c
        async with self._engine.begin() as conn:
            result = await conn.execute(push_deliveries_table.delete().where(t.created_at < before))
        return int(result.rowcount)
