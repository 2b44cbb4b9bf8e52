"""How late ``ended`` arrives for calls whose server was killed mid-call.

Starts the server (SQLite in a temporary folder) on a free 127.0.0.1 port,
takes ``--calls`` calls live (REST booking, both users on ``/call`` with the
call id in the query, ``join``, ``connected``, ``countdown``, ``live``), then
kills the server with SIGKILL, starts it again on the same port and database
after ``--down-s`` seconds, and has every user reconnect and ``join`` again.
The restarted server finds the calls live in the database, arms their limits
again, and ends them at the ``ends_at`` the first process announced.

Reports, against that ``ends_at``: how late ``ended`` arrived (p50 / p99 /
max), how many users got it, and how long the restart took (kill to the new
process listening). The figure includes the client's reconnect and join, as
a user's browser would do them.

Usage: .venv/bin/python bench/restart_bench.py [--calls 50] [--limit-s 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from call_bench import SECRET, free_port
from clock_bench import our_env, our_server
from loadgen_stats import percentile

from signaling.auth import mint_token


class User:
    """One user's /call connection, recording when each event arrived."""

    def __init__(self, url: str, user_id: str, call_id: int) -> None:
        self.url = url
        self.user_id = user_id
        self.call_id = call_id
        self.arrived: dict[str, tuple[float, Any]] = {}
        self.sio = socketio.AsyncClient(reconnection=False)
        for event in ("countdown", "live", "ended"):
            self.sio.on(event, self._recorder(event), namespace="/call")

    def _recorder(self, event: str) -> Any:
        async def record(payload: Any) -> None:
            self.arrived[event] = (time.time(), payload)

        return record

    async def connect_and_join(self) -> dict[str, Any]:
        await self.sio.connect(
            f"{self.url}?call_id={self.call_id}",
            namespaces=["/call"],
            auth={"token": mint_token(SECRET, self.user_id)},
            transports=["websocket"],
            wait_timeout=10,
        )
        ack: dict[str, Any] = await self.sio.call(
            "join", {"call_id": self.call_id}, namespace="/call", timeout=10
        )
        return ack

    async def wait_for(self, event: str, within_s: float) -> tuple[float, Any]:
        deadline = time.monotonic() + within_s
        while event not in self.arrived:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.user_id}: no {event}")
            await asyncio.sleep(0.005)
        return self.arrived[event]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sio.disconnect()


async def book(session: aiohttp.ClientSession, url: str, caller: str, callee: str) -> int:
    scheduled_at = datetime.fromtimestamp(time.time() + 5).astimezone().isoformat()
    async with session.post(
        f"{url}/api/calls",
        json={"partner_id": callee, "scheduled_at": scheduled_at},
        headers={"Authorization": f"Bearer {mint_token(SECRET, caller)}"},
    ) as response:
        body = await response.json()
        assert response.status == 201, body
        return int(body["call"]["id"])


async def take_live(url: str, calls: int) -> list[tuple[User, User]]:
    pairs: list[tuple[User, User]] = []
    async with aiohttp.ClientSession() as session:
        for n in range(calls):
            call_id = await book(session, url, f"r{n}a", f"r{n}b")
            pairs.append((User(url, f"r{n}a", call_id), User(url, f"r{n}b", call_id)))
    for a, b in pairs:
        await a.connect_and_join()
        await b.connect_and_join()
    for a, b in pairs:
        for user in (a, b):
            await user.sio.call("connected", {"call_id": a.call_id}, namespace="/call")
    for a, b in pairs:
        for user in (a, b):
            await user.wait_for("live", 30)
    return pairs


def parse(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def rejoin_all(url: str, pairs: list[tuple[User, User]]) -> list[User]:
    users = [User(url, old.user_id, old.call_id) for pair in pairs for old in pair]
    await asyncio.gather(*(u.connect_and_join() for u in users))
    return users


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--countdown-s", type=float, default=1.0)
    parser.add_argument("--limit-s", type=float, default=8.0, help="call length")
    parser.add_argument("--down-s", type=float, default=1.0, help="seconds the server is down")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["ended_received"] == result["users"] else 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="restart-bench-") as tmp:
        folder = Path(tmp)
        env = our_env(f"sqlite+aiosqlite:///{folder / 'calls.sqlite3'}", args)
        with our_server(port, env, folder / "first.log") as pid:
            pairs = await take_live(url, args.calls)
            ends_at = {a.call_id: parse(a.arrived["live"][1]["ends_at"]) for a, _ in pairs}
            killed_at = time.time()
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(args.down_s)
        with our_server(port, env, folder / "second.log"):
            restart_s = time.time() - killed_at
            users = await rejoin_all(url, pairs)
            with contextlib.suppress(TimeoutError):
                await asyncio.gather(*(u.wait_for("ended", args.limit_s + 30) for u in users))
            for user in [*users, *(old for pair in pairs for old in pair)]:
                await user.close()
    lateness = [
        (user.arrived["ended"][0] - ends_at[user.call_id]) * 1000
        for user in users
        if "ended" in user.arrived
    ]
    result: dict[str, Any] = {
        "calls": args.calls,
        "users": len(users),
        "ended_received": len(lateness),
        "restart_s": round(restart_s, 2),
        "limit_s": args.limit_s,
    }
    if lateness:
        result["ended_late_ms"] = {
            "p50": round(percentile(lateness, 50) or 0.0, 1),
            "p99": round(percentile(lateness, 99) or 0.0, 1),
            "max": round(max(lateness), 1),
            "min": round(min(lateness), 1),
        }
    return result


if __name__ == "__main__":
    sys.exit(main())
