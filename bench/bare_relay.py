"""Bare python-socketio relay: the floor the framework itself sets.

No auth, no persistence, no scheduling: it pairs two sockets by ``call_id``,
relays ``signal`` events and runs a zero-length countdown, so that
``bench/loadgen.py --no-rest`` can measure what python-socketio + aiohttp cost
with exactly the options the real server uses (orjson, ``async_handlers=False``
on both the Socket.IO and the Engine.IO layer, uvloop when available).

Event names and ack shapes follow docs/protocol.md (namespace ``/call``):

* ``join {call_id}`` -> ``{ok, role: "waiting"|"offerer", partner_present}``;
  the waiting partner gets ``partner_joined {call_id, role: "answerer"}``.
* ``signal {call_id, type, sdp?, candidate?}`` -> relayed to the partner as
  ``signal {call_id, from, type, sdp?, candidate?}``; ack ``{ok}``.
* ``connected {call_id}`` -> ack ``{ok}``; once both reported: ``countdown``
  (``seconds: 0``), ``live`` at once, and ``ended {reason: "time_limit"}``
  ``--limit-s`` later.
* ``leave {call_id}`` -> ack ``{ok}``; the partner gets ``partner_left``.

Run: ``.venv/bin/python bench/bare_relay.py --host 127.0.0.1 --port 8090``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import signal
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
import socketio
from aiohttp import web

NAMESPACE = "/call"
SIGNAL_TYPES = frozenset({"offer", "answer", "candidate", "end-of-candidates"})
RELAYED_KEYS = ("sdp", "candidate")


class OrjsonJson:
    """The ``json`` "module" handed to python-socketio: orjson behind the stdlib API."""

    @staticmethod
    def dumps(obj: Any, **_kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, **_kwargs: Any) -> Any:
        return orjson.loads(data)


@dataclass
class Call:
    call_id: Any
    sids: list[str] = field(default_factory=list)
    user_of: dict[str, str] = field(default_factory=dict)
    connected: set[str] = field(default_factory=set)
    started: bool = False
    end_task: asyncio.Task[None] | None = None


@dataclass
class Stats:
    connections: int = 0
    joins: int = 0
    signals: int = 0
    calls_live: int = 0
    calls_ended: int = 0
    errors: int = 0


def _iso(ts: float) -> str:
    return (
        dt.datetime.fromtimestamp(ts, tz=dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


class BareRelay:
    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            json=OrjsonJson,
            async_handlers=False,
        )
        self.sio.eio.async_handlers = False
        self.calls: dict[Any, Call] = {}
        self.call_of: dict[str, Any] = {}
        self.stats = Stats()
        self._tasks: set[asyncio.Task[None]] = set()
        ns = NAMESPACE
        self.sio.on("connect", self.on_connect, namespace=ns)
        self.sio.on("disconnect", self.on_disconnect, namespace=ns)
        self.sio.on("join", self.on_join, namespace=ns)
        self.sio.on("signal", self.on_signal, namespace=ns)
        self.sio.on("connected", self.on_connected, namespace=ns)
        self.sio.on("leave", self.on_leave, namespace=ns)

    # -- helpers ---------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _partner(self, call: Call, sid: str) -> str | None:
        for other in call.sids:
            if other != sid:
                return other
        return None

    def _call_for(self, sid: str, data: Any) -> Call | None:
        if not isinstance(data, dict):
            return None
        call_id = data.get("call_id")
        if call_id is None or self.call_of.get(sid) != call_id:
            return None
        return self.calls.get(call_id)

    def _drop(self, sid: str, reason: str) -> None:
        call_id = self.call_of.pop(sid, None)
        if call_id is None:
            return
        call = self.calls.get(call_id)
        if call is None:
            return
        if sid in call.sids:
            call.sids.remove(sid)
        call.connected.discard(sid)
        call.user_of.pop(sid, None)
        if not call.sids:
            if call.end_task is not None:
                call.end_task.cancel()
            self.calls.pop(call_id, None)
            return
        partner = call.sids[0]
        self._spawn(
            self.sio.emit(
                "partner_left",
                {"call_id": call_id, "reason": reason},
                to=partner,
                namespace=NAMESPACE,
            )
        )

    # -- handlers --------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> bool:
        self.stats.connections += 1
        return True

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._drop(sid, "disconnected")

    async def on_join(self, sid: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or data.get("call_id") is None:
            self.stats.errors += 1
            return _error("invalid", "call_id is required")
        call_id = data["call_id"]
        if not isinstance(call_id, str | int):
            self.stats.errors += 1
            return _error("invalid", "call_id must be a string or an integer")
        previous = self.call_of.get(sid)
        if previous is not None and previous != call_id:
            self._drop(sid, "left")
        call = self.calls.get(call_id)
        if call is None:
            call = self.calls[call_id] = Call(call_id)
        if sid not in call.sids:
            if len(call.sids) >= 2:
                self.stats.errors += 1
                return _error("conflict", "call already has two participants")
            call.sids.append(sid)
        self.call_of[sid] = call_id
        self.stats.joins += 1
        partner = self._partner(call, sid)
        if partner is None:
            return {"ok": True, "role": "waiting", "partner_present": False}
        await self.sio.emit(
            "partner_joined",
            {"call_id": call_id, "role": "answerer"},
            to=partner,
            namespace=NAMESPACE,
        )
        return {"ok": True, "role": "offerer", "partner_present": True}

    async def on_signal(self, sid: str, data: Any) -> dict[str, Any]:
        call = self._call_for(sid, data)
        if call is None:
            self.stats.errors += 1
            return _error("not_found", "join the call first")
        kind = data.get("type")
        if kind not in SIGNAL_TYPES:
            self.stats.errors += 1
            return _error("invalid", "unknown signal type")
        partner = self._partner(call, sid)
        if partner is None:
            self.stats.errors += 1
            return _error("unavailable", "partner is not connected")
        out: dict[str, Any] = {"call_id": call.call_id, "from": sid, "type": kind}
        for key in RELAYED_KEYS:
            if key in data:
                out[key] = data[key]
        await self.sio.emit("signal", out, to=partner, namespace=NAMESPACE)
        self.stats.signals += 1
        return {"ok": True}

    async def on_connected(self, sid: str, data: Any) -> dict[str, Any]:
        call = self._call_for(sid, data)
        if call is None:
            self.stats.errors += 1
            return _error("not_found", "join the call first")
        call.connected.add(sid)
        if not call.started and len(call.connected) == 2:
            call.started = True
            self.stats.calls_live += 1
            now = time.time()
            cid = call.call_id
            room = list(call.sids)
            for target in room:
                await self.sio.emit(
                    "countdown",
                    {"call_id": cid, "seconds": 0, "live_at": _iso(now)},
                    to=target,
                    namespace=NAMESPACE,
                )
            for target in room:
                await self.sio.emit(
                    "live",
                    {
                        "call_id": cid,
                        "ends_at": _iso(now + self.limit_s),
                        "question": "What is the best meal you ever had?",
                    },
                    to=target,
                    namespace=NAMESPACE,
                )
            call.end_task = asyncio.get_running_loop().create_task(self._end_later(call))
        return {"ok": True}

    async def on_leave(self, sid: str, data: Any) -> dict[str, Any]:
        call = self._call_for(sid, data)
        if call is None:
            return _error("not_found", "not in this call")
        self._drop(sid, "left")
        return {"ok": True}

    async def _end_later(self, call: Call) -> None:
        await asyncio.sleep(self.limit_s)
        if self.calls.get(call.call_id) is not call:
            return
        self.calls.pop(call.call_id, None)
        self.stats.calls_ended += 1
        payload = {"call_id": call.call_id, "reason": "time_limit"}
        for target in list(call.sids):
            self.call_of.pop(target, None)
            with contextlib.suppress(Exception):
                await self.sio.emit("ended", payload, to=target, namespace=NAMESPACE)

    async def shutdown(self) -> None:
        for call in self.calls.values():
            if call.end_task is not None:
                call.end_task.cancel()
        for task in list(self._tasks):
            task.cancel()


async def serve(host: str, port: int, limit_s: float) -> None:
    relay = BareRelay(limit_s)
    app = web.Application()
    relay.sio.attach(app)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(
        f"bare relay listening on http://{host}:{port} (namespace {NAMESPACE}, "
        f"loop {loop_name}, call limit {limit_s}s)",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        s = relay.stats
        print(
            f"bare relay stopping: connections {s.connections}, joins {s.joins}, "
            f"signals relayed {s.signals}, calls live {s.calls_live}, "
            f"ended {s.calls_ended}, errors {s.errors}",
            file=sys.stderr,
            flush=True,
        )
        await relay.shutdown()
        # python-socketio's shutdown() does not close client sockets: do it, so the
        # clients see the close at once instead of after their ping timeout.
        with contextlib.suppress(Exception):
            if relay.sio.eio.sockets:
                await asyncio.wait_for(relay.sio.eio.disconnect(), timeout=5)
            await asyncio.wait_for(relay.sio.shutdown(), timeout=5)
        await runner.cleanup()


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on uvloop when it is installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--limit-s",
        type=float,
        default=0.5,
        help="seconds from live to ended (default 0.5)",
    )
    args = parser.parse_args(argv)
    run(serve(args.host, args.port, args.limit_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
