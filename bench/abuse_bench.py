"""Memory bounds under abuse: the hostile-client patterns, one after another,
against a real server process on its defaults.

Starts the server (``python -m signaling serve``, SQLite in a temporary
folder) on a free 127.0.0.1 port, warms it up with a normal call, then for
each pattern:

1. waits until the server is idle and reads its RSS (/proc);
2. runs the pattern, while a prober in a thread of its own sends an event with
   an ack on a ``/call`` websocket and ``GET /api/health`` every 100 ms;
3. stops it and keeps reading the RSS for 5 s.

Per pattern it records the RSS peak, the RSS 5 s after the pattern ended
(relative to its start; target: within 10 MB), and the longest wait for any
answer: the prober's, and every answer the abuser itself waited for (acks,
413s, refusals; target: 5 s at most). Patterns (``--patterns``):

- ``f1``: binary-frame flood: a binary-event header announcing a million
  attachments, then ``--frames`` frames of 1 MB, on ``/`` without a token and
  on ``/call`` with one (two connections each);
- ``f2``: oversized long-polling uploads: 2 MB POSTs, announced
  (``Expect: 100-continue``), sent at once, and chunked, 10 of each;
- ``f3``: slow consumers: 5 calls whose callee stops reading while the caller
  sends ``--signals`` signals of 64 KB each;
- ``f5``: held signals: one user books 10 calls with made-up partners and
  sends 64 signals of 64 KB into each;
- ``flood``: 800 websockets without a token (half ask for ``/`` without one,
  half say nothing), held until the server closes them;
- ``per_user``: one user opens 100 ``/call`` connections, holds them 2 s, closes them.

Prints a markdown table; ``--json FILE`` writes everything.

Usage: .venv/bin/python bench/abuse_bench.py [--patterns f1,f2,f3,f5,flood,per_user] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from call_bench import SECRET, child, free_port
from clock_bench import settle
from idle_sockets import make_token
from loadgen_stats import rss_bytes

MB = 2**20
#: The server's largest message (python-engineio's max_http_buffer_size default).
FRAME = 1_000_000 - 1000
SDP_64K = "v=0 " + "s" * 60_000
SETTLED_S = 5.0
PROBE_EVERY_S = 0.1
WS_PATH = "/socket.io/?EIO=4&transport=websocket"


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


# -- measuring -------------------------------------------------------------------


@dataclass
class Waits:
    """The longest wait for an answer, from any thread."""

    longest_s: float = 0.0
    answers: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seconds: float) -> None:
        with self._lock:
            self.answers += 1
            self.longest_s = max(self.longest_s, seconds)

    @contextlib.asynccontextmanager
    async def timed(self) -> AsyncIterator[None]:
        started = time.monotonic()
        yield
        self.add(time.monotonic() - started)


class RssSampler(threading.Thread):
    """The server's RSS every 20 ms: the peak, and the last figure."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.last = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            rss = rss_bytes([self.pid]) or 0
            self.peak, self.last = max(self.peak, rss), rss
            self._done.wait(0.02)

    def stop(self) -> None:
        self._done.set()
        self.join()


class Prober(threading.Thread):
    """A well-behaved client on a loop of its own: an ack and a REST answer
    every 100 ms, each timed into ``waits``; it notes what never came."""

    def __init__(self, url: str, waits: Waits) -> None:
        super().__init__(daemon=True)
        self.url, self.waits = url, waits
        self.failures: list[str] = []
        self._done = threading.Event()

    def run(self) -> None:
        asyncio.run(self._probe())

    def stop(self) -> None:
        self._done.set()
        self.join()

    async def _probe(self) -> None:
        async with aiohttp.ClientSession() as session:
            raw = await Raw.open(session, self.url)
            await raw.connect("/call", make_token(SECRET, "prober"))
            n = 0
            while not self._done.is_set():
                n += 1
                try:
                    async with asyncio.timeout(30):
                        async with self.waits.timed():
                            await raw.call("/call", n, "nothing", {})
                        async with self.waits.timed(), session.get(self.url + "/api/health") as r:
                            await r.read()
                except (TimeoutError, aiohttp.ClientError, AssertionError) as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}"[:200])
                    raw = await Raw.open(session, self.url)
                    await raw.connect("/call", make_token(SECRET, "prober"))
                await asyncio.sleep(PROBE_EVERY_S)
            await raw.ws.close()


