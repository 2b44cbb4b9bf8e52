"""Relay media benchmark: server CPU per relayed call, and how many concurrent
relayed calls one server process holds before frames are dropped.

For each step (a number of concurrent calls) it starts the real server
(``python -m signaling serve``, ``SIGNALING_MEDIA=relay``, SQLite, a long call
limit) on a free 127.0.0.1 port, and ``--procs`` client worker processes. A
call is two aiortc peers (users ``r{n}a`` / ``r{n}b``) that schedule the call
over REST, join over Socket.IO, each offer to the server, and each send a
synthetic video track of ``--width`` x ``--height`` at ``--fps`` (a moving
colour ramp, so the encoder has work to do). Once every call is connected and
``--warmup-s`` has passed, for ``--measure-s`` seconds it counts the video
frames each peer sends and receives (the partner's, through the server) and
samples the server's CPU (``/proc/<pid>/stat``). A step holds when the mean
received frame rate is at least ``--keep`` (0.9) of ``--fps``; the run stops
at the first step that does not.

Usage (repository root, project venv):

    .venv/bin/python bench/relay_bench.py [--steps 1,2,3,4,6,8] [--fps 15] \
        [--width 320 --height 240] [--procs 2] [--pin] [--json FILE]

``--pin`` keeps the server on CPU 0 and the clients on the other CPUs, so the
clients (which encode and decode as much video as the server) do not take the
server's core.

Everything runs on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SECRET = "bench-secret-0123456789abcdef0123456789"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int | str = "self", thread: int | None = None) -> float:
    """User + system CPU of a process (all its threads), or of one of its
    threads (the main thread, where the event loop runs, has the process's id)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


# ================================================================== worker


@dataclass
class PeerStats:
    sent: int = 0
    received: int = 0


@dataclass
class Call:
    index: int
    peers: list[Any] = field(default_factory=list)  # RTCPeerConnection
    stats: list[PeerStats] = field(default_factory=list)
    clients: list[Any] = field(default_factory=list)  # socketio.AsyncClient
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def make_track(width: int, height: int, fps: float, stats: PeerStats) -> Any:
    import fractions

    import av
    from aiortc.mediastreams import MediaStreamTrack

    class RampTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._start: float | None = None
            self._n = 0

        async def recv(self) -> Any:
            if self._start is None:
                self._start = time.monotonic()
            due = self._start + self._n / fps
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            frame = av.VideoFrame(width, height, "yuv420p")
            # A horizontal ramp that moves 4 pixels a frame: motion to encode.
            shift = self._n * 4
            row = bytes((x + shift) & 0xFF for x in range(width))
            y = frame.planes[0]
            y.update((row + bytes(y.line_size - width)) * height)
            for plane in frame.planes[1:]:
                plane.update(bytes([128]) * plane.buffer_size)
            frame.pts = int(self._n * 90000 / fps)
            frame.time_base = fractions.Fraction(1, 90000)
            self._n += 1
            stats.sent += 1
            return frame

    return RampTrack()


async def open_call(args: argparse.Namespace, index: int) -> Call:
    import aiohttp
    import jwt
    import socketio
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    users = (f"r{index}a", f"r{index}b")

    def token(user: str) -> str:
        exp = datetime.now(UTC) + timedelta(hours=6)
        return jwt.encode({"sub": user, "exp": exp}, SECRET, algorithm="HS256")

    async with aiohttp.ClientSession() as http:
        at = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
        async with http.post(
            f"{args.url}/api/calls",
            json={"partner_id": users[1], "scheduled_at": at},
            headers={"Authorization": f"Bearer {token(users[0])}"},
        ) as response:
            body = await response.json()
            assert response.status == 201, body
            call_id = body["call"]["id"]

    call = Call(index)
    answers: list[asyncio.Queue[dict[str, Any]]] = []
    for user in users:
        client = socketio.AsyncClient(reconnection=False)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_signal(data: dict[str, Any], queue: asyncio.Queue[Any] = queue) -> None:
            if data.get("type") == "answer":
                await queue.put(data)

        client.on("signal", on_signal, namespace="/call")
        await client.connect(
            args.url,
            namespaces=["/call"],
            auth={"token": token(user)},
            transports=["websocket"],
            wait_timeout=10,
        )
        ack = await client.call("join", {"call_id": call_id}, namespace="/call", timeout=10)
        assert ack.get("ok"), ack
        call.clients.append(client)
        answers.append(queue)

    for client, queue in zip(call.clients, answers, strict=True):
        stats = PeerStats()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(make_track(args.width, args.height, args.fps, stats))

        def on_track(track: Any, stats: PeerStats = stats) -> None:
            if track.kind == "video":
                call.tasks.append(asyncio.ensure_future(count_frames(track, stats)))

        pc.on("track", on_track)
        await pc.setLocalDescription(await pc.createOffer())
        ack = await client.call(
            "signal",
            {"call_id": call_id, "type": "offer", "sdp": pc.localDescription.sdp},
            namespace="/call",
            timeout=10,
        )
        assert ack == {"ok": True}, ack
        answer = await asyncio.wait_for(queue.get(), 20)
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        call.peers.append(pc)
        call.stats.append(stats)
    deadline = time.monotonic() + 30
    while any(pc.connectionState != "connected" for pc in call.peers):
        if time.monotonic() > deadline:
            raise TimeoutError(f"call {index}: peers not connected")
        await asyncio.sleep(0.05)
    return call


async def count_frames(track: Any, stats: PeerStats) -> None:
    from aiortc.mediastreams import MediaStreamError

    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
            stats.received += 1


async def close_call(call: Call) -> None:
    for task in call.tasks:
        task.cancel()
    for pc in call.peers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pc.close(), 5)
    for client in call.clients:
        with contextlib.suppress(Exception):
            await client.disconnect()


