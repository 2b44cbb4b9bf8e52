"""Media CPU per call: Janus (an SFU: it forwards RTP without decoding) versus
the server-side aiortc relay (it decodes and re-encodes every frame).

For each backend of ``--backends`` and each step of ``--calls`` (concurrent
calls) it starts, fresh, the real server (``python -m signaling serve``,
SQLite, a one-hour call limit) with ``SIGNALING_MEDIA=relay``, or with
``SIGNALING_MEDIA=janus`` and a real ``janus`` (``tests/media_servers.py``:
only the VideoRoom plugin, the HTTP transport and the event handler, on free
127.0.0.1 ports). A call is two aiortc peers in this process, negotiated as
the functional tests do (``tests/functional/relay_peers.py``,
``tests/functional/janus_peers.py``); each sends a moving ramp of ``--width``
x ``--height`` at ``--fps`` (VP8, ``relay_bench.make_track``), video only
unless ``--audio``. Before the calls, ``--idle-s`` seconds give the media
process's idle floor. Once every peer receives frames and ``--warmup-s`` has
passed, for ``--measure-s`` seconds it reads (``/proc``) the CPU of the
process that carries the media (the server for the relay, janus for Janus),
of the signaling server, and of this process (the clients), and counts the
video frames each peer sent and received.

Usage (repository root, project venv):

    .venv/bin/python bench/media_bench.py [--calls 2,4,8] [--backends relay,janus] \
        [--fps 15] [--width 320 --height 240] [--json FILE]

Everything runs on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The benches run as scripts from bench/: the repository root makes the tests'
# peers and media-server fixtures importable (one implementation for both).
sys.path.append(str(Path(__file__).resolve().parent.parent))
from aiortc import AudioStreamTrack
from aiortc.mediastreams import MediaStreamTrack
from call_bench import SECRET, child, free_port
from loadgen_stats import cpu_seconds
from relay_bench import PeerStats, make_track

from signaling.webhooks.janus import PATH as JANUS_EVENTS_PATH
from tests.functional.janus_peers import JanusPeer
from tests.functional.relay_peers import RED, FrameLog, RelayPeer
from tests.media_servers import janus_settings, run_janus
from tests.support import Client, RunningServer, server_settings

BACKENDS = ("relay", "janus")
EVENT_SECRET = "media-bench-event-secret"
SETUP_S = 60.0  # bound on opening every call of a step


class RampRelayPeer(RelayPeer):
    """A relay peer that sends the bench's tracks instead of a flat colour."""

    def __init__(self, client: Client, call_id: int, media: list[MediaStreamTrack]) -> None:
        super().__init__(client, call_id, RED)
        self.media = media

    def _add_video(self) -> None:
        for track in self.media:
            self._local_tracks.append(track)
            self.pc.addTrack(track)


class RampJanusPeer(JanusPeer):
    """A Janus room peer that publishes the bench's tracks."""

    def __init__(self, ack: dict[str, Any], media: list[MediaStreamTrack]) -> None:
        super().__init__(ack, RED)
        self.media = media

    def _add_video(self) -> None:
        for track in self.media:
            self._tracks.append(track)
            self.publisher.addTrack(track)


Peer = RampRelayPeer | RampJanusPeer


@dataclass
class Stack:
    """One step's servers: a client handle on the signaling server, and the
    pids to measure (the same one for the relay)."""

    server: RunningServer
    server_pid: int
    media_pid: int


@dataclass
class BenchCall:
    clients: list[Client] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    sent: list[PeerStats] = field(default_factory=list)

    async def close(self) -> None:
        for peer in self.peers:
            with contextlib.suppress(Exception):
                await peer.close()
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()


