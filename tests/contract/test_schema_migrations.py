"""The schema is Alembic's: a fresh database gets it from the migrations, a
second upgrade changes nothing, and what the migrations make is exactly what
the stores' SQLAlchemy metadata describes, on SQLite and on MariaDB."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.factory import open_stores
from persistence.migrate import (
    ALEMBIC_INI,
    PRE_MIGRATION_REVISION,
    SchemaMismatchError,
    alembic_config,
    current_revision,
    head_revision,
    schema_at,
    schema_differences,
    upgrade,
)
from persistence.models import utcnow
from persistence.sql import calls_table, create_engine, metadata
from tests.contract.mysql_scratch import ScratchDatabase
from tests.support import REPO

OUR_TABLES = set(metadata.tables)


@pytest.fixture(params=["sqlite", "mysql"])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database of its own (no tables at all)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    scratch = ScratchDatabase(request.getfixturevalue("mysql_url"))
    await asyncio.to_thread(scratch.create)
    try:
        yield scratch.url
    finally:
        await asyncio.to_thread(scratch.drop)


@pytest.fixture
async def engine(empty_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_engine(empty_url)
    try:
        yield made
    finally:
        await made.dispose()


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(current_revision)


async def differences(engine: AsyncEngine, at: str | None = None) -> list[object]:
    """What differs from the head schema, or from revision ``at``'s."""
    async with engine.connect() as conn:
        if at is None:
            return await conn.run_sync(schema_differences)
        return await conn.run_sync(lambda c: schema_differences(c, schema_at(at, c.dialect.name)))


def migration_events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        getattr(r, "event", "")
        for r in caplog.records
        if r.name == "persistence.migrate" and getattr(r, "event", "")
    ]


async def insert_call(engine: AsyncEngine) -> None:
    now = utcnow().replace(tzinfo=None)
    async with engine.begin() as conn:
        await conn.execute(
            calls_table.insert().values(
                caller_id="alice",
                callee_id="bob",
                scheduled_at=now,
                opens_at=now,
                closes_at=now,
                state="scheduled",
                version=1,
                created_at=now,
            )
        )


async def test_a_fresh_database_gets_the_schema_from_the_migrations(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    assert await tables(engine) == set()
    assert await revision(engine) is None
    caplog.set_level(logging.INFO, "persistence.migrate")

    await upgrade(engine)

    assert await tables(engine) == OUR_TABLES | {"alembic_version"}
    assert await revision(engine) == head_revision()
    assert await differences(engine) == []
    assert migration_events(caplog) == ["db.migrated"]
    (record,) = [r for r in caplog.records if r.name == "persistence.migrate"]
    assert (record.from_revision, record.to_revision) == (None, head_revision())  # type: ignore[attr-defined]


async def test_upgrading_again_is_a_no_op(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    await upgrade(engine)
    await insert_call(engine)
    caplog.set_level(logging.INFO, "persistence.migrate")

    await upgrade(engine)
    await upgrade(engine)

    assert migration_events(caplog) == ["db.schema_current", "db.schema_current"]
    assert await revision(engine) == head_revision()
    assert await differences(engine) == []
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(calls_table.c.caller_id))).scalars().all()
    assert rows == ["alice"], "the second upgrade touched the data"


async def test_open_stores_migrates_a_fresh_database(empty_url: str) -> None:
    """What the server does at start-up: the stores are usable at once."""
    stores = await open_stores(empty_url)
    try:
        call = await stores.calls.create("alice", "bob", utcnow(), utcnow(), utcnow())
        assert await stores.calls.get(call.id) == call
    finally:
        await stores.close()
    check = create_engine(empty_url)
    try:
        assert await revision(check) == head_revision()
        assert await differences(check) == []
    finally:
        await check.dispose()


async def test_downgrade_to_base_and_back_up(engine: AsyncEngine) -> None:
    await upgrade(engine)
    async with engine.connect() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
        await conn.commit()
    assert await tables(engine) == {"alembic_version"}
    assert await revision(engine) is None
    await upgrade(engine)
    assert await revision(engine) == head_revision()
    assert await differences(engine) == []


async def test_the_pre_migration_schema_is_what_its_revision_makes(engine: AsyncEngine) -> None:
    """The schema adoption compares with is read from the scripts, not from
    the head metadata: migrating to that revision makes exactly it."""
    await upgrade(engine, PRE_MIGRATION_REVISION)
    assert await differences(engine, PRE_MIGRATION_REVISION) == []
    assert await differences(engine) != []  # later revisions added to it


