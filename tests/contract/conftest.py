"""One contract suite, every backend: each test that takes ``stores`` (or one of
the single-store fixtures) runs once per entry of :data:`BACKENDS`.

Adding a backend is one more :class:`Backend` in the list. MySQL/MariaDB is
always in it: a scratch database on the session's own MariaDB server (the
``mysql_url`` fixture; see ``tests/contract/mysql_scratch.py``), made and
migrated once per run, emptied before every test. Without the server the
MySQL tests fail, saying so; they are never skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from persistence.calls import CallStore, NotificationStore
from persistence.factory import Stores, open_stores
from persistence.presence import PresenceStore
from persistence.questions import QuestionStore
from tests.contract import mysql_scratch

OpenBackend = Callable[[Path], AbstractAsyncContextManager[Stores]]


@dataclass(frozen=True)
class Backend:
    name: str
    open: OpenBackend
    #: Session fixtures the backend's server comes from, requested only when
    #: it is used (a run without MySQL tests starts no MariaDB).
    needs: tuple[str, ...] = ()


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


@contextlib.asynccontextmanager
async def _mysql_stores() -> AsyncIterator[Stores]:
    url = await mysql_scratch.SHARED.fresh()
    async with opened(url) as stores:
        yield stores


def mysql_backend(_tmp_path: Path) -> AbstractAsyncContextManager[Stores]:
    """The shared scratch MariaDB/MySQL database, with empty tables."""
    return _mysql_stores()


BACKENDS: list[Backend] = [
    Backend("memory", memory_backend),
    Backend("sqlite", sqlite_backend),
    Backend("mysql", mysql_backend, needs=("mysql_url",)),
]


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    backend: Backend = request.param
    for fixture in backend.needs:
        request.getfixturevalue(fixture)
    async with backend.open(tmp_path) as opened_stores:
        yield opened_stores


@pytest.fixture
def calls(stores: Stores) -> CallStore:
    return stores.calls


@pytest.fixture
def notifications(stores: Stores) -> NotificationStore:
    return stores.notifications


@pytest.fixture(params=["backend", "cached"])
def questions(stores: Stores, request: pytest.FixtureRequest) -> QuestionStore:
    """The backend's own store, and the in-memory cache the server puts over it."""
    return stores.questions if request.param == "cached" else stores.questions.store


@pytest.fixture
def presence(stores: Stores) -> PresenceStore:
    return stores.presence
