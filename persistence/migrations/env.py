"""Alembic environment of the giftcall schema.

Two ways in, the same scripts:

- from code: ``persistence.migrate.upgrade(engine)`` (what the server runs at
  start-up) passes an open connection in ``config.attributes["connection"]``;
- by hand: ``alembic -c persistence/migrations/alembic.ini -x url=URL upgrade head``
  (or ``current``, ``history``, ``downgrade``…, or ``--sql`` for the DDL only),
  with the URL the server is given in ``SIGNALING_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from persistence.migrate import migration_lock
from persistence.sql import create_engine, metadata

config = context.config


def run_over(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        # SQLite alters tables by copying them; later migrations get it for free.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit(
            "no database URL: alembic -c persistence/migrations/alembic.ini "
            '-x url="$SIGNALING_DATABASE_URL" upgrade head'
        )
    return url


async def run_from_cli(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def locked(sync_conn: Connection) -> None:
                with migration_lock(sync_conn):
                    run_over(sync_conn)

            await conn.run_sync(locked)
            await conn.commit()
    finally:
        await engine.dispose()


given = config.attributes.get("connection")
if given is not None:
    run_over(given)
elif context.is_offline_mode():
    context.configure(
        url=database_url(),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(run_from_cli(database_url()))
