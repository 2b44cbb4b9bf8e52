"""Schema migrations: Alembic, run from code at start-up or by hand with its CLI.

The migration scripts live in ``persistence/migrations`` (``env.py`` and
``versions/``) and install with the package. :func:`upgrade` is what
``open_stores`` runs for every SQL URL: it brings the database to the newest
revision and does nothing when it is there already. Several processes may
start at once: on MySQL/MariaDB a named server lock (``GET_LOCK``) lets one of
them migrate while the others wait and then find nothing to do.

By hand (the same scripts)::

    alembic -c persistence/migrations/alembic.ini -x url=mysql+aiomysql://… upgrade head
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence import push_sql  # noqa: F401  (its tables join the metadata compared below)
from persistence.sql.tables import metadata
from persistence.sqltypes import ExactString, exact_collation

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic narrates every step at INFO; the server logs one event instead."""
    alembic_logger = logging.getLogger("alembic")
    level = alembic_logger.level
    if alembic_logger.getEffectiveLevel() < logging.WARNING:
        alembic_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        alembic_logger.setLevel(level)


# Alembic logs a line for each plugin it registers on its first import.
with _quiet_alembic():
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from alembic.operations import MigrateOperation, Operations
    from alembic.operations.ops import CreateIndexOp, CreateTableOp
    from alembic.script import ScriptDirectory

#: The Alembic script directory (``env.py``, ``versions/``, ``alembic.ini``).
MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
ALEMBIC_INI = MIGRATIONS_DIR / "alembic.ini"
#: Name and wait of the MySQL/MariaDB lock that serialises migrating processes.
LOCK_NAME = "giftcall.schema_migration"
LOCK_TIMEOUT_S = 120
#: The revision whose schema ``create_all`` made before migrations existed: a
#: database with our tables and no history is compared with it, stamped with
#: it, then upgraded like any other.
PRE_MIGRATION_REVISION = "0001"


#: Alembic keeps the migration under way in module globals (``alembic.context``,
#: ``alembic.op``): two upgrades interleaving on one event loop would corrupt
#: each other's, so within a process they take turns (one lock per loop).
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _turn() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _turns.get(loop)
    if lock is None:
        lock = _turns[loop] = asyncio.Lock()
    return lock


class SchemaMismatchError(RuntimeError):
    """The database has tables of ours but no migration history, and they are
    not the schema a migration would have made: refuse to guess."""


def alembic_config(connection: Connection | None = None) -> Config:
    """A configuration of the packaged scripts; with ``connection``, ``env.py``
    migrates over it instead of opening its own."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision of the packaged scripts."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; ``None`` when it was never migrated."""
    return MigrationContext.configure(connection).get_current_revision()


def schema_at(revision: str, dialect_name: str) -> sa.MetaData:
    """The tables as the migrations from base to ``revision`` make them.

    The scripts' operations are recorded, not run (no database is touched),
    and replayed onto a fresh MetaData. :data:`metadata` describes the head
    only; an older revision's schema has to come from its scripts, which
    never change once released. Only the operations the scripts use so far
    are replayed: any other fails loudly rather than guessing.
    """
    scripts = ScriptDirectory.from_config(alembic_config())
    base_first = reversed(list(scripts.walk_revisions("base", revision)))
    recorded: list[MigrateOperation] = []
    context = MigrationContext.configure(dialect_name=dialect_name, opts={"as_sql": True})
    with Operations.context(context) as operations:
        # Every op.* call of a script ends in invoke(): keep it instead of running it.
        operations.invoke = recorded.append  # type: ignore[method-assign,assignment]
        for script in base_first:
            script.module.upgrade()
    schema = sa.MetaData()
    for operation in recorded:
        if isinstance(operation, CreateTableOp):
            # to_table() builds it in a MetaData of its own (with stand-ins for
            # the tables its foreign keys name); the copy refers to ours.
            operation.to_table(context).to_metadata(schema)
        elif isinstance(operation, CreateIndexOp):
            table = schema.tables[operation.table_name]
            sa.Index(
                operation.index_name,
                *(table.c[str(column)] for column in operation.columns),
                unique=operation.unique,
                **operation.kw,
            )
        else:
            raise NotImplementedError(
                f"schema_at cannot replay {type(operation).__name__} (revision {revision})"
            )
    return schema


