"""One contract suite, every backend: each test that takes ``stores`` (or one of
the single-store fixtures) runs once per entry of :data:`BACKENDS`.

Adding a backend is one more :class:`Backend` in the list. MySQL is wired in
already and joins the run when ``CONTRACT_MYSQL_URL`` names a scratch database
(``mysql+aiomysql://user:pass@127.0.0.1/scratch``): its tables are dropped and
re-created before every test.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from persistence.calls import CallStore, NotificationStore
from persistence.factory import Stores, open_stores
from persistence.presence import PresenceStore
from persistence.questions import QuestionStore

OpenBackend = Callable[[Path], AbstractAsyncContextManager[Stores]]


@dataclass(frozen=True)
class Backend:
    name: str
    open: OpenBackend


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Stores]:
    stores = await open_stores(url)
    try:
        yield stores
    finally:
        await stores.close()


def memory_backend(_tmp_path: Path) -> AbstractAsyncContextManager[Stores]:
    return opened("memory://")


def sqlite_backend(tmp_path: Path) -> AbstractAsyncContextManager[Stores]:
    return opened(f"sqlite+aiosqlite:///{tmp_path / 'contract.sqlite3'}")


def scratch_sql_backend(url: str) -> OpenBackend:
    """A shared server database, emptied before each test."""

    @contextlib.asynccontextmanager
    async def open_fresh(_tmp_path: Path) -> AsyncIterator[Stores]:
        from persistence.sql import create_engine, metadata

        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.drop_all)
        finally:
            await engine.dispose()
        async with opened(url) as stores:
            yield stores

    return open_fresh


BACKENDS: list[Backend] = [
    Backend("memory", memory_backend),
    Backend("sqlite", sqlite_backend),
]
if mysql_url := os.environ.get("CONTRACT_MYSQL_URL"):
    BACKENDS.append(Backend("mysql", scratch_sql_backend(mysql_url)))


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    backend: Backend = request.param
    async with backend.open(tmp_path) as opened_stores:
        yield opened_stores


@pytest.fixture
def calls(stores: Stores) -> CallStore:
    return stores.calls


@pytest.fixture
def notifications(stores: Stores) -> NotificationStore:
    return stores.notifications


@pytest.fixture
def questions(stores: Stores) -> QuestionStore:
    return stores.questions


@pytest.fixture
def presence(stores: Stores) -> PresenceStore:
    return stores.presence