async def test_a_database_made_before_migrations_is_adopted_and_upgraded(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    # What start-up made before Alembic: the first revision's tables (the
    # create_all of that time) and no alembic_version.
    await upgrade(engine, PRE_MIGRATION_REVISION)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE alembic_version"))
    assert await revision(engine) is None
    assert OUR_TABLES - await tables(engine), "the head adds tables to the first revision"
    await insert_call(engine)
    caplog.set_level(logging.INFO, "persistence.migrate")

    await upgrade(engine)

    assert await tables(engine) == OUR_TABLES | {"alembic_version"}
    assert await revision(engine) == head_revision()
    assert await differences(engine) == []
    (record,) = [r for r in caplog.records if r.name == "persistence.migrate"]
    assert record.adopted is True  # type: ignore[attr-defined]
    assert (record.from_revision, record.to_revision) == (None, head_revision())  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(calls_table.c.caller_id))).scalars().all()
    assert rows == ["alice"], "adopting touched the data"


async def test_tables_of_another_shape_are_refused(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE calls (id INTEGER PRIMARY KEY, who TEXT)"))
    with pytest.raises(SchemaMismatchError, match="no migration history"):
        await upgrade(engine)
    assert await revision(engine) is None


async def test_upgrades_in_one_process_take_turns(empty_url: str) -> None:
    """Alembic keeps the running migration in module globals: two engines
    migrating at once on one loop must not interleave."""
    engines = [create_engine(empty_url) for _ in range(3)]
    try:
        await asyncio.gather(*(upgrade(e) for e in engines))
        assert await revision(engines[0]) == head_revision()
        assert await differences(engines[0]) == []
    finally:
        for e in engines:
            await e.dispose()


#: A server process's start-up, as far as the schema goes; prints its event.
START_UP = """
import asyncio, logging, sys
from persistence.migrate import upgrade
from persistence.sql import create_engine

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(event)s")
logging.getLogger("alembic").setLevel(logging.WARNING)

async def main() -> None:
    engine = create_engine(sys.argv[1])
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()

asyncio.run(main())
"""


async def test_processes_starting_together_migrate_once(empty_url: str) -> None:
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            START_UP,
            empty_url,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outputs = await asyncio.gather(*(child.communicate() for child in children))
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err.decode()[-3000:]
    events = sorted(out.decode().strip() for out, _ in outputs)
    assert events == ["db.migrated"] + ["db.schema_current"] * 3, events
    engine = create_engine(empty_url)
    try:
        assert await revision(engine) == head_revision()
        assert await differences(engine) == []
    finally:
        await engine.dispose()


async def test_the_schema_check_sees_a_lost_collation(mysql_url: str) -> None:
    """compare_metadata alone would not notice an id column that compares
    case-insensitively again; schema_differences does (MariaDB only: SQLite
    has no per-column collations to lose)."""
    scratch = ScratchDatabase(mysql_url)
    await asyncio.to_thread(scratch.create)
    engine = create_engine(scratch.url)
    try:
        await upgrade(engine)
        assert await differences(engine) == []
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "ALTER TABLE chat_rooms MODIFY user_a VARCHAR(64) "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL"
                )
            )
        found = await differences(engine)
        assert [d[:3] for d in found] == [("modify_collation", "chat_rooms", "user_a")], found
    finally:
        await engine.dispose()
        await asyncio.to_thread(scratch.drop)


def alembic_cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


async def test_the_alembic_cli_runs_the_same_migrations(empty_url: str) -> None:
    """The by-hand route of docs/configuration.md."""
    assert f"{head_revision()} (head)" in await asyncio.to_thread(alembic_cli, "history")
    await asyncio.to_thread(alembic_cli, "-x", f"url={empty_url}", "upgrade", "head")
    current = await asyncio.to_thread(alembic_cli, "-x", f"url={empty_url}", "current")
    assert f"{head_revision()} (head)" in current
    engine = create_engine(empty_url)
    try:
        assert await differences(engine) == []
    finally:
        await engine.dispose()


async def test_the_cli_prints_the_ddl_without_a_database() -> None:
    ddl = await asyncio.to_thread(
        alembic_cli,
        "-x",
        "url=mariadb+aiomysql://nobody@127.0.0.1:1/none",
        "upgrade",
        "head",
        "--sql",
    )
    assert "CREATE TABLE calls" in ddl
    assert "COLLATE utf8mb4_nopad_bin" in ddl
    assert "DATETIME(6)" in ddl
