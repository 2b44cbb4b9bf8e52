"""Hypothesis-generated Socket.IO events and REST bodies against a
live server. Every answer has PROTOCOL.md's shape, nothing is a 5xx, nothing
a client sends makes an ERROR log line, and the server is healthy afterwards.

The server runs on a loop of its own in a thread; the test drives it from a
private loop of the test's thread, so Hypothesis' ``@given`` runs a plain
function per example (a few hundred of each kind: well under a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.errors import STATUS_BY_CODE
from tests.functional.conftest import StdJsonPacket
from tests.support import RunningServer, in_seconds, serve_in_process, server_settings

#: Examples of each kind (events, bodies): about 30 s in all.
EXAMPLES = 1500

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.integers(min_value=-3, max_value=2**54) | st.text(max_size=20) | json_values
call_fields = st.fixed_dictionaries(
    {},
    optional={
        "partner_id": st.sampled_from(["bob", "", "x" * 65]) | json_values,
        "scheduled_at": st.sampled_from([in_seconds(600), "1796109290", "2030-01-01"])
        | json_values,
        "call_id": ids,
        "type": st.sampled_from(["offer", "answer", "candidate", "end-of-candidates"]),
        "sdp": st.text(max_size=60) | json_values,
        "candidate": st.fixed_dictionaries({"candidate": st.text(max_size=30)}) | json_values,
        "receiver_id": st.sampled_from(["bob", "alice"]) | json_values,
        "kind": st.sampled_from(["general", "special", "other"]) | json_values,
        "message": st.text(max_size=40) | json_values,
        "room_id": ids,
        "content": st.text(max_size=40) | json_values,
        "client_msg_id": st.text(max_size=40) | json_values,
        "after_seq": ids,
        "seq": ids,
    },
)
payloads = call_fields | json_values
events = st.sampled_from(
    ["join", "signal", "connected", "leave", "send", "sync", "read", "JOIN", "__init__"]
) | st.text(max_size=20)
rest_paths = st.sampled_from(
    ["/api/calls", "/api/gifts", "/api/chat/rooms/1/read", "/api/questions", "/api/dev/login"]
)


def assert_answer(body: Any) -> None:
    """``{ok: true, ...}`` or PROTOCOL.md's error with a known code."""
    assert isinstance(body, dict), body
    if body.get("ok") is True:
        return
    assert body.get("ok") is False, body
    error = body["error"]
    assert error["code"] in STATUS_BY_CODE and error["code"] != "unavailable", body
    assert isinstance(error["message"], str) and error["message"], body


class ErrorLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def server_in_thread(tmp_path: Path) -> Iterator[RunningServer]:
    """A real server on a loop of its own (``asyncio.run``: its leftover tasks
    are cancelled when it stops)."""
    ready: list[tuple[RunningServer, asyncio.AbstractEventLoop, asyncio.Event]] = []
    started = threading.Event()

    async def run() -> None:
        stop = asyncio.Event()
        async with serve_in_process(server_settings(tmp_path)) as running:
            ready.append((running, asyncio.get_running_loop(), stop))
            started.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(15), "the server did not start"
    server, loop, stop = ready[0]
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)


def test_generated_events_and_bodies_get_answers_in_shape(tmp_path: Path) -> None:
    errors = ErrorLines()
    logging.getLogger().addHandler(errors)
    client_loop = asyncio.new_event_loop()
    try:
        with server_in_thread(tmp_path) as server:
            client_loop.run_until_complete(_fuzz(server))
    finally:
        client_loop.close()
        logging.getLogger().removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records][:5]


async def _fuzz(server: RunningServer) -> None:
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        call = await _rest(
            session,
            server,
            "POST",
            "/api/calls",
            {"partner_id": "bob", "scheduled_at": in_seconds(1)},
        )
        assert call[0] == 201, call
        clients = {}
        for namespace in ("/call", "/chat"):
            sio = socketio.AsyncClient(reconnection=False, serializer=StdJsonPacket)
            await sio.connect(
                server.url,
                namespaces=[namespace],
                auth={"token": server.token("alice")},
                transports=["websocket"],
                wait_timeout=5,
            )
            clients[namespace] = sio

        def run(coro: Any) -> Any:
            # Hypothesis calls the examples synchronously: each runs to its end
            # on this loop, which is free while the test thread waits on it.
            return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.sampled_from(["/call", "/chat"]), events, payloads)
        def one_event(namespace: str, event: str, payload: Any) -> None:
            ack = run(clients[namespace].call(event, payload, namespace=namespace, timeout=5))
            assert_answer(ack)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(rest_paths, payloads)
        def one_body(path: str, body: Any) -> None:
            status, answer = run(_rest(session, server, "POST", path, body))
            assert status < 500, (status, answer)
            assert_answer(answer)

        # Hypothesis is synchronous: it runs in a worker thread while this loop serves it.
        await loop.run_in_executor(None, one_event)
        await loop.run_in_executor(None, one_body)
        for sio in clients.values():
            assert sio.connected
            await sio.disconnect()
        status, health = await _rest(session, server, "GET", "/api/health", None)
        assert (status, health) == (200, {"ok": True})
        status, answer = await _rest(
            session,
            server,
            "POST",
            "/api/calls",
            {"partner_id": "carol", "scheduled_at": in_seconds(60)},
        )
        assert status == 201, answer


async def _rest(
    session: aiohttp.ClientSession, server: RunningServer, method: str, path: str, body: Any
) -> tuple[int, Any]:
    async with session.request(
        method, server.url + path, headers=server.headers("alice"), json=body
    ) as response:
        return response.status, await response.json(content_type=None)
