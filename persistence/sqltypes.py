"""Column types whose meaning must not depend on the database server's defaults,
among them :class:`UtcDateTime`, the one conversion of instants to and from
the database.

Shared by the table definitions (``persistence.sql.tables``) and the migrations
(``persistence/migrations/versions``), so a migration written once keeps
creating exactly what the stores expect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

from persistence.models import as_utc


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """An instant: aware UTC in Python, naive UTC in the database.

    Neither SQLite nor MySQL's DATETIME keeps a zone, so every instant is
    stored as UTC without one and read back with it: the one place where the
    stores convert, for every column, bound parameter and comparison of this
    type. An aware instant in another zone is converted; a naive one is
    taken as UTC. MySQL gets ``DATETIME(6)``: its bare DATETIME would round
    to the second.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


#: Every table on MySQL/MariaDB: InnoDB (row locks, transactions, foreign
#: keys) and 4-byte UTF-8 whatever the server's default character set is.
MYSQL_TABLE_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def exact_collation(dialect: Dialect) -> str:
    """The MySQL-family collation that compares like Python's ``==``: by code
    point, case- and accent-sensitive, and without padding (``"bob"`` and
    ``"bob "`` differ). MariaDB calls it ``utf8mb4_nopad_bin``, MySQL 8.0.17+
    ``utf8mb4_0900_bin``; older MySQL only has ``utf8mb4_bin``, which still
    ignores trailing spaces."""
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    version = getattr(dialect, "server_version_info", None)
    if version is not None and tuple(version) < (8, 0, 17):
        return "utf8mb4_bin"
    return "utf8mb4_0900_bin"


class ExactString(sa.types.TypeDecorator[str]):
    """A ``VARCHAR(length)`` compared exactly, on every database.

    For identifiers (user ids, ``client_msg_id``): ``"Bob"``, ``"bob"`` and
    ``"bob "`` are three users. SQLite compares text byte by byte already;
    MySQL and MariaDB default to case-insensitive, space-padding collations
    that would make them one row of a unique key and one match of a
    ``WHERE``, so there the column gets :func:`exact_collation`. The server
    flavour is known once the engine has connected, hence a decorator that
    picks its implementation per dialect instead of a static variant.
    """

    impl = sa.String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(
                mysql.VARCHAR(self.length, charset="utf8mb4", collation=exact_collation(dialect))
            )
        return dialect.type_descriptor(sa.String(self.length))

    def __repr__(self) -> str:
        return f"ExactString({self.length})"