def schema_differences(connection: Connection, target: sa.MetaData = metadata) -> list[Any]:
    """What differs between the database's tables and ``target`` (the head
    schema unless told), as Alembic's autogenerate sees it (tables, columns,
    types, nullability, indexes, unique constraints, foreign keys); empty
    when they agree."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    differences: list[Any] = [
        diff
        for diff in compare_metadata(context, target)
        # alembic's own bookkeeping table is not ours to describe
        if not (diff[0] == "remove_table" and diff[1].name == "alembic_version")
    ]
    return differences + _collation_differences(connection, target)


def _collation_differences(connection: Connection, target: sa.MetaData) -> list[Any]:
    """Alembic does not see a column lose its collation (it compares one only
    when both sides name one), yet on MySQL/MariaDB the collation of an id
    column is what keeps "Bob", "bob" and "bob " apart."""
    if connection.dialect.name not in ("mysql", "mariadb"):
        return []
    expected = exact_collation(connection.dialect)
    inspector = sa.inspect(connection)
    differences: list[Any] = []
    for table in target.sorted_tables:
        if not inspector.has_table(table.name):
            continue  # compare_metadata reported it
        found = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if not isinstance(column.type, ExactString) or column.name not in found:
                continue
            collation = getattr(found[column.name], "collation", None)
            if collation != expected:
                differences.append(
                    ("modify_collation", table.name, column.name, collation, expected)
                )
    return differences


@contextlib.contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Keep other processes from migrating the same database meanwhile: a
    named server lock on MySQL/MariaDB, the write lock on SQLite."""
    if connection.dialect.name == "sqlite":
        with _sqlite_write_lock(connection):
            yield
        return
    if connection.dialect.name not in ("mysql", "mariadb"):
        yield
        return
    got = connection.execute(
        sa.text("SELECT GET_LOCK(:name, :timeout)"),
        {"name": LOCK_NAME, "timeout": LOCK_TIMEOUT_S},
    ).scalar()
    if got != 1:
        raise TimeoutError(
            f"another process held the schema migration lock {LOCK_NAME!r} "
            f"for more than {LOCK_TIMEOUT_S} s"
        )
    try:
        yield
        # Commit while still holding the lock: the next process must find the
        # version row, not the tables alone (it would stamp them a second time).
        connection.commit()
    finally:
        connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": LOCK_NAME})


@contextlib.contextmanager
def _sqlite_write_lock(connection: Connection) -> Iterator[None]:
    """Run the migration in one ``BEGIN IMMEDIATE`` transaction (SQLite's DDL
    is transactional): a second process waits for the write lock (the
    engine's busy timeout) and then finds the schema complete, never half
    made. The caller commits. The driver would only begin a transaction
    before DML, after the DDL, so it is told to leave that to us meanwhile;
    setting ``isolation_level`` back to a string commits nothing."""
    driver = connection.connection.dbapi_connection
    assert driver is not None
    previous = driver.isolation_level
    driver.isolation_level = None
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield
    finally:
        driver.isolation_level = previous


def _upgrade_sync(connection: Connection, revision: str) -> tuple[str | None, str | None, bool]:
    with migration_lock(connection), _quiet_alembic():
        before = current_revision(connection)
        adopted = False
        ours = set(metadata.tables) & set(sa.inspect(connection).get_table_names())
        if before is None and ours:
            # Made by create_all before migrations existed, so at the first
            # revision's schema (not the head's: later revisions added tables).
            # Adopt it only if it is exactly that, then upgrade it from there.
            expected = schema_at(PRE_MIGRATION_REVISION, connection.dialect.name)
            differences = schema_differences(connection, expected)
            if differences:
                raise SchemaMismatchError(
                    f"the database has tables ({', '.join(sorted(ours))}) but no "
                    f"migration history, and they differ from revision "
                    f"{PRE_MIGRATION_REVISION}: {differences!r}; migrate it by hand "
                    f"or use an empty database"
                )
            command.stamp(alembic_config(connection), PRE_MIGRATION_REVISION)
            adopted = True
        command.upgrade(alembic_config(connection), revision)
        return before, current_revision(connection), adopted


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database of ``engine`` to ``revision`` (the newest by
    default); a no-op when it is there already."""
    started = time.monotonic()
    async with _turn(), engine.connect() as conn:
        before, after, adopted = await conn.run_sync(_upgrade_sync, revision)
        await conn.commit()
    logger.info(
        "database schema at %s",
        after,
        extra={
            "event": "db.migrated" if before != after else "db.schema_current",
            "dialect": engine.dialect.name,
            "from_revision": before,
            "to_revision": after,
            "adopted": adopted,
            "ms": round((time.monotonic() - started) * 1000, 1),
        },
    )