# -- a client spoken by hand ------------------------------------------------------


@dataclass
class Raw:
    """An Engine.IO websocket: cheap on the bench's side, and free to misbehave."""

    ws: aiohttp.ClientWebSocketResponse

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str) -> Raw:
        ws = await session.ws_connect(url + WS_PATH, autoping=True, max_msg_size=2**24)
        opened = await ws.receive_str(timeout=10)
        assert opened.startswith("0{"), opened
        return cls(ws)

    async def next(self, within: float = 30) -> str | None:
        """The next text frame, answering pings; None once closed."""
        while True:
            message = await self.ws.receive(timeout=within)
            if message.type != aiohttp.WSMsgType.TEXT:
                return None
            if message.data == "2":
                await self.ws.send_str("3")
                continue
            return str(message.data)

    async def connect(self, namespace: str, token: str | None) -> str | None:
        auth = json.dumps({"token": token}) if token else ""
        await self.ws.send_str("40" + ("" if namespace == "/" else namespace + ",") + auth)
        return await self.next()

    async def call(self, namespace: str, ack_id: int, event: str, payload: Any) -> Any:
        """An event with an ack id; its ack's argument (other frames skipped)."""
        await self.ws.send_str(f"42{namespace},{ack_id}" + json.dumps([event, payload]))
        prefix = f"43{namespace},{ack_id}"
        while True:
            text = await self.next()
            assert text is not None, "closed before the ack"
            if text.startswith(prefix):
                return json.loads(text[len(prefix) :])[0]


async def schedule(session: aiohttp.ClientSession, url: str, caller: str, callee: str) -> int:
    headers = {"Authorization": f"Bearer {make_token(SECRET, caller)}"}
    body = {"partner_id": callee, "scheduled_at": in_seconds(60)}
    async with session.post(url + "/api/calls", json=body, headers=headers) as response:
        answer = await response.json()
    assert response.status == 201, answer
    return int(answer["call"]["id"])


async def joined(session: aiohttp.ClientSession, url: str, user: str, call_id: int) -> Raw:
    raw = await Raw.open(session, url)
    assert (await raw.connect("/call", make_token(SECRET, user)) or "").startswith("40/call,")
    ack = await raw.call("/call", 1, "join", {"call_id": call_id})
    assert ack["ok"] is True, ack
    return raw


# -- the patterns ------------------------------------------------------------------

Pattern = Callable[
    [aiohttp.ClientSession, str, Waits, argparse.Namespace], Awaitable[dict[str, Any]]
]


async def binary_flood(
    session: aiohttp.ClientSession, url: str, waits: Waits, args: argparse.Namespace
) -> dict[str, Any]:
    """F1: a binary header announcing 10^6 attachments, then 1 MB frames."""
    frame = b"\0" * FRAME
    placeholder = json.dumps(["x", {"_placeholder": True, "num": 0}])

    async def one(index: int, namespace: str) -> str:
        raw = await Raw.open(session, url)
        token = make_token(SECRET, f"flood{index}")
        await raw.connect(namespace, token if namespace == "/call" else None)
        prefix = "" if namespace == "/" else namespace + ","
        try:
            await raw.ws.send_str(f"451000000-{prefix}" + placeholder)
            for _ in range(args.frames):
                await raw.ws.send_bytes(frame)
            # Then a question: every frame before it was handled.
            async with waits.timed():
                if namespace == "/":
                    answer = await raw.connect("/call", token)
                    assert answer is not None and answer.startswith("40/call,"), answer
                ack = await raw.call("/call", 7, "nothing", {})
            return str(ack["error"]["code"])
        except (ConnectionError, AssertionError) as exc:
            return f"closed: {exc}"[:80]
        finally:
            await raw.ws.close()

    outcomes = await asyncio.gather(
        *(one(i, ns) for i, ns in enumerate(["/", "/", "/call", "/call"]))
    )
    return {"sent_mb": round(4 * args.frames * FRAME / MB), "answers": outcomes}