@contextlib.contextmanager
def servers(backend: str, folder: Path) -> Iterator[Stack]:
    """The signaling server with ``SIGNALING_MEDIA=backend`` (and Janus for
    ``janus``), stopped in reverse: the server first, as Janus waits for open
    HTTP connections when it stops."""
    port = free_port()
    env = {
        "SIGNALING_JWT_SECRET": SECRET,
        "SIGNALING_PORT": str(port),
        "SIGNALING_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}",
        "SIGNALING_COUNTDOWN_S": "1",
        "SIGNALING_CALL_LIMIT_S": "3600",  # no call ends while measured
        "SIGNALING_LOG_LEVEL": "WARNING",
        "SIGNALING_MEDIA": backend,
    }
    with contextlib.ExitStack() as stack:
        media_pid = 0
        if backend == "janus":
            janus = stack.enter_context(
                run_janus(
                    folder / "janus",
                    event_url=f"http://127.0.0.1:{port}{JANUS_EVENTS_PATH}",
                    event_secret=EVENT_SECRET,
                )
            )
            settings = janus_settings(janus, EVENT_SECRET)
            env |= {f"SIGNALING_{key.upper()}": str(value) for key, value in settings.items()}
            media_pid = janus.process.pid
        command = [sys.executable, "-m", "signaling", "serve"]
        pid = stack.enter_context(child(command, port, env, folder / "server.log"))
        handle = RunningServer(server_settings(folder, port=port, jwt_secret=SECRET))
        yield Stack(handle, pid, media_pid or pid)


async def open_call(stack: Stack, backend: str, index: int, args: argparse.Namespace) -> BenchCall:
    """One call with media flowing both ways (the call is in ``calls`` as soon
    as it has something to close)."""
    server = stack.server
    users = (f"m{index}a", f"m{index}b")
    call_id = (await server.schedule(*users))["id"]
    call = BenchCall()
    try:
        for user in users:
            call.clients.append(Client(server, user))
            await call.clients[-1].connect()
        acks = [await c.emit("join", {"call_id": call_id}, timeout=10) for c in call.clients]
        assert all(ack.get("ok") is True for ack in acks), acks
        media: list[list[MediaStreamTrack]] = []
        for _ in users:
            call.sent.append(PeerStats())
            video = make_track(args.width, args.height, args.fps, call.sent[-1])
            media.append([video, AudioStreamTrack()] if args.audio else [video])
        if backend == "relay":
            relay = [RampRelayPeer(c, call_id, m) for c, m in zip(call.clients, media, strict=True)]
            call.peers += relay
            for offerer in relay:
                offerer.start()
            await asyncio.gather(*(offerer.make_offer() for offerer in relay))
            await asyncio.gather(*(offerer.wait_connected(within=30) for offerer in relay))
        else:
            janus = [RampJanusPeer(ack, m) for ack, m in zip(acks, media, strict=True)]
            call.peers += janus
            for publisher in janus:
                await publisher.join()
                await publisher.publish()
            await asyncio.gather(*(publisher.subscribe() for publisher in janus))
        await asyncio.gather(*(peer.wait_frames(3, within=30) for peer in call.peers))
    except BaseException:
        await call.close()
        raise
    return call


