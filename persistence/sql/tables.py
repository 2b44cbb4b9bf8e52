"""The SQL tables, as the stores use them and the migrations must make them.

The schema in a database is made by the Alembic migrations
(``persistence/migrations``); ``persistence.migrate`` compares it with these.
"""

from __future__ import annotations

import sqlalchemy as sa

from persistence.sqltypes import MYSQL_TABLE_OPTIONS, ExactString, UtcDateTime

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
