"""Web Push: subscriptions and delivery keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Written out by hand. ``push_subscriptions`` holds each browser's
PushSubscription, unique by the endpoint's SHA-256 (a unique key on a 2048
character URL would exceed InnoDB's index limit); ``push_deliveries`` holds one
key per notice sent to one subscription, so a second sender finds it taken.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.sqltypes import MYSQL_TABLE_OPTIONS, ExactString, UtcDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", ExactString(64), nullable=False),
        sa.Column("endpoint", sa.String(2048), nullable=False),
        sa.Column("endpoint_hash", sa.String(64), nullable=False),
        sa.Column("p256dh", sa.String(128), nullable=False),
        sa.Column("auth", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("endpoint_hash", name="uq_push_subscriptions_endpoint"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_push_subscriptions_user_id", "push_subscriptions", ["user_id"])
    op.create_table(
        "push_deliveries",
        sa.Column("key", sa.String(128), primary_key=True, autoincrement=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        **MYSQL_TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("push_deliveries")
    op.drop_table("push_subscriptions")
