"""Hold many idle, authenticated ``/call`` Socket.IO connections open.

Raw Engine.IO 4 / Socket.IO 5 over one aiohttp websocket each (no
python-socketio client objects, so the client side stays cheap):
``GET /socket.io/?EIO=4&transport=websocket&call_id=<i>`` -> ``0{open}``; send
``40/call,{"token": JWT}`` -> ``40/call,{"sid": ...}`` (accepted) or
``44/call,{...}`` (refused); then only answer the server's pings (``2`` -> ``3``).

Once every connection is open or failed it prints one JSON line on stdout,
``{"open": N, "failed": M, "errors": {...}}``, then holds them until its
stdin closes (or ``--hold-max`` seconds), closes them and exits. Used by
``bench/clock_bench.py`` to measure the server's memory per idle socket::

    .venv/bin/python bench/idle_sockets.py --url http://127.0.0.1:8080 \\
        --count 500 --first 0 --jwt-secret S   # Ctrl-D or Ctrl-C closes them

Only 127.0.0.1 / localhost / ::1 targets are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
import orjson

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
NAMESPACE = "/call"


def make_token(secret: str, user: str, ttl_s: int = 3600) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + ttl_s}, secret, algorithm="HS256")


class Holder:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.open = 0
        self.errors: Counter[str] = Counter()
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.readers: set[asyncio.Task[None]] = set()
        base = args.url.rstrip("/").replace("http://", "ws://", 1)
        self.base = f"{base}/socket.io/?EIO=4&transport=websocket"

    async def one(self, session: aiohttp.ClientSession, index: int, sem: asyncio.Semaphore) -> None:
        args = self.args
        user = args.user_format.format(n=index)
        token = make_token(args.jwt_secret, user)
        url = self.base + (f"&call_id={index}" if args.call_id_query else "")
        async with sem:
            try:
                async with asyncio.timeout(args.connect_timeout):
                    ws = await session.ws_connect(url, autoping=True, max_msg_size=2**20)
                    try:
                        first = await ws.receive_str()
                        if not first.startswith("0"):
                            raise ValueError(f"no engine.io open packet: {first[:80]!r}")
                        payload = orjson.dumps({"token": token}).decode()
                        await ws.send_str(f"40{NAMESPACE},{payload}")
                        while True:
                            msg = await ws.receive_str()
                            if msg == "2":
                                await ws.send_str("3")
                            elif msg.startswith(f"40{NAMESPACE},"):
                                break
                            elif msg.startswith(f"44{NAMESPACE}"):
                                raise PermissionError(msg[:120])
                    except BaseException:
                        await ws.close()
                        raise
            except PermissionError:
                self.errors["refused"] += 1
                return
            except TimeoutError:
                self.errors["timeout"] += 1
                return
            except (aiohttp.ClientError, ValueError, TypeError, OSError) as exc:
                self.errors[type(exc).__name__] += 1
                return
        self.open += 1
        self.sockets.append(ws)
        task = asyncio.create_task(self.pong(ws))
        self.readers.add(task)
        task.add_done_callback(self.readers.discard)

    async def pong(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Answer pings; note a socket the server closes."""
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and msg.data == "2":
                await ws.send_str("3")
        self.errors["closed_by_server"] += 1

    async def released(self) -> None:
        """Return once stdin reaches end of file or SIGTERM/SIGINT arrives (stdin
        that cannot be polled, such as /dev/null, is ignored: then only a signal
        or --hold-max ends the hold)."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        fd = sys.stdin.fileno()

        def on_stdin() -> None:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                done.set()

        with contextlib.suppress(OSError, ValueError):
            loop.add_reader(fd, on_stdin)
        await done.wait()

    async def run(self) -> int:
        args = self.args
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            sem = asyncio.Semaphore(args.connect_concurrency)
            await asyncio.gather(
                *(self.one(session, args.first + i, sem) for i in range(args.count))
            )
            report: dict[str, Any] = {"open": self.open, "failed": args.count - self.open}
            report["errors"] = dict(self.errors)
            print(orjson.dumps(report).decode(), flush=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.hold_max):
                    await self.released()
            for task in list(self.readers):
                task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await asyncio.gather(
                        *(ws.close() for ws in self.sockets), return_exceptions=True
                    )
        return 0 if self.open == args.count else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="server base URL (local only)")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--first", type=int, default=0, help="index of the first socket")
    ap.add_argument("--jwt-secret", required=True)
    ap.add_argument("--user-format", default="idle{n}", help="user id template, field {n}")
    ap.add_argument("--connect-timeout", type=float, default=20.0)
    ap.add_argument("--connect-concurrency", type=int, default=50)
    ap.add_argument("--hold-max", type=float, default=300.0, help="close after S at most")
    ap.add_argument("--no-call-id-query", dest="call_id_query", action="store_false")
    args = ap.parse_args(argv)
    if urlsplit(args.url).hostname not in LOCAL_HOSTS:
        ap.error("only local targets are allowed (127.0.0.1, localhost, ::1)")
    if not 0 < args.count <= 20000 or args.hold_max <= 0:
        ap.error("--count must be 1..20000 and --hold-max > 0")
    return asyncio.run(Holder(args).run())


if __name__ == "__main__":
    sys.exit(main())