async def oversized_uploads(
    session: aiohttp.ClientSession, url: str, waits: Waits, args: argparse.Namespace
) -> dict[str, Any]:
    """F2: long-polling POSTs of 2 MB; each must get its 413 at once."""
    host, port = url.removeprefix("http://").split(":")
    statuses: list[str] = []

    async def one(kind: str) -> None:
        async with session.get(url + "/socket.io/?EIO=4&transport=polling") as response:
            sid = json.loads((await response.text())[1:])["sid"]
        reader, writer = await asyncio.open_connection(host, int(port))
        head = f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n"
        if kind == "chunked":
            head += "Transfer-Encoding: chunked\r\n\r\n"
            chunk = b"10000\r\n" + b"4" * 65536 + b"\r\n"
            body = chunk * 32
        else:
            head += f"Content-Length: {2 * FRAME}\r\n"
            head += "Expect: 100-continue\r\n\r\n" if kind == "expect" else "\r\n"
            body = b"" if kind == "expect" else b"4" * (2 * FRAME)
        try:
            async with waits.timed():
                # Read while sending, as HTTP clients do: the 413 comes before the end of the body.
                status_line = asyncio.ensure_future(asyncio.wait_for(reader.readline(), 30))
                writer.write(head.encode())
                with contextlib.suppress(OSError):  # refused before the end of the body
                    writer.write(body)
                    await writer.drain()
                try:
                    line = await status_line
                    statuses.append(str(int(line.split()[1])) if line else "closed")
                except OSError:
                    # The server closed without reading the rest of the body, so the
                    # kernel reset the connection, which may drop the 413 unread.
                    statuses.append("reset")
        finally:
            writer.close()
            with contextlib.suppress(OSError):  # the server closed it first
                await writer.wait_closed()

    await asyncio.gather(*(one(kind) for kind in ("expect", "plain", "chunked") for _ in range(10)))
    return {"statuses": {s: statuses.count(s) for s in sorted(set(statuses))}}


async def slow_consumers(
    session: aiohttp.ClientSession, url: str, waits: Waits, args: argparse.Namespace
) -> dict[str, Any]:
    """F3: the callee stops reading; the caller sends 64 KB signals."""

    async def pair(index: int) -> tuple[int, str]:
        caller, callee = f"sender{index}", f"sleeper{index}"
        call_id = await schedule(session, url, caller, callee)
        sleeper = await joined(session, url, callee, call_id)  # never reads again
        sender = await joined(session, url, caller, call_id)
        offer = {"call_id": call_id, "type": "offer", "sdp": SDP_64K}
        ok, last = 0, "ok"
        try:
            for n in range(args.signals):
                async with waits.timed():
                    ack = await sender.call("/call", 100 + n, "signal", offer)
                if ack["ok"]:
                    ok += 1
                    continue
                last = ack["error"]["code"]
                if last != "rate_limited" or "partner is away" in ack["error"]["message"]:
                    break
                await asyncio.sleep(0.05)  # the per-second limit: try again
            return ok, last
        finally:
            await sender.ws.close()
            await sleeper.ws.close()

    results = await asyncio.gather(*(pair(i) for i in range(5)))
    return {"acked_ok": [ok for ok, _ in results], "then": sorted({last for _, last in results})}


