from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests import services
from tests.contract import mysql_scratch
from tests.support import Client, RunningServer, serve_in_process, server_settings

#: Opt-in: an external server instead of the session's own (see README, Tests).
EXTERNAL_MYSQL = "TEST_MYSQL_URL"
EXTERNAL_REDIS = "TEST_REDIS_URL"


def _external_or_started(
    stack: contextlib.ExitStack,
    variable: str,
    start: Callable[[Path], contextlib.AbstractContextManager[str]],
    folder: Callable[[], Path],
) -> str:
    """The URL in ``$variable`` when set, else that of a server ``start``
    runs until ``stack`` closes. A missing binary fails the tests that asked
    (pytest.fail, never a skip), naming the package to install."""
    external = os.environ.get(variable)
    if external:
        return external
    try:
        return stack.enter_context(start(folder()))
    except (services.MissingBinaryError, services.ServerStartError) as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)  # outside the except: no chained traceback


@pytest.fixture(scope="session")
def mysql_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MariaDB server for the whole session, started on first request:
    ``mysql+aiomysql://root@127.0.0.1:<port>`` (no database), or
    ``$TEST_MYSQL_URL``. ``tests/contract/mysql_scratch.py`` makes the
    databases on it."""
    with contextlib.ExitStack() as stack:
        url = _external_or_started(
            stack, EXTERNAL_MYSQL, services.run_mariadb, lambda: tmp_path_factory.mktemp("mariadb")
        )
        with mysql_scratch.serving(url):
            yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server for the whole session, started on first request:
    ``redis://127.0.0.1:<port>/0``, or ``$TEST_REDIS_URL``. Tests share it
    under key prefixes of their own."""
    with contextlib.ExitStack() as stack:
        yield _external_or_started(
            stack, EXTERNAL_REDIS, services.run_redis, lambda: tmp_path_factory.mktemp("redis")
        )


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A real server on 127.0.0.1 with its own SQLite file and short limits."""
    async with serve_in_process(server_settings(tmp_path)) as running:
        yield running


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[Callable[[str], Awaitable[Client]]]:
    """``await client("alice")``: a connected /call client, closed after the test."""
    made: list[Client] = []

    async def make(user_id: str) -> Client:
        made.append(await Client(server, user_id).connect())
        return made[-1]

    yield make
    for c in made:
        await c.close()
