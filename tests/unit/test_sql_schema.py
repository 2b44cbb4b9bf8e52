"""The SQL schema keeps what the store contract promises on every dialect,
including the ones the contract suite cannot run here (MySQL)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.schema import CreateTable

from persistence.sql import metadata
from persistence.sqltypes import UtcDateTime

#: The tables of the call and notification store contracts.
TABLES = ("calls", "notifications")
DATETIME_COLUMNS = [
    (name, column.name)
    for name in TABLES
    for column in metadata.tables[name].columns
    if isinstance(column.type, UtcDateTime | sa.DateTime)
]


def test_every_instant_is_a_utc_datetime() -> None:
    # An empty list would turn the test below into a skip.
    assert len(DATETIME_COLUMNS) >= 7
    assert all(
        isinstance(metadata.tables[table].c[column].type, UtcDateTime)
        for table, column in DATETIME_COLUMNS
    )


@pytest.mark.parametrize(("table", "column"), DATETIME_COLUMNS)
def test_mysql_datetimes_keep_milliseconds(table: str, column: str) -> None:
    # MySQL's bare DATETIME rounds to whole seconds: a countdown's live_at,
    # a limit's ends_at and every wire timestamp would lose their milliseconds.
    ddl = str(CreateTable(metadata.tables[table]).compile(dialect=mysql.dialect()))
    declared = re.search(rf"^\s*{column} (\S+)", ddl, re.MULTILINE)
    assert declared is not None, ddl
    fsp = re.fullmatch(r"DATETIME\((\d)\)", declared.group(1).rstrip(","))
    assert fsp is not None and int(fsp.group(1)) >= 3, f"{table}.{column} is {declared.group(1)}"