async def held_signals(
    session: aiohttp.ClientSession, url: str, waits: Waits, args: argparse.Namespace
) -> dict[str, Any]:
    """F5: one user, 10 calls with made-up partners, 64 x 64 KB into each."""
    held = refused = 0
    calls = [await schedule(session, url, "hoarder", f"ghost{i}") for i in range(10)]
    conns = [await joined(session, url, "hoarder", call_id) for call_id in calls]
    try:
        for raw, call_id in zip(conns, calls, strict=True):
            offer = {"call_id": call_id, "type": "offer", "sdp": SDP_64K}
            for n in range(64):
                async with waits.timed():
                    ack = await raw.call("/call", 100 + n, "signal", offer)
                held += bool(ack["ok"])
                refused += not ack["ok"]
    finally:
        for raw in conns:
            await raw.ws.close()
    return {"held": held, "refused": refused, "offered_mb": round(640 * len(SDP_64K) / MB, 1)}


async def tokenless_flood(
    session: aiohttp.ClientSession, url: str, waits: Waits, args: argparse.Namespace
) -> dict[str, Any]:
    """F6: websockets without a token, held until the server closes them
    (those over SIGNALING_PENDING_PER_ADDRESS are refused with 429 at once)."""
    gate = asyncio.Semaphore(100)
    lived: list[float] = []
    refused: list[int] = []

    async def one(index: int) -> None:
        async with gate:
            try:
                async with waits.timed():
                    raw = await Raw.open(session, url)
            except aiohttp.WSServerHandshakeError as refusal:
                refused.append(refusal.status)
                return
            opened = time.monotonic()
        try:
            if index % 2:
                async with waits.timed():
                    refusal = await raw.connect("/", None)
                assert refusal is not None and refusal.startswith("44"), refusal
            while await raw.next(within=60) is not None:
                pass
            lived.append(time.monotonic() - opened)
        finally:
            await raw.ws.close()

    await asyncio.gather(*(one(i) for i in range(args.flood)))
    return {
        "sockets": args.flood,
        "held": len(lived),
        "refused": {str(status): refused.count(status) for status in sorted(set(refused))},
        "closed_by_server_after_s": round(max(lived), 1) if lived else None,
    }


async def connections_per_user(
    session: aiohttp.ClientSession, url: str, waits: Waits, args: argparse.Namespace
) -> dict[str, Any]:
    """One user, 100 /call connections, each showing its token as it opens
    (as a client does): the quota admits some, refuses the rest."""
    token = make_token(SECRET, "crowd")
    conns: list[Raw] = []
    answers: list[str] = []
    try:
        for _ in range(100):
            conns.append(raw := await Raw.open(session, url))
            async with waits.timed():
                answer = await raw.connect("/call", token) or ""
            answers.append("accepted" if answer.startswith("40/call,") else "refused")
        await asyncio.sleep(2)
    finally:
        for raw in conns:
            await raw.ws.close()
    return {kind: answers.count(kind) for kind in ("accepted", "refused")}


PATTERNS: dict[str, tuple[str, Pattern]] = {
    "f1": ("F1 binary-frame flood", binary_flood),
    "f2": ("F2 oversized polling uploads", oversized_uploads),
    "f3": ("F3 slow consumers, 64 KB signals", slow_consumers),
    "f5": ("F5 held signals, made-up partners", held_signals),
    "flood": ("F6 connections without a token", tokenless_flood),
    "per_user": ("connections of one user", connections_per_user),
}


# -- the run -------------------------------------------------------------------------


async def warm_up(url: str) -> None:
    """A normal call and a signal, so start-up allocations are behind us."""
    async with aiohttp.ClientSession() as session:
        call_id = await schedule(session, url, "warm1", "warm2")
        one = await joined(session, url, "warm1", call_id)
        two = await joined(session, url, "warm2", call_id)
        ack = await two.call(
            "/call", 2, "signal", {"call_id": call_id, "type": "offer", "sdp": "v=0"}
        )
        assert ack == {"ok": True}, ack
        for raw in (one, two):
            await raw.ws.close()


