"""Chat benchmark: messages per second end to end (send -> stored -> the
partner receives it) with N connected pairs, and the latency of each message.

By default it starts everything itself on 127.0.0.1 in a temporary folder: the
real server (``python -m signaling serve``) as a child process, and for
``--backend mongo`` an nx-27017 MongoDB wire-protocol server that the server
uses as its message store (SIGNALING_MESSAGE_STORE_URL). Each pair gets its
room the way users get one (a gift each way); then every user of every pair
sends ``--messages`` messages in a closed loop (the next once the previous is
acknowledged, so stored), and the partner's socket timestamps each ``message``
event. Latency = partner receive - send, in this one process.

Examples::

    .venv/bin/python bench/chat_bench.py --backend sqlite --pairs 200 --messages 25
    .venv/bin/python bench/chat_bench.py --backend mongo --pairs 200 --messages 25
    # against a server you started (same SIGNALING_JWT_SECRET)
    .venv/bin/python bench/chat_bench.py --url http://127.0.0.1:8080 --jwt-secret S

Only 127.0.0.1 / localhost targets are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
import socketio
from call_bench import ONE_ADDRESS_ENV, child, free_port
from loadgen_stats import percentile

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    received: int = 0
    acked: int = 0
    errors: int = 0


def token(secret: str, user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, secret, algorithm="HS256")


async def make_rooms(url: str, secret: str, pairs: int, run: str) -> list[tuple[str, str, int]]:
    rooms: list[tuple[str, str, int]] = []
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession() as session:

        async def post_gift(sender: str, receiver: str) -> None:
            async with (
                sem,
                session.post(
                    f"{url}/api/gifts",
                    json={"receiver_id": receiver, "kind": "general", "message": "bench"},
                    headers={"Authorization": f"Bearer {token(secret, sender)}"},
                ) as response,
            ):
                if response.status != 201:
                    raise SystemExit(f"gift failed: {response.status} {await response.text()}")

        users = [(f"{run}-a{i}", f"{run}-b{i}") for i in range(pairs)]
        await asyncio.gather(*(post_gift(a, b) for a, b in users))
        await asyncio.gather(*(post_gift(b, a) for a, b in users))
        for a, b in users:
            async with session.get(
                f"{url}/api/chat/rooms", headers={"Authorization": f"Bearer {token(secret, a)}"}
            ) as response:
                body = await response.json()
            rooms.append((a, b, int(body["rooms"][0]["id"])))
    return rooms


async def connect(url: str, secret: str, user: str, stats: Stats, sent_at: dict[str, float]) -> Any:
    sio = socketio.AsyncClient(reconnection=False)

    async def on_message(data: dict[str, Any]) -> None:
        start = sent_at.pop(data["client_msg_id"], None)
        if start is not None:
            stats.latencies.append(time.perf_counter() - start)
            stats.received += 1

    sio.on("message", on_message, namespace="/chat")
    await sio.connect(
        url,
        namespaces=["/chat"],
        auth={"token": token(secret, user)},
        transports=["websocket"],
        wait_timeout=30,
    )
    return sio


async def sender(
    sio: Any, user: str, room_id: int, *, messages: int, stats: Stats, sent_at: dict[str, float]
) -> None:
    for i in range(messages):
        client_msg_id = f"{user}-{i}"
        sent_at[client_msg_id] = time.perf_counter()
        try:
            ack = await sio.call(
                "send",
                {
                    "room_id": room_id,
                    "content": f"message {i} from {user}",
                    "client_msg_id": client_msg_id,
                },
                namespace="/chat",
                timeout=120,
            )
        except socketio.exceptions.TimeoutError:
            ack = None
        if isinstance(ack, dict) and ack.get("ok"):
            stats.acked += 1
        else:
            stats.errors += 1
            sent_at.pop(client_msg_id, None)


async def run_bench(url: str, secret: str, args: argparse.Namespace) -> dict[str, Any]:
    run = f"r{int(time.time())}"
    t0 = time.perf_counter()
    rooms = await make_rooms(url, secret, args.pairs, run)
    stats, sent_at = Stats(), dict[str, float]()
    clients: dict[str, Any] = {}
    sem = asyncio.Semaphore(50)

    async def open_one(user: str) -> None:
        async with sem:
            clients[user] = await connect(url, secret, user, stats, sent_at)

    await asyncio.gather(*(open_one(u) for a, b, _ in rooms for u in (a, b)))
    print(
        f"setup: {len(rooms)} rooms, {len(clients)} sockets in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    expected = 2 * args.pairs * args.messages
    start = time.perf_counter()

    async def progress() -> None:
        last, last_t = 0, start
        while True:
            await asyncio.sleep(1)
            now = time.perf_counter()
            done = stats.received
            print(
                f"progress: {done}/{expected} received, {(done - last) / (now - last_t):.0f} msg/s,"
                f" errors {stats.errors}",
                flush=True,
            )
            last, last_t = done, now

    ticker = asyncio.create_task(progress())
    try:
        await asyncio.gather(
            *(
                sender(clients[u], u, room_id, messages=args.messages, stats=stats, sent_at=sent_at)
                for a, b, room_id in rooms
                for u in (a, b)
            )
        )
        # Acked means stored; give the last fan-outs a moment to land.
        for _ in range(1000):
            if stats.received >= stats.acked:
                break
            await asyncio.sleep(0.01)
    finally:
        ticker.cancel()
    elapsed = time.perf_counter() - start
    # Stored: every room's history ends at seq 2 * messages.
    async with aiohttp.ClientSession() as session:
        stored_ok = 0
        for a, _, room_id in rooms:
            async with session.get(
                f"{url}/api/chat/rooms/{room_id}/messages?limit=1",
                headers={"Authorization": f"Bearer {token(secret, a)}"},
            ) as response:
                body = await response.json()
            stored_ok += body["messages"][0]["seq"] == 2 * args.messages
    await asyncio.gather(*(c.disconnect() for c in clients.values()))
    lat = sorted(stats.latencies)
    return {
        "pairs": args.pairs,
        "messages": expected,
        "received": stats.received,
        "errors": stats.errors,
        "rooms_fully_stored": f"{stored_ok}/{len(rooms)}",
        "seconds": round(elapsed, 2),
        "msg_per_s": round(stats.received / elapsed, 1),
        "p50_ms": round((percentile(lat, 50) or math.nan) * 1000, 1),
        "p99_ms": round((percentile(lat, 99) or math.nan) * 1000, 1),
        "max_ms": round(lat[-1] * 1000, 1) if lat else math.nan,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "mongo"), default="sqlite")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--messages", type=int, default=25, help="per user")
    parser.add_argument("--url", help="an already running server (skips starting one)")
    parser.add_argument("--jwt-secret", default="bench-secret-that-is-long-enough-0123456789")
    args = parser.parse_args()

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass

    if args.url:
        host = urlsplit(args.url).hostname
        if host not in LOCAL_HOSTS:
            raise SystemExit("only 127.0.0.1 / localhost targets are accepted")
        summary = asyncio.run(run_bench(args.url.rstrip("/"), args.jwt_secret, args))
        print("summary:", summary, flush=True)
        return 0

    with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        port = free_port()
        env = {
            **os.environ,
            "SIGNALING_JWT_SECRET": args.jwt_secret,
            "SIGNALING_PORT": str(port),
            "SIGNALING_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}",
            "SIGNALING_LOG_LEVEL": "WARNING",
            **ONE_ADDRESS_ENV,
        }
        if args.backend == "mongo":
            mongo_port = free_port()
            stack.enter_context(
                child(
                    [
                        sys.executable,
                        "-m",
                        "nx_27017.nx_27017",
                        "--port",
                        str(mongo_port),
                        "--data-dir",
                        str(folder / "mongo"),
                        "--pid-file",
                        str(folder / "nx.pid"),
                        "--log-file",
                        str(folder / "nx.log"),
                    ],
                    mongo_port,
                    dict(os.environ),
                    folder / "nx.out",
                )
            )
            env["SIGNALING_MESSAGE_STORE_URL"] = f"mongodb://127.0.0.1:{mongo_port}/bench"
        stack.enter_context(
            child([sys.executable, "-m", "signaling", "serve"], port, env, folder / "server.log")
        )
        summary = asyncio.run(run_bench(f"http://127.0.0.1:{port}", args.jwt_secret, args))
        summary["backend"] = args.backend
        print("summary:", summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