def frames_in(log: FrameLog, start: float, end: float) -> int:
    return sum(1 for t in log.arrivals if start <= t < end)


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds so far of the media process, the signaling server and this
    process (the clients), at one instant."""

    media: float | None
    server: float | None
    own: float
    at: float

    @classmethod
    def take(cls, stack: Stack) -> CpuSample:
        media, server = cpu_seconds([stack.media_pid]), cpu_seconds([stack.server_pid])
        return cls(media, server, time.process_time(), time.monotonic())

    def cores_since(self, earlier: CpuSample) -> tuple[float, float, float]:
        """Cores used (media, server, clients) between ``earlier`` and this."""
        span = self.at - earlier.at

        def rate(before: float | None, after: float | None) -> float:
            return (after - before) / span if before is not None and after is not None else 0.0

        return (
            rate(earlier.media, self.media),
            rate(earlier.server, self.server),
            rate(earlier.own, self.own),
        )


async def measure(
    stack: Stack, backend: str, calls: int, args: argparse.Namespace
) -> dict[str, Any]:
    # The idle floor first: what the media process burns with no call at all.
    before = CpuSample.take(stack)
    await asyncio.sleep(args.idle_s)
    idle_media = CpuSample.take(stack).cores_since(before)[0]
    opened: list[BenchCall] = []

    async def opening(index: int) -> None:
        opened.append(await open_call(stack, backend, index, args))

    try:
        async with asyncio.timeout(SETUP_S):
            await asyncio.gather(*(opening(i) for i in range(calls)))
        await asyncio.sleep(args.warmup_s)
        sent0 = [s.sent for s in _sent(opened)]
        start = CpuSample.take(stack)
        await asyncio.sleep(args.measure_s)
        end = CpuSample.take(stack)
        elapsed = end.at - start.at
        sent = [(s.sent - n) / elapsed for s, n in zip(_sent(opened), sent0, strict=True)]
        received = [frames_in(p.video, start.at, end.at) / elapsed for c in opened for p in c.peers]
    finally:
        await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)
    media_cores, server_cores, own_cores = end.cores_since(start)
    received_mean = sum(received) / len(received)
    return {
        "backend": backend,
        "calls": calls,
        "media_idle_cores": round(idle_media, 4),
        "media_cpu_cores": round(media_cores, 4),
        "media_cpu_per_call": round(media_cores / calls, 4),
        # Janus only: the signaling server's share (Janus's events, the rooms).
        "signaling_cpu_per_call": round(server_cores / calls, 4) if backend == "janus" else None,
        "sent_fps_mean": round(sum(sent) / len(sent), 2),
        "received_fps_mean": round(received_mean, 2),
        "received_fps_min": round(min(received), 2),
        "client_cpu_cores": round(own_cores, 3),
        "holds": received_mean >= args.keep * args.fps,
    }


def _sent(calls: Sequence[BenchCall]) -> list[PeerStats]:
    return [s for c in calls for s in c.sent]


def print_row(row: dict[str, Any]) -> None:
    signaling = row["signaling_cpu_per_call"]
    print(
        f"| {row['backend']} | {row['calls']} | {row['media_idle_cores']:.3f} "
        f"| {row['media_cpu_cores']:.3f} "
        f"| {row['media_cpu_per_call']:.4f} "
        f"| {'—' if signaling is None else f'{signaling:.4f}'} "
        f"| {row['sent_fps_mean']:.1f} "
        f"| {row['received_fps_mean']:.1f} / {row['received_fps_min']:.1f} "
        f"| {row['client_cpu_cores']:.2f} | {'yes' if row['holds'] else 'NO'} |",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="2,4,8", help="concurrent calls per step")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="relay, janus or both")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--audio", action="store_true", help="send Opus audio too")
    parser.add_argument("--idle-s", type=float, default=2.0, help="idle floor, before the calls")
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--measure-s", type=float, default=6.0)
    parser.add_argument("--keep", type=float, default=0.9, help="fraction of fps that holds")
    parser.add_argument("--json", type=Path, help="write the config and rows here too")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    if not backends or any(b not in BACKENDS for b in backends):
        parser.error(f"--backends: a comma-separated subset of {','.join(BACKENDS)}")
    steps = [int(s) for s in args.calls.split(",")]
    print(
        f"media bench: {args.width}x{args.height} @ {args.fps:g} fps per peer"
        f"{' + audio' if args.audio else ', video only'}, {os.cpu_count()} CPUs, "
        f"warm-up {args.warmup_s:g} s, measured {args.measure_s:g} s",
        file=sys.stderr,
    )
    print(
        "| backend | calls | media process idle | media process cores | per call "
        "| signaling server per call | sent fps | received fps mean / min | client cores "
        "| holds |\n|---|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="media-bench-") as tmp:
        for backend in backends:
            for calls in steps:
                folder = Path(tmp) / f"{backend}-{calls}"
                folder.mkdir()
                with servers(backend, folder) as stack:
                    rows.append(asyncio.run(measure(stack, backend, calls, args)))
                print_row(rows[-1])
    per_call = {(r["backend"], r["calls"]): r["media_cpu_per_call"] for r in rows if r["holds"]}
    for calls in steps:
        relay, janus = per_call.get(("relay", calls)), per_call.get(("janus", calls))
        if relay and janus is not None:
            print(f"{calls} calls: Janus CPU per call = {janus / relay:.3f} x the relay's")
    if args.json:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps({"config": config, "rows": rows}, indent=2))
    return 0 if all(r["holds"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
