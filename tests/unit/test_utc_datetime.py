"""persistence.sqltypes.UtcDateTime: instants in, the same instants out, on
SQLite, and naive UTC with microseconds in the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite

from persistence.sqltypes import UtcDateTime

SEOUL = timezone(timedelta(hours=9))


def test_binds_naive_utc_and_reads_aware_utc() -> None:
    column_type = UtcDateTime()
    dialect = sqlite.dialect()
    at_seoul = datetime(2026, 2, 14, 21, 0, 0, 123456, tzinfo=SEOUL)
    stored = column_type.process_bind_param(at_seoul, dialect)
    assert stored == datetime(2026, 2, 14, 12, 0, 0, 123456)
    assert stored is not None and stored.tzinfo is None
    read = column_type.process_result_value(stored, dialect)
    assert read == at_seoul and read is not None and read.tzinfo is UTC
    # A naive value is taken as UTC already; None stays None.
    assert column_type.process_bind_param(datetime(2026, 1, 1), dialect) == datetime(2026, 1, 1)
    assert column_type.process_bind_param(None, dialect) is None
    assert column_type.process_result_value(None, dialect) is None


def test_mysql_keeps_microseconds() -> None:
    impl = UtcDateTime().load_dialect_impl(mysql.dialect())
    assert isinstance(impl, mysql.DATETIME) and impl.fsp == 6


def test_a_round_trip_through_sqlite_and_a_comparison() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("at", UtcDateTime, nullable=False))
    engine = sa.create_engine("sqlite://")
    at = datetime(2026, 2, 14, 21, 0, 0, 500000, tzinfo=SEOUL)
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), {"at": at})
        # The bound parameter of a comparison is converted too.
        due = sa.select(table.c.at).where(table.c.at <= sa.bindparam("now"))
        (read,) = conn.execute(due, {"now": at}).one()
    assert read == at and read.tzinfo is UTC
