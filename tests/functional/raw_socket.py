"""An Engine.IO websocket spoken by hand, for tests of what a client that
ignores the Socket.IO protocol can make the server do (``test_hostile.py``,
``test_fuzz.py``)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.functional.conftest import assert_error
from tests.support import RunningServer

#: The Engine.IO websocket endpoint (protocol 4).
WEBSOCKET_PATH = "/socket.io/?EIO=4&transport=websocket"


@dataclass
class RawSocket:
    """An Engine.IO websocket spoken by hand: whatever a client may send."""

    ws: aiohttp.ClientWebSocketResponse
    handshake: dict[str, Any]

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(
        cls, session: aiohttp.ClientSession, server: RunningServer, **options: Any
    ) -> AsyncIterator[RawSocket]:
        """A new connection of ``session``, closed when the block ends."""
        async with session.ws_connect(server.url + WEBSOCKET_PATH, **options) as ws:
            opened = await ws.receive_str(timeout=5)
            assert opened.startswith("0{"), opened
            yield cls(ws, json.loads(opened[1:]))

    @classmethod
    async def open(
        cls, stack: contextlib.AsyncExitStack, server: RunningServer, **options: Any
    ) -> RawSocket:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        return await stack.enter_async_context(cls.opened(session, server, **options))

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def next(self, timeout: float = 5) -> str | None:
        """The next text frame (answering pings), or None once the server closed."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
            if message.type != aiohttp.WSMsgType.TEXT:
                return None
            if message.data == "2":
                await self.ws.send_str("3")
                continue
            if message.data == "1":  # Engine.IO close
                continue
            return str(message.data)

    async def connect(self, namespace: str, auth: Any = None) -> str | None:
        prefix = "" if namespace == "/" else namespace + ","
        await self.send("40" + prefix + (json.dumps(auth) if auth is not None else ""))
        return await self.next()

    async def call(self, namespace: str, ack_id: int, event: str, payload: Any) -> Any:
        """An event with an ack id; returns the ack's first argument."""
        await self.send(f"42{namespace},{ack_id}" + json.dumps([event, payload]))
        return ack_of(await self.next(), namespace, ack_id)

    async def closed_within(self, seconds: float) -> bool:
        try:
            while await self.next(timeout=seconds) is not None:
                pass
        except TimeoutError:
            return False
        return True

    async def still_open(self, namespace: str = "/call") -> None:
        """The connection answers an event (an unknown one: an invalid ack)."""
        ack = await self.call(namespace, 999, "nothing", {})
        assert_error(ack, "invalid")


def ack_of(frame: str | None, namespace: str, ack_id: int | str) -> Any:
    prefix = f"43{namespace},{ack_id}"
    assert frame is not None and frame.startswith(prefix), frame
    return json.loads(frame[len(prefix) :])[0]


def connect_error(frame: str | None, namespace: str) -> Any:
    prefix = "44" if namespace == "/" else f"44{namespace},"
    assert frame is not None and frame.startswith(prefix), frame
    return json.loads(frame[len(prefix) :])
