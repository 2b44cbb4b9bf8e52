from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.support import Client, RunningServer, serve_in_process, server_settings


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
