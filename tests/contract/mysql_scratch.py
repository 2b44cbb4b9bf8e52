"""Scratch databases on the MariaDB/MySQL server the tests run against.

That server is the session's throwaway ``mariadbd`` (the ``mysql_url``
fixture of ``tests/conftest.py``, started by ``tests/services.py``), or the
one ``TEST_MYSQL_URL`` names (``mysql+aiomysql://user:pass@host:port``, no
database). The fixture registers it here with :func:`serving`; a fixture that
makes a :class:`ScratchDatabase` requests ``mysql_url`` first. A server that
does not answer fails every MySQL test with a message saying so; nothing is
skipped.

Each :class:`ScratchDatabase` is a database of its own,
``giftcall_test_<pid>_<random>``, made on first use and dropped by
:meth:`ScratchDatabase.drop`. :data:`SHARED` is the one the store contract
suites share for the whole run: migrated once, emptied before every test,
dropped when the session's server goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import sqlalchemy as sa

PREFIX = "giftcall_test_"
#: A leftover of a killed run (its pid gone) older than this is dropped.
STALE_AFTER_S = 3600


class MysqlUnavailableError(RuntimeError):
    """The MariaDB/MySQL server of the tests does not answer."""


class _Current:
    """The server :func:`serving` registered for this session, if any."""

    url: str | None = None


@contextlib.contextmanager
def serving(url: str) -> Iterator[None]:
    """Make ``url`` (no database) the server of every :class:`ScratchDatabase`
    made without one, until the end of the block, which drops :data:`SHARED`."""
    _Current.url = url
    try:
        yield
    finally:
        try:
            SHARED.drop()
        finally:
            _Current.url = None


def server_url() -> str:
    """The URL registered by :func:`serving`."""
    if _Current.url is None:
        raise MysqlUnavailableError(
            "no MariaDB/MySQL server for the tests: a test or fixture that uses a "
            "ScratchDatabase must request the mysql_url fixture (tests/conftest.py) first"
        )
    return _Current.url


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ScratchDatabase:
    """One scratch database on the test server (see the module docstring)."""

    def __init__(self, server: str | None = None) -> None:
        # Resolved on first use: SHARED is made at import, before any server.
        self._server = server
        self.name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        self.created = False
        self.migrated = False
        self._failure: MysqlUnavailableError | None = None

    @property
    def server(self) -> sa.engine.URL:
        return sa.engine.make_url(self._server or server_url())

    @property
    def url(self) -> str:
        return self.server.set(database=self.name).render_as_string(hide_password=False)

    def connect(self, **options: Any) -> contextlib.AbstractContextManager[Any]:
        """A plain PyMySQL connection to this database (``options`` for
        ``pymysql.connect``)."""
        return self._connect(self.name, **options)

    @contextlib.contextmanager
    def _connect(self, database: str | None = None, **options: Any) -> Iterator[Any]:
        """A plain (synchronous) PyMySQL connection for set-up and clean-up,
        which run outside any test's event loop or in a thread of their own."""
        if self._failure is not None:
            raise self._failure
        server = self.server
        try:
            conn = pymysql.connect(
                host=server.host or "127.0.0.1",
                port=server.port or 3306,  # MySQL's own default, for a URL without one
                user=server.username or "root",
                password=server.password or "",
                database=database,
                autocommit=True,
                connect_timeout=5,
                charset="utf8mb4",
                **options,
            )
        except pymysql.err.OperationalError as exc:
            self._failure = MysqlUnavailableError(
                f"MariaDB/MySQL is not reachable at {server.host}:{server.port or 3306}"
                f" as {server.username!r} ({exc.args[-1]}). The MySQL tests use the "
                "session's own mariadbd (the mysql_url fixture), or the server that "
                "TEST_MYSQL_URL names when it is set"
            )
            raise self._failure from None
        try:
            yield conn
        finally:
            conn.close()

    def create(self) -> None:
        """Make the (empty) database; also drop leftovers of killed runs."""
        if self.created:
            return
        with self._connect() as conn, conn.cursor() as cur:
            _drop_stale(cur)
            cur.execute(
                f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            )
        self.created = True

    def truncate(self) -> None:
        """Empty every table but Alembic's, and restart the ids at 1."""
        with self._connect(self.name) as conn, conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            tables = [row[0] for row in cur.fetchall() if row[0] != "alembic_version"]
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            for table in tables:
                cur.execute(f"TRUNCATE TABLE `{table}`")
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")

    def drop(self) -> None:
        if not self.created:
            return
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
        self.created = self.migrated = False

    async def fresh(self) -> str:
        """The URL of this database, migrated (once) and emptied (every time)."""
        if not self.migrated:
            await asyncio.to_thread(self.create)
            from persistence.migrate import upgrade
            from persistence.sql import create_engine

            engine = create_engine(self.url)
            try:
                await upgrade(engine)
            finally:
                await engine.dispose()
            self.migrated = True
        else:
            await asyncio.to_thread(self.truncate)
        return self.url


def _drop_stale(cur: Any) -> None:
    """Drop scratch databases whose run was killed before it could clean up:
    the pid in the name is gone and the database is over an hour old (the
    age guards against a pid namespace this process does not see)."""
    cur.execute(
        "SELECT s.schema_name, MIN(t.create_time) FROM information_schema.schemata s "
        "LEFT JOIN information_schema.tables t ON t.table_schema = s.schema_name "
        "WHERE s.schema_name LIKE %s GROUP BY s.schema_name",
        (PREFIX.replace("_", r"\_") + "%",),
    )
    now = time.time()
    for name, created in cur.fetchall():
        match = re.fullmatch(rf"{PREFIX}(\d+)_[0-9a-f]+", name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        if created is None or now - created.timestamp() < STALE_AFTER_S:
            continue
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


#: The database the store contract suites share for the whole run.
SHARED = ScratchDatabase()