def measure(pid: int, url: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    title, pattern = PATTERNS[name]
    settle([pid], 20)
    before = rss_bytes([pid]) or 0
    sampler, waits = RssSampler(pid), Waits()
    prober = Prober(url, waits)
    sampler.start()
    prober.start()

    async def run() -> dict[str, Any]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            return await pattern(session, url, waits, args)

    log(f"{title} ...")
    started = time.monotonic()
    notes = asyncio.run(run())
    ran_s = time.monotonic() - started
    time.sleep(SETTLED_S)
    after = sampler.last
    prober.stop()
    sampler.stop()
    row = {
        "pattern": name,
        "title": title,
        "ran_s": round(ran_s, 1),
        "rss_before_mb": round(before / MB, 1),
        "rss_peak_mb": round(sampler.peak / MB, 1),
        "rss_after_5s_mb": round(after / MB, 1),
        "after_minus_before_mb": round((after - before) / MB, 1),
        "longest_wait_s": round(waits.longest_s, 3),
        "answers_timed": waits.answers,
        "prober_failures": prober.failures,
        "notes": notes,
    }
    log(json.dumps(row))
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| pattern | ran (s) | RSS before (MB) | peak (MB) | 5 s after (MB) "
        "| after - before (MB) | longest wait (s) | what the abuser got |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        notes = json.dumps(r["notes"], separators=(", ", ": "))
        if r["prober_failures"]:
            notes += f"; prober failures: {len(r['prober_failures'])}"
        lines.append(
            f"| {r['title']} | {r['ran_s']} | {r['rss_before_mb']} | {r['rss_peak_mb']} "
            f"| {r['rss_after_5s_mb']} | {r['after_minus_before_mb']:+} | {r['longest_wait_s']} "
            f"| `{notes}` |"
        )
    return "\n".join(lines)


def error_lines(log_file: Path) -> list[str]:
    """The server's ERROR (and worse) log lines: none may come from a client."""
    found = []
    for line in log_file.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("level") in ("error", "critical"):
                found.append(line[:500])
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patterns", default=",".join(PATTERNS), help="comma-separated, in order")
    ap.add_argument("--frames", type=int, default=100, help="F1: 1 MB frames per connection")
    ap.add_argument("--signals", type=int, default=300, help="F3: 64 KB signals per sender")
    ap.add_argument("--flood", type=int, default=800, help="F6: websockets without a token")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.patterns.split(",") if n.strip()]
    unknown = [n for n in names if n not in PATTERNS]
    if unknown:
        ap.error(f"unknown patterns {unknown}; choose from {list(PATTERNS)}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        env = {
            "SIGNALING_JWT_SECRET": SECRET,
            "SIGNALING_DATABASE_URL": f"sqlite+aiosqlite:///{Path(folder) / 'abuse.sqlite3'}",
            "SIGNALING_LOG_LEVEL": "WARNING",
        }
        command = [
            sys.executable,
            "-m",
            "signaling",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        log_file = Path(folder) / "server.log"
        with child(command, port, env, log_file) as pid:
            asyncio.run(warm_up(url))
            settle([pid], 20)
            start = rss_bytes([pid]) or 0
            rows = [measure(pid, url, name, args) for name in names]
            end = rss_bytes([pid]) or 0
        errors = error_lines(log_file)
    print(table(rows))
    print(
        f"\nserver RSS: {start / MB:.1f} MB after warm-up, {end / MB:.1f} MB at the end "
        f"({(end - start) / MB:+.1f}); ERROR lines in its log: {len(errors)}"
    )
    if args.json:
        summary = {"rss_start_mb": round(start / MB, 1), "rss_end_mb": round(end / MB, 1)}
        args.json.write_text(
            json.dumps({**summary, "error_lines": errors[:20], "patterns": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
