"""Shared test helpers: a real server on 127.0.0.1 (in-process or as a child
process), tokens, and Socket.IO clients that record what they receive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from aiohttp import web

from signaling.app import create_app
from signaling.auth import mint_token
from signaling.config import Settings, load_settings

SECRET = "test-secret-that-is-long-enough-for-hs256!"
CALL_EVENTS = (
    "partner_joined",
    "partner_left",
    "signal",
    "countdown",
    "live",
    "ended",
    "call_soon",
)
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RecordingEnviron(Mapping[str, str]):
    """An empty environment that notes every variable asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_load_settings_reads() -> set[str]:
    """Every variable ``load_settings`` asks its environment for, by name."""
    environ = RecordingEnviron()
    load_settings(environ, dev=True)
    return environ.asked


def server_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test server: its own SQLite file, short call limits."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": free_port(),
        "jwt_secret": SECRET,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}",
        "countdown_s": 0.5,
        "limit_s": 1.5,
        "notify_before_s": 300.0,
        "join_grace_s": 600.0,
        # In-process servers share the test process's heap: never freeze it.
        "gc_freeze": False,
    }
    values.update(overrides)
    return load_settings({}, **values)


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


@dataclass
class RunningServer:
    settings: Settings
    app: web.Application | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def token(self, user_id: str) -> str:
        return mint_token(self.settings.jwt_secret, user_id)

    def headers(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id)}"}

    async def request(
        self, method: str, path: str, user_id: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = self.headers(user_id) if user_id else {}
        headers.update(kwargs.pop("headers", {}))
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, headers=headers, **kwargs) as response,
        ):
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def schedule(self, caller: str, callee: str, in_s: float = 2.0) -> dict[str, Any]:
        status, body = await self.request(
            "POST",
            "/api/calls",
            caller,
            json={"partner_id": callee, "scheduled_at": in_seconds(in_s)},
        )
        assert status == 201, body
        return dict(body["call"])


@contextlib.asynccontextmanager
async def serve_in_process(settings: Settings) -> AsyncIterator[RunningServer]:
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    try:
        yield RunningServer(settings, app)
    finally:
        await runner.cleanup()


class ErrorLines(logging.Handler):
    """Collects the ERROR records logged while it is on the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def server_in_thread(tmp_path: Path, **overrides: Any) -> Iterator[RunningServer]:
    """A real server on a loop of its own in a thread (``asyncio.run``: its
    leftover tasks are cancelled when it stops), for tests that drive it from
    synchronous code such as Hypothesis' ``@given`` functions."""
    ready: list[tuple[RunningServer, asyncio.AbstractEventLoop, asyncio.Event]] = []
    started = threading.Event()

    async def run() -> None:
        stop = asyncio.Event()
        async with serve_in_process(server_settings(tmp_path, **overrides)) as running:
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


@contextlib.contextmanager
def serve_in_child(settings: Settings, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """The real CLI in a child process (for restarts and kills); ``env`` holds
    the SIGNALING_* variables, as an operator would set them."""
    child_env = {**os.environ, **env, "SIGNALING_PORT": str(settings.port)}
    # Its log goes to a file, never to a pipe nobody reads: a full pipe would
    # block the server's loop on its next log line.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "signaling", "serve"],
            cwd=REPO,
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            wait_for_port(settings.port, proc)
            yield proc
        finally:
            stop_process(proc)
            log.seek(0)
            tail = log.read().decode(errors="replace").splitlines()[-40:]
            # Shown by pytest when the test fails.
            print(f"--- server pid {proc.pid} exited {proc.returncode} ---", *tail, sep="\n")


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; closes its stderr pipe."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {err[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@dataclass
class Client:
    """A python-socketio client of /call that records every event it gets."""

    server: RunningServer
    user_id: str
    sio: socketio.AsyncClient = field(
        default_factory=lambda: socketio.AsyncClient(reconnection=False)
    )
    events: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    namespace: str = "/call"

    def __post_init__(self) -> None:
        for name in CALL_EVENTS:
            self.sio.on(name, self._recorder(name), namespace=self.namespace)

    def _recorder(self, name: str) -> Any:
        async def record(data: Any) -> None:
            async with self._arrived:
                self.events[name].append(data)
                self._arrived.notify_all()

        return record

    async def connect(self, token: str | None = None) -> Client:
        await self.sio.connect(
            self.server.url,
            namespaces=[self.namespace],
            auth={"token": token or self.server.token(self.user_id)},
            transports=["websocket"],
            wait_timeout=5,
        )
        return self

    async def emit(self, event: str, payload: Any, timeout: float = 5) -> Any:
        return await self.sio.call(event, payload, namespace=self.namespace, timeout=timeout)

    async def wait_for(self, name: str, count: int = 1, timeout: float = 10) -> list[Any]:
        """Wait until ``count`` events called ``name`` have arrived; returns them all."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.events[name]) >= count), timeout
            )
            return list(self.events[name])

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
