"""Whatever a client sends, the server's log (the real CLI in
a child process, its stderr in a file) is one valid JSON object per line, and
nothing a client sends makes an ERROR line."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import socketio
from yarl import URL

from tests.support import REPO, SECRET, free_port, mint_token, stop_process, wait_for_port

FORGED = '{"level": "error", "logger": "forged", "msg": "forged"}'


@contextlib.contextmanager
def serving(tmp_path: Path, port: int, log_path: Path) -> Iterator[None]:
    """The real CLI, its stderr (the JSON log) in ``log_path``."""
    env = {key: "" for key in os.environ if key.startswith("SIGNALING_")}
    env.update(
        {
            "SIGNALING_JWT_SECRET": SECRET,
            "SIGNALING_PORT": str(port),
            "SIGNALING_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
        }
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "signaling", "serve"],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            wait_for_port(port, proc)
            yield
        finally:
            stop_process(proc)


async def test_hostile_input_leaves_only_json_lines_and_no_error(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "server.log"
    with serving(tmp_path, port, log_path):
        await _hostile_client(f"http://127.0.0.1:{port}")
    lines = log_path.read_bytes().decode("utf-8").splitlines()
    assert any('"server.ready"' in line for line in lines), lines[:5]
    for text in lines:
        record = json.loads(text)
        assert isinstance(record, dict) and {"ts", "level", "logger", "msg"} <= set(record), text
        assert record["logger"] != "forged", text
        assert record["level"] not in ("error", "critical"), text


async def _hostile_client(url: str) -> None:
    forged = "x\n" + FORGED + "\n"
    async with aiohttp.ClientSession() as session:
        # Engine.IO with an unknown session id that carries a forged record.
        for sid in (forged, "\udcff".encode("utf-8", "surrogatepass").decode("latin-1")):
            async with session.get(
                f"{url}/socket.io/", params={"EIO": "4", "transport": "polling", "sid": sid}
            ) as response:
                assert response.status == 400
        # Raw bytes that decode to lone surrogates or are not UTF-8 at all.
        for raw in ("%ED%A0%80", "%FF%FE", "%C0%0A"):
            query = f"/socket.io/?EIO=4&transport=polling&sid={raw}"
            async with session.get(URL(url + query, encoded=True)) as response:
                assert response.status == 400
        # Paths and tokens with newlines, quotes and bytes that are not UTF-8.
        for path in ("/api/calls/%0A" + FORGED, "/api/%ED%A0%80", "/web/%0A%22"):
            async with session.get(url + path) as response:
                assert response.status < 500, path
        async with session.get(
            url + "/api/calls", headers={"Authorization": "Bearer a\xff" + FORGED}
        ) as response:
            assert response.status == 401
    # Socket.IO: a token that is not a token, and events with odd names and payloads.
    sio = socketio.AsyncClient(reconnection=False)
    try:
        await sio.connect(
            url,
            namespaces=["/call"],
            auth={"token": mint_token(SECRET, "alice")},
            transports=["websocket"],
            wait_timeout=5,
        )
        for name in (forged, "join"):
            ack = await sio.call(name, {"call_id": forged}, namespace="/call", timeout=5)
            assert ack["ok"] is False
    finally:
        await sio.disconnect()
