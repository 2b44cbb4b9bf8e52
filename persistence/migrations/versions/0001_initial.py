"""The initial schema: calls, notifications, questions, chat, gifts.

Revision ID: 0001
Revises:
Create Date: 2025-11-26

Written out by hand, not generated at run time. On MySQL/MariaDB every table
is InnoDB in utf8mb4, user ids and client message ids compare exactly
(ExactString), and datetimes keep microseconds (UtcDateTime).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.sqltypes import MYSQL_TABLE_OPTIONS, ExactString, UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

#: User ids (the JWT ``sub``) and client message ids: 1 to 64 characters.
ID_LENGTH = 64


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("caller_id", ExactString(ID_LENGTH), nullable=False),
        sa.Column("callee_id", ExactString(ID_LENGTH), nullable=False),
        sa.Column("scheduled_at", UtcDateTime, nullable=False),
        sa.Column("opens_at", UtcDateTime, nullable=False),
        sa.Column("closes_at", UtcDateTime, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("live_at", UtcDateTime, nullable=True),
        sa.Column("ends_at", UtcDateTime, nullable=True),
        sa.Column("started_at", UtcDateTime, nullable=True),
        sa.Column("ended_at", UtcDateTime, nullable=True),
        sa.Column("end_reason", sa.String(16), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_calls_caller_id", "calls", ["caller_id"])
    op.create_index("ix_calls_callee_id", "calls", ["callee_id"])
    op.create_index("ix_calls_state", "calls", ["state"])

    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", ExactString(ID_LENGTH), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("call_id", sa.Integer, nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_notifications_user_id_id", "notifications", ["user_id", "id"])

    op.create_table(
        "questions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("text", sa.String(500), nullable=False),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "chat_rooms",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_a", ExactString(ID_LENGTH), nullable=False),
        sa.Column("user_b", ExactString(ID_LENGTH), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("user_a", "user_b", name="uq_chat_rooms_pair"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_chat_rooms_user_b", "chat_rooms", ["user_b"])

    op.create_table(
        "chat_counters",
        sa.Column("room_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("last_at", UtcDateTime, nullable=False),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "chat_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("room_id", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("sender_id", ExactString(ID_LENGTH), nullable=False),
        sa.Column("client_msg_id", ExactString(ID_LENGTH), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("room_id", "seq", name="uq_chat_messages_room_seq"),
        sa.UniqueConstraint(
            "room_id", "sender_id", "client_msg_id", name="uq_chat_messages_client_msg"
        ),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "chat_reads",
        sa.Column("room_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("user_id", ExactString(ID_LENGTH), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "gifts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sender_id", ExactString(ID_LENGTH), nullable=False),
        sa.Column("receiver_id", ExactString(ID_LENGTH), nullable=False),
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
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_gifts_sender_receiver", "gifts", ["sender_id", "receiver_id"])
    op.create_index("ix_gifts_receiver_id", "gifts", ["receiver_id", "id"])


def downgrade() -> None:
    op.drop_table("gifts")
    op.drop_table("chat_reads")
    op.drop_table("chat_messages")
    op.drop_table("chat_counters")
    op.drop_table("chat_rooms")
    op.drop_table("questions")
    op.drop_table("notifications")
    op.drop_table("calls")
