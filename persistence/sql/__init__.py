"""SQL backends on SQLAlchemy 2 async: SQLite by default, MySQL/MariaDB via aiomysql.

- ``tables.py``: the tables (``metadata``), which the migrations must make;
- ``engine.py``: the engine with each dialect's settings, and the retry
  policy of transactions the database rolled back;
- the stores by what they store: ``calls.py`` (calls and their notifications,
  and ``insert_call``, which the gift store shares), ``questions.py``,
  ``chat.py`` (rooms and messages), ``gifts.py``.

Every name is re-exported here. Nothing here imports ``persistence.migrate``:
the migrations depend on the tables, never the other way round.
"""

from persistence.sql.calls import SqlCallStore, SqlNotificationStore, insert_call
from persistence.sql.chat import SqlMessageStore, SqlRoomStore
from persistence.sql.engine import (
    LostRaceError,
    create_engine,
    is_mysql,
    is_retryable,
    logger,
    transaction_attempts,
)
from persistence.sql.gifts import SqlGiftStore
from persistence.sql.questions import SqlQuestionStore
from persistence.sql.tables import (
    UserId,
    calls_table,
    chat_counters_table,
    chat_messages_table,
    chat_reads_table,
    chat_rooms_table,
    gifts_table,
    metadata,
    notifications_table,
    questions_table,
)

__all__ = [
    "LostRaceError",
    "SqlCallStore",
    "SqlGiftStore",
    "SqlMessageStore",
    "SqlNotificationStore",
    "SqlQuestionStore",
    "SqlRoomStore",
    "UserId",
    "calls_table",
    "chat_counters_table",
    "chat_messages_table",
    "chat_reads_table",
    "chat_rooms_table",
    "create_engine",
    "gifts_table",
    "insert_call",
    "is_mysql",
    "is_retryable",
    "logger",
    "metadata",
    "notifications_table",
    "questions_table",
    "transaction_attempts",
]
