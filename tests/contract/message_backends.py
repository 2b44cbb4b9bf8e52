"""Fixtures of the chat store contract tests: every message store backend,
MongoDB included, as a real wire-protocol server (nx-27017) in a child process,
and MySQL/MariaDB as the shared scratch database of ``mysql_scratch``.

The Mongo server and the session's MariaDB server (the ``mysql_url`` fixture)
must start: if either cannot, its tests error loudly (never skip), as CI must
run them."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from persistence.calls import CallStore
from persistence.chat import MessageStore, RoomStore
from persistence.gifts import GiftStore
from persistence.memory import (
    MemoryCallStore,
    MemoryGiftStore,
    MemoryMessageStore,
    MemoryRoomStore,
)
from tests.contract import mysql_scratch
from tests.support import free_port, stop_process, wait_for_port

MESSAGE_BACKENDS = ("memory", "sqlite", "mysql", "mongo")
SQL_BACKENDS = ("memory", "sqlite", "mysql")


async def sql_url(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    """An empty, migrated SQL database of the backend ``request.param``
    (``sqlite`` or ``mysql``)."""
    if request.param == "mysql":
        request.getfixturevalue("mysql_url")  # the session's server, started on first use
        return await mysql_scratch.SHARED.fresh()
    url = f"sqlite+aiosqlite:///{tmp_path / name}"
    from persistence.migrate import upgrade
    from persistence.sql import create_engine

    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    return url


@contextlib.contextmanager
def run_mongo_wire_server(folder: Path) -> Iterator[str]:
    """nx-27017 (a MongoDB wire-protocol server on SQLite) on a free
    127.0.0.1 port, one SQLite file per logical database; yields its URL
    prefix (``mongodb://127.0.0.1:<port>``) and stops it after."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "nx_27017.nx_27017",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(folder / "data"),
        "--pid-file",
        str(folder / "nx-27017.pid"),
        "--log-file",
        str(folder / "nx-27017.log"),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=folder)
    try:
        try:
            wait_for_port(port, proc, timeout=20)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(
                f"the MongoDB wire server (nx-27017) did not start: {exc}; "
                "install the test extra: pip install -e '.[test]'"
            ) from None
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_mongo_wire_server(tmp_path_factory.mktemp("nx-27017")) as url:
        yield url


def mongo_database_url(server_url: str) -> str:
    """A database of its own for one test."""
    return f"{server_url}/t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=MESSAGE_BACKENDS)
async def message_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MessageStore]:
    """Each message store backend, empty."""
    if request.param == "memory":
        yield MemoryMessageStore()
        return
    if request.param in ("sqlite", "mysql"):
        from persistence.sql import SqlMessageStore, create_engine

        engine = create_engine(await sql_url(request, tmp_path, "messages.sqlite3"))
        try:
            yield SqlMessageStore(engine)
        finally:
            await engine.dispose()
        return
    from persistence.mongo import MongoMessageStore

    server_url = request.getfixturevalue("mongo_server")
    store = await MongoMessageStore.open(mongo_database_url(server_url))
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=SQL_BACKENDS)
async def chat_sql_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[RoomStore, GiftStore, CallStore]]:
    """The room, gift and call stores of each main-database backend."""
    if request.param == "memory":
        calls = MemoryCallStore()
        yield MemoryRoomStore(), MemoryGiftStore(calls), calls
        return
    from persistence.sql import SqlCallStore, SqlGiftStore, SqlRoomStore, create_engine

    engine = create_engine(await sql_url(request, tmp_path, "main.sqlite3"))
    try:
        yield SqlRoomStore(engine), SqlGiftStore(engine), SqlCallStore(engine)
    finally:
        await engine.dispose()