async def worker(args: argparse.Namespace) -> None:
    indexes = range(args.first, args.first + args.count)
    calls = await asyncio.wait_for(
        asyncio.gather(*(open_call(args, i) for i in indexes)), timeout=120
    )
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), 300)
    duration = float(line.split()[1])
    before = [(s.sent, s.received) for c in calls for s in c.stats]
    cpu0, t0 = cpu_seconds(), time.monotonic()
    await asyncio.sleep(duration)
    elapsed = time.monotonic() - t0
    cpu = (cpu_seconds() - cpu0) / elapsed
    after = [(s.sent, s.received) for c in calls for s in c.stats]
    peers = [
        {"sent_fps": (a[0] - b[0]) / elapsed, "received_fps": (a[1] - b[1]) / elapsed}
        for b, a in zip(before, after, strict=True)
    ]
    print(json.dumps({"peers": peers, "cpu": cpu}), flush=True)
    for call in calls:
        await close_call(call)


# ================================================================== parent


def pin(pid: int, cpus: set[int] | None) -> None:
    """Keep a just-started child on ``cpus`` (``None``: anywhere). Its threads,
    all started later by its main thread, inherit the mask."""
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


@contextlib.contextmanager
def relay_server(
    folder: Path, cpus: set[int] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **os.environ,
        "SIGNALING_JWT_SECRET": SECRET,
        "SIGNALING_MEDIA": "relay",
        "SIGNALING_PORT": str(port),
        "SIGNALING_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}",
        "SIGNALING_COUNTDOWN_S": "1",
        "SIGNALING_CALL_LIMIT_S": "3600",
        "SIGNALING_LOG_LEVEL": "WARNING",
    }
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "signaling", "serve"],
        cwd=REPO,
        env=env,
        stderr=log,
    )
    pin(proc.pid, cpus)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {folder / 'server.log'}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run_step(args: argparse.Namespace, calls: int, folder: Path) -> dict[str, Any]:
    server_cpus = {0} if args.pin else None
    client_cpus = set(range(1, os.cpu_count() or 2)) if args.pin else None
    with relay_server(folder, server_cpus) as (url, server):
        procs = max(1, min(args.procs, calls))
        share = [calls // procs + (1 if i < calls % procs else 0) for i in range(procs)]
        workers = []
        first = 0
        for count in share:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                f"--url={url}",
                f"--first={first}",
                f"--count={count}",
                f"--fps={args.fps}",
                f"--width={args.width}",
                f"--height={args.height}",
            ]
            workers.append(
                subprocess.Popen(
                    cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
                )
            )
            pin(workers[-1].pid, client_cpus)
            first += count
        try:
            for proc in workers:
                assert proc.stdout is not None
                line = proc.stdout.readline().strip()
                if line != "ready":
                    raise RuntimeError(f"a worker failed to set up its calls ({line!r})")
            time.sleep(args.warmup_s)
            for proc in workers:
                assert proc.stdin is not None
                proc.stdin.write(f"go {args.measure_s}\n")
                proc.stdin.flush()
            cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
            loop0 = cpu_seconds(server.pid, server.pid)
            time.sleep(args.measure_s)
            elapsed = time.monotonic() - t0
            server_cores = (cpu_seconds(server.pid) - cpu0) / elapsed
            loop_cores = (cpu_seconds(server.pid, server.pid) - loop0) / elapsed
            results = []
            for proc in workers:
                assert proc.stdout is not None
                results.append(json.loads(proc.stdout.readline()))
        finally:
            for proc in workers:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    peers = [p for r in results for p in r["peers"]]
    received = [p["received_fps"] for p in peers]
    return {
        "calls": calls,
        "server_cpu_cores": round(server_cores, 3),
        "server_cpu_per_call": round(server_cores / calls, 3),
        "server_loop_cores": round(loop_cores, 3),
        "sent_fps_mean": round(sum(p["sent_fps"] for p in peers) / len(peers), 2),
        "received_fps_mean": round(sum(received) / len(received), 2),
        "received_fps_min": round(min(received), 2),
        "client_cpu_cores": round(sum(r["cpu"] for r in results), 3),
        "holds": sum(received) / len(received) >= args.keep * args.fps,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="1,2,3,4,6,8", help="concurrent calls per step")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--procs", type=int, default=2, help="client worker processes")
    parser.add_argument("--warmup-s", type=float, default=4.0)
    parser.add_argument("--measure-s", type=float, default=8.0)
    parser.add_argument("--keep", type=float, default=0.9, help="fraction of fps that holds")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server on CPU 0, client workers on the other CPUs (needs 2+ CPUs)",
    )
    parser.add_argument("--json", type=Path, help="write the rows here too")
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args))
        return 0
    rows = []
    print(
        f"relay bench: {args.width}x{args.height} @ {args.fps:g} fps per peer, "
        f"{args.procs} client processes, {os.cpu_count()} CPUs"
        + (", server pinned to CPU 0, clients to the others" if args.pin else ""),
        file=sys.stderr,
    )
    header = (
        "calls  server cores  per call  loop thread  sent fps  recv fps mean/min  "
        "client cores  holds"
    )
    print(header)
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        for n, calls in enumerate(int(s) for s in args.steps.split(",")):
            folder = Path(tmp) / f"step{n}"
            folder.mkdir()
            row = run_step(args, calls, folder)
            rows.append(row)
            print(
                f"{row['calls']:5d}  {row['server_cpu_cores']:12.2f}  "
                f"{row['server_cpu_per_call']:8.3f}  {row['server_loop_cores']:11.2f}  "
                f"{row['sent_fps_mean']:8.1f}  "
                f"{row['received_fps_mean']:8.1f}/{row['received_fps_min']:<8.1f}  "
                f"{row['client_cpu_cores']:12.2f}  {'yes' if row['holds'] else 'NO'}",
                flush=True,
            )
            if not row["holds"]:
                break
    if args.json:
        args.json.write_text(json.dumps({"config": vars(args) | {"json": None}, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
